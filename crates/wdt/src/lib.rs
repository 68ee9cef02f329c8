//! The 旺店通 企业奇门 client and the stock-out order model.
//!
//! [`client`] signs and posts one `wdt.stockout.order.query.trade` call and retries transient
//! failures; [`reader`] turns a time range into windows and pages and streams the orders;
//! [`response`] reads the Qimen envelope; [`order`] is the order, typed and raw; [`config`] holds
//! the flags and environment every binary shares; [`sign`] and [`time`] own the Qimen signature and
//! Beijing time. [`fields`] lists what the seed's response table says an order holds. What the
//! pipeline does with the orders is not this crate's business.

pub mod client;
pub mod config;
pub mod error;
pub mod fields;
mod lenient;
pub mod order;
pub mod reader;
pub mod response;
pub mod sign;
pub mod time;

pub use client::{StockoutQuery, WdtClient};
pub use config::{Secret, WdtConfig};
pub use error::{Credential, Failure, WdtError};
pub use order::{Detail, Order, Position, StockoutOrder};
pub use reader::{ReadFilter, TimeBasis, Window, WindowReader, split_windows};
pub use response::{Page, parse_page};
pub use sign::{SignMethod, qimen_sign};
pub use time::{WdtTime, beijing, format_wdt_time, parse_cli_time};

/// Re-exported so callers consume the reader's streams without choosing a `futures` version.
pub use futures::{Stream, StreamExt, TryStreamExt};
