//! The loader's heartbeat: what [`pipeline::heartbeat`] writes for every worker, with the
//! loader's counts as `processed`.
//!
//! Every few seconds the loader puts `load.<instance>` (the instance id encoded as a key token)
//! with `{stage, instance, version, pid, host, started_at, at, processed: {...}}`, which
//! `bridge status` reads; a clean stop deletes it. The loop and its failure handling are the
//! pipeline's: a heartbeat never stops the work.

use std::sync::Arc;

use pipeline::Stage;
use pipeline::heartbeat::{Identity, Vitals};
use pipeline::worker::{RunReport, WorkerStats};
use serde::Serialize;
use serde_json::Value;

use crate::stats::{LoadCounts, LoadStats};

/// This process's identity as a loader, named `instance` or, without one, `<host>-<pid>`.
pub fn identity(instance: Option<&str>) -> Identity {
    Identity::of_this_process(Stage::Load, instance, env!("CARGO_PKG_VERSION"))
}

/// Where the heartbeat reads its counts.
pub(crate) struct Sources {
    pub worker: Arc<WorkerStats>,
    pub loads: Arc<LoadStats>,
}

impl Vitals for Sources {
    fn processed(&self) -> Value {
        let processed = Processed::new(self.worker.snapshot(), self.loads.snapshot());
        // A struct of numbers always serialises.
        serde_json::to_value(processed).unwrap_or_default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        assert_eq!(identity(Some("loader 1.a")).key(), "load.loader=201=2Ea");
        let default = identity(None);
        assert!(
            default
                .instance
                .ends_with(&format!("-{}", std::process::id()))
        );
        assert!(pipeline::key::is_valid_kv_key(&default.key()));
    }

    #[test]
    fn a_beat_carries_identity_and_counts_in_one_object() {
        let identity = identity(Some("l1"));
        let processed = Processed::new(
            RunReport {
                acked: 3,
                retried: 1,
                ..RunReport::default()
            },
            LoadCounts {
                created: 2,
                ..LoadCounts::default()
            },
        );
        let value = serde_json::to_value(processed).expect("json");
        struct Fixed(Value);
        impl Vitals for Fixed {
            fn processed(&self) -> Value {
                self.0.clone()
            }
        }
        let value = pipeline::heartbeat::beat_value(&identity, chrono::Utc::now(), &Fixed(value));
        assert_eq!(value["stage"], "load");
        assert_eq!(value["instance"], "l1");
        assert_eq!(value["pid"], std::process::id());
        assert_eq!(value["processed"]["acked"], 3);
        assert_eq!(value["processed"]["created"], 2);
        assert!(value["started_at"].is_string() && value["host"].is_string());
        assert!(value["at"].is_string());
    }
}
