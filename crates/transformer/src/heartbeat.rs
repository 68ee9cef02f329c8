//! The transformer's heartbeat in the `bridge_workers` bucket, and the checks that run with it.
//!
//! Every interval the worker writes `transform.<instance>` (the instance [`pipeline::key`]
//! encoded) with a JSON value saying who it is and what it has processed:
//! `{stage, instance, version, pid, host, started_at, processed: {...}}`. The bucket forgets a key
//! a minute after its last write, so a worker that died disappears by itself; one that stops
//! cleanly deletes its key. The same tick refreshes the `nats` readiness check from the
//! connection state and the consumer backlog gauges. Reading heartbeats is `bridge status`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::kv::Store;
use chrono::{DateTime, Utc};
use pipeline::Stage;
use pipeline::worker::WorkerStats;
use serde::Serialize;
use telemetry::health::Readiness;
use telemetry::metrics::{self, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::handler::HandlerCounts;
use crate::resolve::LookupCounts;

/// What one heartbeat says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Heartbeat {
    /// `transform`.
    pub stage: String,
    /// The instance id.
    pub instance: String,
    /// The transformer's version.
    pub version: String,
    /// The process id.
    pub pid: u32,
    /// The machine's name.
    pub host: String,
    /// When the worker started.
    pub started_at: DateTime<Utc>,
    /// Counts since the start: `acked`, `retried`, `dead_lettered`, `bills_published`,
    /// `lookups_cached`, `lookups_fetched`.
    pub processed: BTreeMap<String, u64>,
}

/// Everything the heartbeat reads its counts from.
pub(crate) struct Sources {
    pub worker: Arc<WorkerStats>,
    pub handler: Arc<HandlerCounts>,
    pub lookups: Arc<LookupCounts>,
}

impl Sources {
    fn processed(&self) -> BTreeMap<String, u64> {
        let report = self.worker.snapshot();
        let counts = [
            ("acked", report.acked),
            ("retried", report.retried),
            ("dead_lettered", report.dead_lettered),
            ("bills_published", self.handler.bills_published()),
            ("lookups_cached", self.lookups.cached()),
            ("lookups_fetched", self.lookups.fetched()),
        ];
        counts
            .into_iter()
            .map(|(name, count)| (name.to_owned(), count))
            .collect()
    }
}

/// The key of an instance's heartbeat.
pub fn heartbeat_key(instance: &str) -> String {
    format!("{}.{}", Stage::Transform, pipeline::key::encode(instance))
}

/// The running parts the heartbeat task looks at.
pub(crate) struct Monitor {
    pub store: Store,
    pub base: Heartbeat,
    pub interval: Duration,
    pub sources: Sources,
    pub client: async_nats::Client,
    pub consumer: PullConsumer,
    pub readiness: Readiness,
}

impl Monitor {
    /// Beats until `stop` is cancelled, then deletes the heartbeat.
    pub async fn run(mut self, stop: CancellationToken) {
        let key = heartbeat_key(&self.base.instance);
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => self.tick(&key).await,
            }
        }
        if let Err(error) = self.store.delete(&key).await {
            debug!(key, error = %error, "Heartbeat could not be removed; it expires by itself");
        }
    }

    async fn tick(&mut self, key: &str) {
        let connected = self.client.connection_state() == State::Connected;
        self.readiness.set("nats", connected);
        if !connected {
            return;
        }

        let heartbeat = Heartbeat {
            processed: self.sources.processed(),
            ..self.base.clone()
        };
        // A struct of strings, numbers and a time always serialises.
        let value = serde_json::to_vec(&heartbeat).unwrap_or_default();
        if let Err(error) = self.store.put(key, value.into()).await {
            warn!(key, error = %error, "Heartbeat could not be written");
        }
        match self.consumer.info().await {
            Ok(info) => metrics::consumer_backlog(
                Consumer::Transformer,
                info.num_pending,
                info.num_ack_pending as u64,
            ),
            Err(error) => debug!(error = %error, "Consumer info unavailable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        assert_eq!(heartbeat_key("host-1"), "transform.host-1");
        let key = heartbeat_key("a.b c");
        assert!(pipeline::key::is_valid_kv_key(&key), "{key}");
        assert_eq!(key.split('.').count(), 2);
    }
}
