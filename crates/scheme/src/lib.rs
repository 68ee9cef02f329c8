//! The mapping from a 旺店通 stock-out order to a 星辰 sales outbound bill, as validated configuration.
