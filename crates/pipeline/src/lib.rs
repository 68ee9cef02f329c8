//! What the bridge's workers share: names, configuration, connection, topology, messages, the
//! stores in KV, dead letters, publishing, the consumer loop, shutdown and the 星辰 request
//! budget every replica shares ([`budget`]), and the workers' [`heartbeat`].
//!
//! The three workers (`extractor`, `transformer`, `loader`) stay thin by building on this crate:
//! they parse their flags into [`config`] structs, [`connect()`] to NATS, call
//! [`topology::ensure_topology`], and then either publish windows of raw orders with
//! [`publisher`] and [`cursor`] (the extractor) or hand a [`worker::Handler`] to a
//! [`worker::Worker`] (the transformer and the loader). What a stage does with a message (WDT
//! calls, the mapping scheme, 星辰 calls, tracing export) is left to the crates of those stages.

pub mod budget;
pub mod config;
pub mod connect;
pub mod cursor;
pub mod dead_letter;
pub mod heartbeat;
pub mod key;
mod kv;
pub mod ledger;
pub mod masterdata;
pub mod message;
pub mod names;
pub mod publisher;
pub mod retry;
pub mod shutdown;
pub mod topology;
pub mod worker;

pub use budget::{BudgetConfig, SharedBudget};
pub use config::{NatsConfig, PullConfig, TopologyConfig};
pub use connect::connect;
pub use kv::{StoreError, Versioned};
pub use names::{Names, Stage};
pub use topology::{Topology, ensure_topology};
