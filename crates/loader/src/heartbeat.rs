//! The loader's heartbeat in the `bridge_workers` bucket, which `bridge status` reads.
//!
//! Every few seconds the loader puts `load.<instance>` (the instance id encoded as a key token)
//! with a JSON value saying who it is and what it has done so far. The bucket forgets a key a
//! minute after its last write, so a loader that died disappears by itself. A failed write is
//! logged and tried again at the next beat: a heartbeat must never stop the work.

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use chrono::{DateTime, Utc};
use pipeline::Stage;
use pipeline::worker::{RunReport, WorkerStats};
use serde::Serialize;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::stats::{LoadCounts, LoadStats};

/// Who this loader is, as its heartbeats say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Always `load`.
    pub stage: Stage,
    /// The instance id.
    pub instance: String,
    /// The loader's version.
    pub version: &'static str,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// When the loader started.
    pub started_at: DateTime<Utc>,
}

impl Identity {
    /// This process, named `instance` or, without one, `<host>-<pid>`.
    pub fn of_this_process(instance: Option<&str>) -> Identity {
        let host = host_name();
        let pid = std::process::id();
        Identity {
            stage: Stage::Load,
            instance: instance
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{host}-{pid}")),
            version: env!("CARGO_PKG_VERSION"),
            pid,
            host,
            started_at: Utc::now(),
        }
    }

    /// The key of this loader's heartbeat.
    pub fn key(&self) -> String {
        format!(
            "{}.{}",
            self.stage.as_str(),
            pipeline::key::encode(&self.instance)
        )
    }
}

/// One heartbeat's value.
#[derive(Debug, Serialize)]
struct Beat<'a> {
    #[serde(flatten)]
    identity: &'a Identity,
    at: DateTime<Utc>,
    processed: Processed,
}

/// The counters a heartbeat carries: the exits the consumer loop confirmed, and what the loads
/// did.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Processed {
    acked: u64,
    retried: u64,
    dead_lettered: u64,
    created: u64,
    modified: u64,
    unchanged: u64,
    stale: u64,
    recovered: u64,
}

impl Processed {
    fn new(worker: RunReport, loads: LoadCounts) -> Processed {
        Processed {
            acked: worker.acked,
            retried: worker.retried,
            dead_lettered: worker.dead_lettered,
            created: loads.created,
            modified: loads.modified,
            unchanged: loads.unchanged,
            stale: loads.stale,
            recovered: loads.recovered,
        }
    }
}

/// Writes heartbeats until `stop` is cancelled, then one last one.
pub async fn run(
    store: Store,
    identity: Identity,
    interval: Duration,
    worker: Arc<WorkerStats>,
    loads: Arc<LoadStats>,
    stop: CancellationToken,
) {
    let key = identity.key();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        beat(&store, &key, &identity, worker.snapshot(), loads.snapshot()).await;
    }
    beat(&store, &key, &identity, worker.snapshot(), loads.snapshot()).await;
}

async fn beat(store: &Store, key: &str, identity: &Identity, worker: RunReport, loads: LoadCounts) {
    let value = Beat {
        identity,
        at: Utc::now(),
        processed: Processed::new(worker, loads),
    };
    // A struct of strings, numbers and times always serialises.
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return;
    };
    match store.put(key, bytes.into()).await {
        Ok(revision) => debug!(key, revision, "Heartbeat written"),
        Err(error) => warn!(key, error = %error, "Heartbeat not written"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        let identity = Identity::of_this_process(Some("loader 1.a"));
        assert_eq!(identity.key(), "load.loader=201=2Ea");
        let default = Identity::of_this_process(None);
        assert!(
            default
                .instance
                .ends_with(&format!("-{}", std::process::id()))
        );
        assert!(pipeline::key::is_valid_kv_key(&default.key()));
    }

    #[test]
    fn a_beat_carries_identity_and_counts_in_one_object() {
        let identity = Identity::of_this_process(Some("l1"));
        let beat = Beat {
            identity: &identity,
            at: Utc::now(),
            processed: Processed::new(
                RunReport {
                    acked: 3,
                    retried: 1,
                    ..RunReport::default()
                },
                LoadCounts {
                    created: 2,
                    ..LoadCounts::default()
                },
            ),
        };
        let value = serde_json::to_value(&beat).expect("json");
        assert_eq!(value["stage"], "load");
        assert_eq!(value["instance"], "l1");
        assert_eq!(value["pid"], std::process::id());
        assert_eq!(value["processed"]["acked"], 3);
        assert_eq!(value["processed"]["created"], 2);
        assert!(value["started_at"].is_string() && value["host"].is_string());
    }
}
