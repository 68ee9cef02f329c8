//! What the extractor has done, counted once and reported three ways: Prometheus metrics,
//! heartbeat counts and the summaries that `run` and `backfill` return.
//!
//! Each event is recorded here and nowhere else, so the metric, the heartbeat and the log line
//! agree. The metrics telemetry defines are recorded through its functions (orders read, dead
//! letters, the lag); telemetry has none yet for publish outcomes and window outcomes, so this
//! module records `bridge_extractor_orders_published_total{result}` and
//! `bridge_extractor_windows_total{outcome}` itself, with fixed label values. WDT calls are
//! counted per page read, where [`crate::extract`] times them.

use std::ops::AddAssign;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use telemetry::metrics::{self as telemetry_metrics, DeadLetterReason, Stage};
use wdt::WdtTime;

/// Raw orders published, by `result`: `stored` or `duplicate` (dropped by JetStream by its
/// `Nats-Msg-Id`).
pub const ORDERS_PUBLISHED: &str = "bridge_extractor_orders_published_total";
/// Windows read, by `outcome`: `ok` or `failed` (left for the next interval).
pub const WINDOWS: &str = "bridge_extractor_windows_total";

/// Gives the extractor's own metrics their descriptions, after the recorder is installed.
pub(crate) fn describe() {
    metrics::describe_counter!(
        ORDERS_PUBLISHED,
        metrics::Unit::Count,
        "Raw orders published by the extractor, by result (stored or duplicate)."
    );
    metrics::describe_counter!(
        WINDOWS,
        metrics::Unit::Count,
        "Windows the extractor read, by outcome (ok or failed)."
    );
}

/// What one window, or a whole range, published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Orders read from WDT.
    pub orders_read: u64,
    /// Raw-order messages the stream stored.
    pub stored: u64,
    /// Raw-order messages the stream already held (an unchanged order read again).
    pub duplicates: u64,
    /// Orders dead-lettered because they could not say who they are.
    pub dead_letters: u64,
}

impl AddAssign for Summary {
    fn add_assign(&mut self, other: Summary) {
        self.orders_read += other.orders_read;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.dead_letters += other.dead_letters;
    }
}

/// The running totals of one extractor process.
#[derive(Debug, Default)]
pub struct Stats {
    orders_read: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    dead_letters: AtomicU64,
    windows: AtomicU64,
    failed_windows: AtomicU64,
    cursor: Mutex<Option<WdtTime>>,
}

/// A copy of the totals, as heartbeats carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Orders read from WDT.
    pub orders_read: u64,
    /// Raw-order messages stored.
    pub stored: u64,
    /// Raw-order messages dropped as duplicates.
    pub duplicates: u64,
    /// Orders dead-lettered.
    pub dead_letters: u64,
    /// Windows whose every publish was acknowledged.
    pub windows: u64,
    /// Windows that failed and were left for the next interval.
    pub failed_windows: u64,
}

impl Stats {
    /// The totals now.
    pub fn counts(&self) -> Counts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            orders_read: read(&self.orders_read),
            stored: read(&self.stored),
            duplicates: read(&self.duplicates),
            dead_letters: read(&self.dead_letters),
            windows: read(&self.windows),
            failed_windows: read(&self.failed_windows),
        }
    }

    /// Where the cursor stood when last read or moved by this process.
    pub fn cursor(&self) -> Option<WdtTime> {
        *self.lock_cursor()
    }

    /// Records what one page of orders published.
    pub(crate) fn record_page(&self, page: &Summary) {
        self.orders_read
            .fetch_add(page.orders_read, Ordering::Relaxed);
        self.stored.fetch_add(page.stored, Ordering::Relaxed);
        self.duplicates
            .fetch_add(page.duplicates, Ordering::Relaxed);
        self.dead_letters
            .fetch_add(page.dead_letters, Ordering::Relaxed);
        telemetry_metrics::orders_read(page.orders_read);
        metrics::counter!(ORDERS_PUBLISHED, "result" => "stored").increment(page.stored);
        metrics::counter!(ORDERS_PUBLISHED, "result" => "duplicate").increment(page.duplicates);
        for _ in 0..page.dead_letters {
            telemetry_metrics::dead_letter(Stage::Extract, DeadLetterReason::MalformedOrder);
        }
    }

    /// Records a window whose every publish was acknowledged.
    pub(crate) fn window_done(&self) {
        self.windows.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(WINDOWS, "outcome" => "ok").increment(1);
    }

    /// Records a window left for the next interval.
    pub(crate) fn window_failed(&self) {
        self.failed_windows.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(WINDOWS, "outcome" => "failed").increment(1);
    }

    /// Records where the cursor stands and sets the lag gauge from it.
    pub(crate) fn cursor_at(&self, at: WdtTime) {
        *self.lock_cursor() = Some(at);
        self.update_lag();
    }

    /// Sets the lag gauge: how far the cursor is behind now (zero before any cursor).
    pub(crate) fn update_lag(&self) {
        let Some(at) = self.cursor() else {
            return;
        };
        let behind = (Utc::now() - at.to_utc())
            .to_std()
            .unwrap_or(Duration::ZERO);
        telemetry_metrics::extractor_lag(behind);
    }

    fn lock_cursor(&self) -> std::sync::MutexGuard<'_, Option<WdtTime>> {
        // A time is written whole; a panic elsewhere cannot leave it half-set.
        self.cursor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_add_up_in_the_totals() {
        let stats = Stats::default();
        let page = Summary {
            orders_read: 3,
            stored: 2,
            duplicates: 1,
            dead_letters: 0,
        };
        stats.record_page(&page);
        stats.record_page(&page);
        stats.window_done();
        let counts = stats.counts();
        assert_eq!(
            (counts.orders_read, counts.stored, counts.duplicates),
            (6, 4, 2)
        );
        assert_eq!((counts.windows, counts.failed_windows), (1, 0));

        let mut total = Summary::default();
        total += page;
        total += page;
        assert_eq!(total.stored, 4);
    }
}
