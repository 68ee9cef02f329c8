//! The 旺店通 企业奇门 client and the stock-out order model.
//!
//! [`fields`] lists what the seed's response table says an order holds.

pub mod fields;
