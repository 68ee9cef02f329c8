//! What the loader counts, in one place: each event bumps the loader's own counters (read by
//! heartbeats and returned by [`crate::run`]) and records the matching metric.
//!
//! The shared metrics come from [`telemetry::metrics`]. One is the loader's own, because
//! telemetry does not define it yet: [`LOAD_LATENCY`], the time from the transformer's publish
//! (`published_at`) to the ledger recording the bill. Installing the Prometheus recorder is done
//! once per process here, so that several loaders run in one test process share it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use telemetry::metrics::{self as m, ApiEndpoint, ApiOutcome, DeadLetterReason, LoadOutcome};

/// Seconds from a bill's publish by the transformer to its record in the ledger.
pub const LOAD_LATENCY: &str = "bridge_bill_load_latency_seconds";

/// The Prometheus recorder of this process, installed on first use; `None` if another recorder
/// was installed first (then `/metrics` answers 404).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match m::install() {
            Ok(handle) => {
                metrics::describe_histogram!(
                    LOAD_LATENCY,
                    metrics::Unit::Seconds,
                    "Time from a bill's publish by the transformer to its record in the ledger."
                );
                Some(handle)
            }
            Err(error) => {
                tracing::warn!(error = %error, "Metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// Counters of one loader.
#[derive(Debug, Default)]
pub struct LoadStats {
    created: AtomicU64,
    modified: AtomicU64,
    unchanged: AtomicU64,
    stale: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    recovered: AtomicU64,
}

/// A snapshot of [`LoadStats`]; the `processed` part of a heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadCounts {
    /// Bills created in 星辰.
    pub created: u64,
    /// Bills modified in place.
    pub modified: u64,
    /// Bills acknowledged without posting: the same content was already saved.
    pub unchanged: u64,
    /// Bills acknowledged without posting: a newer version was already saved.
    pub stale: u64,
    /// Bills given up on (dead letters chosen by the loader).
    pub dead_lettered: u64,
    /// Bills sent back for a later delivery.
    pub retried: u64,
    /// Bills found by number after an ambiguous save, a repeated number or a crash.
    pub recovered: u64,
}

impl LoadStats {
    /// Counts a bill finished with `outcome`.
    pub fn loaded(&self, outcome: LoadOutcome) {
        let counter = match outcome {
            LoadOutcome::Created => &self.created,
            LoadOutcome::Modified => &self.modified,
            LoadOutcome::Unchanged => &self.unchanged,
            LoadOutcome::Stale => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        m::bill_loaded(outcome);
    }

    /// Counts a bill found by number rather than acknowledged by its save.
    pub fn recovered(&self) {
        self.recovered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dead letter the loader chose (or that its last delivery's retry becomes).
    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        m::dead_letter(m::Stage::Load, reason);
    }

    /// Counts a retry.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> LoadCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LoadCounts {
            created: read(&self.created),
            modified: read(&self.modified),
            unchanged: read(&self.unchanged),
            stale: read(&self.stale),
            dead_lettered: read(&self.dead_lettered),
            retried: read(&self.retried),
            recovered: read(&self.recovered),
        }
    }
}

/// Records one call to 星辰 that returned `result` after `elapsed`.
pub fn api_call<T>(path: &str, result: &xingchen::Result<T>, elapsed: Duration) {
    let outcome = ApiOutcome::of(result, xingchen::Error::is_transient);
    m::api_call(ApiEndpoint::from_name(path), outcome, elapsed);
}

/// Records the time from `published_at` to `recorded_at`; a clock that runs backwards between
/// the two hosts records zero.
pub fn load_latency(published_at: DateTime<Utc>, recorded_at: DateTime<Utc>) {
    let seconds = (recorded_at - published_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    metrics::histogram!(LOAD_LATENCY).record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_counter() {
        let stats = LoadStats::default();
        stats.loaded(LoadOutcome::Created);
        stats.loaded(LoadOutcome::Created);
        stats.loaded(LoadOutcome::Stale);
        stats.dead_lettered(DeadLetterReason::TargetRejected);
        let counts = stats.snapshot();
        assert_eq!((counts.created, counts.stale), (2, 1));
        assert_eq!((counts.modified, counts.unchanged), (0, 0));
        assert_eq!(counts.dead_lettered, 1);
    }
}
