//! The transformer's heartbeat: what [`pipeline::heartbeat`] writes for every worker, with the
//! transformer's counts as `processed`.
//!
//! Every interval the worker writes `transform.<instance>` (the instance [`pipeline::key`]
//! encoded) with `{stage, instance, version, pid, host, started_at, at, processed: {...}}`; a
//! clean stop deletes it. The loop is the pipeline's; the same tick refreshes the `nats`
//! readiness check and, here, the consumer backlog gauges. Reading heartbeats is
//! `bridge status`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::consumer::PullConsumer;
use chrono::{DateTime, Utc};
use pipeline::Stage;
use pipeline::heartbeat::Vitals;
use pipeline::worker::WorkerStats;
use serde::Serialize;
use serde_json::Value;
use telemetry::metrics::{self, Consumer};
use tracing::debug;

use crate::handler::HandlerCounts;
use crate::resolve::LookupCounts;

/// What one heartbeat says, as a reader parses it.
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

/// The key of an instance's heartbeat.
pub fn heartbeat_key(instance: &str) -> String {
    pipeline::heartbeat::key(Stage::Transform, instance)
}

/// Everything the heartbeat reads its counts from, and the consumer whose backlog it reports.
pub(crate) struct Sources {
    pub worker: Arc<WorkerStats>,
    pub handler: Arc<HandlerCounts>,
    pub lookups: Arc<LookupCounts>,
    pub consumer: PullConsumer,
}

impl Sources {
    fn counts(&self) -> BTreeMap<&'static str, u64> {
        let report = self.worker.snapshot();
        BTreeMap::from([
            ("acked", report.acked),
            ("retried", report.retried),
            ("dead_lettered", report.dead_lettered),
            ("bills_published", self.handler.bills_published()),
            ("lookups_cached", self.lookups.cached()),
            ("lookups_fetched", self.lookups.fetched()),
        ])
    }
}

impl Vitals for Sources {
    fn processed(&self) -> Value {
        Value::from_iter(self.counts())
    }

    async fn on_tick(&self) {
        // A clone, since asking for the info needs the consumer mutably.
        match self.consumer.clone().info().await {
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
