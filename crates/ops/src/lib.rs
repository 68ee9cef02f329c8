//! The logic of the bridge's operator commands, kept in a library so that tests drive it directly.
//!
//! [`Ops`] binds to a bridge's streams and buckets as the workers made them and never changes
//! their configuration: an operator's shell need not carry the workers' topology settings, and
//! a command run with other settings must not rewrite the streams. Each command is one module:
//!
//! * [`status`]: streams, consumers, dead letters by stage and kind, the extractor's cursor, the
//!   ledger's size and the worker heartbeats;
//! * [`replay`]: re-feeds stored raw orders (or bill payloads) into their stage, by store time,
//!   sequence or order number; [`refeed`] spells the headers a re-fed copy carries;
//! * [`dlq`]: lists, shows, redrives and purges dead letters;
//! * [`reconcile`]: compares a WDT window with the ledger and, on request, with 星辰;
//! * [`trace`]: the trace ids an order left in the streams and the dead letters.
//!
//! Every report is a serde struct (the commands' `--json`) with a compact table for people
//! ([`table`]); [`args`] holds the flags every command shares and prints a report either way.
//! Each command's own flags and its exit code are left to the `bridge` binary's command
//! modules.

pub mod args;
pub mod dlq;
mod error;
pub mod reconcile;
pub mod refeed;
pub mod replay;
mod scan;
pub mod status;
pub mod table;
mod time;
pub mod trace;

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::Stream};
use pipeline::publisher::Publisher;
use pipeline::{Names, NatsConfig, TopologyConfig};

pub use error::OpsError;
pub use time::format_beijing;

/// A bridge's streams and buckets, as the operator's commands see them.
#[derive(Clone, Debug)]
pub struct Ops {
    jetstream: jetstream::Context,
    names: Names,
}

impl Ops {
    /// Commands on the bridge whose names are `names`, through `jetstream`.
    pub fn new(jetstream: jetstream::Context, names: Names) -> Ops {
        Ops { jetstream, names }
    }

    /// Connects as `nats` says, giving up after `wait`, for the bridge `topology` names.
    pub async fn connect(
        nats: &NatsConfig,
        topology: &TopologyConfig,
        wait: Duration,
    ) -> Result<Ops, OpsError> {
        nats.validate()?;
        let names = topology.names()?;
        // `pipeline::connect` retries for as long as the server is away; a command waits less.
        let Ok(client) = tokio::time::timeout(wait, pipeline::connect(nats)).await else {
            return Err(OpsError::Unreachable {
                url: nats.redacted_url(),
                waited: wait,
            });
        };
        let client = client.map_err(OpsError::Connect)?;
        Ok(Ops::new(jetstream::new(client), names))
    }

    /// The names in use.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The JetStream context in use.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub(crate) async fn stream(&self, name: &str) -> Result<Stream, OpsError> {
        use jetstream::context::GetStreamErrorKind;
        self.jetstream
            .get_stream(name)
            .await
            .map_err(|err| match err.kind() {
                GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    OpsError::MissingStream {
                        stream: name.to_owned(),
                    }
                }
                _ => OpsError::stream(name, "look up", err),
            })
    }

    pub(crate) async fn bucket(&self, name: &str) -> Result<kv::Store, OpsError> {
        // The client folds every failure to find the bucket's stream into one kind; asking for
        // the stream first tells a missing bucket from an unanswered request.
        match self.stream(&format!("KV_{name}")).await {
            Err(OpsError::MissingStream { .. }) => {
                return Err(OpsError::MissingBucket {
                    bucket: name.to_owned(),
                });
            }
            other => other?,
        };
        self.jetstream
            .get_key_value(name)
            .await
            .map_err(|err| OpsError::bucket(name, "look up", err))
    }

    pub(crate) fn publisher(&self) -> Publisher {
        Publisher::new(self.jetstream.clone())
    }
}
