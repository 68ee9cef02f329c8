//! The heartbeat: every few seconds, who this extractor is and what it has done, in the
//! `bridge_workers` bucket, for `bridge status` to read.
//!
//! The key is `extract.<instance>` (the instance encoded as a KV token); the value is JSON
//! `{stage, instance, version, pid, host, started_at, cursor, processed: {…counts}}`. The bucket
//! forgets a key a minute after its last write, so a crashed extractor disappears by itself; a
//! clean stop deletes its key at once. A failed write is logged once per outage and tried again
//! at the next beat: heartbeats never stop the work. The same loop keeps the `nats` readiness
//! check in step with the connection.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use pipeline::Stage;
use serde::Serialize;
use telemetry::health::Readiness;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::stats::{Counts, Stats};

/// The readiness check that is true while NATS is connected.
pub const NATS_READY: &str = "nats";

/// The heartbeat's value.
#[derive(Debug, Serialize)]
pub struct Beat<'a> {
    /// Always `extract`.
    pub stage: &'static str,
    /// The instance name.
    pub instance: &'a str,
    /// The crate version.
    pub version: &'static str,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: &'a str,
    /// When the process started, RFC 3339 UTC.
    pub started_at: String,
    /// Where the cursor stood when last read or moved, RFC 3339 Beijing time.
    pub cursor: Option<String>,
    /// What the process has done.
    pub processed: Counts,
}

/// Writes heartbeats for one extractor process.
pub struct Heartbeat {
    store: Store,
    client: async_nats::Client,
    key: String,
    instance: String,
    host: String,
    started_at: DateTime<Utc>,
    stats: Arc<Stats>,
    readiness: Readiness,
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
        Heartbeat {
            store,
            client,
            key: key(instance),
            instance: instance.to_owned(),
            host: crate::config::host_name(),
            started_at: Utc::now(),
            stats,
            readiness,
        }
    }

    /// Beats every `interval` until `stop`, then deletes the key.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let connected =
                self.client.connection_state() == async_nats::connection::State::Connected;
            self.readiness.set(NATS_READY, connected);
            match self.beat().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    warn!(key = %self.key, error = %error, "Heartbeat not written; trying again");
                    failing = true;
                }
                Err(error) => debug!(key = %self.key, error = %error, "Heartbeat not written"),
            }
        }
        if let Err(error) = self.store.delete(&self.key).await {
            debug!(key = %self.key, error = %error, "Heartbeat not removed; it will expire");
        }
    }

    async fn beat(&self) -> Result<(), async_nats::jetstream::kv::PutError> {
        let beat = Beat {
            stage: Stage::Extract.as_str(),
            instance: &self.instance,
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            host: &self.host,
            started_at: self.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            cursor: self
                .stats
                .cursor()
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, false)),
            processed: self.stats.counts(),
        };
        // A struct of strings and numbers always serialises.
        let json = serde_json::to_vec(&beat).unwrap_or_default();
        self.store.put(&self.key, Bytes::from(json)).await?;
        Ok(())
    }
}

/// The heartbeat key of `instance`: `extract.<encoded instance>`.
pub fn key(instance: &str) -> String {
    format!(
        "{}.{}",
        Stage::Extract.as_str(),
        pipeline::key::encode(instance)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        assert_eq!(key("host-1.example-42"), "extract.host-1=2Eexample-42");
    }
}
