//! 金蝶云星辰 gateway client: authentication, signature, master data and sales outbound bills.
//!
//! [`Client`] talks V1 through today's gateway: a signed `push_app_authorize` gives the account
//! set, a signed `kingdee_auth_token` the tokens, and every business call carries
//! `?access_token=`, the account headers and the X-Api-* signature ([`sign`]). Calls are rate
//! limited ([`limit`]), bounded in flight, timed out, and retried with backoff while their failure
//! is transient ([`Error::is_transient`]). Saves are never posted twice blindly
//! ([`Client::save_bill`]). Mapping orders to bills is left to the transformer, and the ledger of
//! posted bills to the loader.

mod auth;
mod bill;
mod client;
mod config;
mod error;
mod lenient;
pub mod limit;
mod masterdata;
mod model;
pub mod sign;
mod wire;

pub use auth::{AUTHORIZE_PATH, AccountSet, TOKEN_PATH};
pub use bill::{BILL_LIST_PATH, SAVE_PATH};
pub use client::Client;
pub use config::{DEFAULT_API_URL, Secret, XingchenConfig};
pub use error::{Error, Result};
pub use limit::{LocalRateLimit, RateLimit, RateLimitFn};
pub use masterdata::MasterData;
pub use model::{Bill, BillLine, Customer, FoundBill, Material, SavedBill, Store};
