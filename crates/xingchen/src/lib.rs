//! 金蝶云星辰 gateway client: authentication, signature, master data and sales outbound bills.
