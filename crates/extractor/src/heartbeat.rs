//! The extractor's heartbeat: what [`pipeline::heartbeat`] writes for every worker, with the
//! extractor's counts as `processed` and where its cursor stands as `cursor`.
//!
//! The key is `extract.<instance>` (the instance encoded as a KV token); the value is JSON
//! `{stage, instance, version, pid, host, started_at, at, cursor, processed: {…counts}}`. The
//! loop, its failure handling and the deletion of the key on a clean stop are the pipeline's;
//! the same loop keeps the `nats` readiness check in step with the connection.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use chrono::SecondsFormat;
use pipeline::Stage;
use pipeline::heartbeat::{self, Identity, Vitals};
use serde_json::{Map, Value};
use telemetry::health::Readiness;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// The readiness check that is true while NATS is connected.
pub const NATS_READY: &str = heartbeat::NATS_READY;

/// Writes heartbeats for one extractor process.
pub struct Heartbeat {
    beats: heartbeat::Heartbeat,
    stats: Arc<Stats>,
}

impl Heartbeat {
    /// Heartbeats of `instance` into `store`, counting from `stats`.
    pub fn new(
        store: Store,
        client: async_nats::Client,
        instance: &str,
        stats: Arc<Stats>,
        readiness: Readiness,
    ) -> Heartbeat {
        let identity =
            Identity::of_this_process(Stage::Extract, Some(instance), env!("CARGO_PKG_VERSION"));
        Heartbeat {
            beats: heartbeat::Heartbeat::new(store, identity).watching(client, readiness),
            stats,
        }
    }

    /// Beats every `interval` until `stop`, then deletes the key.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        let vitals = ExtractorVitals(self.stats);
        self.beats.run(interval, vitals, stop).await
    }
}

/// The extractor's part of a beat.
struct ExtractorVitals(Arc<Stats>);

impl Vitals for ExtractorVitals {
    fn processed(&self) -> Value {
        // A struct of numbers always serialises.
        serde_json::to_value(self.0.counts()).unwrap_or_default()
    }

    /// Where the cursor stood when last read or moved, RFC 3339 Beijing time.
    fn extra(&self) -> Map<String, Value> {
        let cursor = self
            .0
            .cursor()
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, false));
        Map::from_iter([("cursor".to_owned(), cursor.into())])
    }
}

/// The heartbeat key of `instance`: `extract.<encoded instance>`.
pub fn key(instance: &str) -> String {
    heartbeat::key(Stage::Extract, instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        assert_eq!(key("host-1.example-42"), "extract.host-1=2Eexample-42");
    }

    #[test]
    fn a_beat_carries_the_counts_and_the_cursor() {
        let vitals = ExtractorVitals(Arc::default());
        let identity = Identity::of_this_process(Stage::Extract, Some("e1"), "0.1.0");
        let beat = heartbeat::beat_value(&identity, chrono::Utc::now(), &vitals);
        assert!(beat["processed"]["stored"].is_u64(), "{beat}");
        assert!(beat["cursor"].is_null(), "no cursor read yet: {beat}");
    }
}
