//! The end-to-end harness of the bridge: the three workers as separate processes against a
//! private nats-server and both simulators, as they run in production.
//!
//! [`harness`] starts the servers and the workers and reads what happened from the outside;
//! [`expected`] computes, independently of the `scheme` crate, the bill the seed's table asks for.
//! The tests themselves live in `tests/pipeline.rs`; they need the worker binaries built first
//! (`cargo build -p extractor -p transformer -p loader`, or `scripts/test`, which builds the
//! whole workspace).

pub mod expected;
pub mod harness;

pub use expected::{ExpectedBill, MasterData, differences, expected_bill};
pub use harness::{Backlog, Harness, Order, WorkerId, is_shipped_within, stockout_no};
