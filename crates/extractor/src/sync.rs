//! `extractor run`: one window per interval, from the cursor minus the overlap to now minus the
//! lag, and the cursor moved to the window's end once every publish of it is acknowledged.
//!
//! The lag leaves WDT time to commit what it is still writing; the overlap reads again what the
//! last windows already covered, so an order WDT made visible after its window was read is
//! still seen. Unchanged orders read again are dropped by JetStream by their `Nats-Msg-Id`, so
//! the overlap costs WDT calls and nothing downstream. A window is at most the reader's longest
//! (30 days): an extractor far behind catches up window by window without waiting for the
//! interval, and the cursor moves after each one.
//!
//! Failures: a transient one (WDT after the client's retries, a publish or a cursor write that
//! NATS did not acknowledge) ends the window with the cursor where it was; it is logged,
//! counted, and the same range is tried again at the next interval. A permanent one (a refused
//! signature or credential, a bad configuration, a corrupt cursor) ends `run` with the error,
//! since nothing can succeed until an operator acts. On the shutdown signal the window in hand
//! is finished (the cursor moved if it succeeded) and no new one starts. Reading and publishing
//! a window is [`crate::extract`]'s.

use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike;
use pipeline::StoreError;
use pipeline::cursor::{Advance, CursorStore};
use telemetry::health::Readiness;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wdt::{WdtTime, Window, format_wdt_time};

use crate::config::RunArgs;
use crate::extract::{ExtractError, Extraction};
use crate::order::window_text;
use crate::stats::{Stats, Summary};

/// The readiness check that is true while WDT answers.
pub const WDT_READY: &str = "wdt";

/// Why a window of `run` failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading or publishing the window failed.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// The cursor could not be read or moved.
    #[error("cursor: {0}")]
    Cursor(#[from] StoreError),
}

impl SyncError {
    /// Whether the next interval may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Extract(error) => error.is_transient(),
            SyncError::Cursor(error) => error.is_transient(),
        }
    }

    fn is_wdt(&self) -> bool {
        matches!(self, SyncError::Extract(ExtractError::Wdt { .. }))
    }
}

/// What one pass of the loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The window reached now minus the lag; wait for the interval.
    CaughtUp,
    /// The window was cut at the longest window; read the next at once.
    Behind,
}

/// The continuous sync: the windows' schedule over one cursor.
pub struct Syncer {
    extraction: Extraction,
    cursor: CursorStore,
    args: RunArgs,
    start: WdtTime,
    max_window: chrono::Duration,
    stats: Arc<Stats>,
    readiness: Readiness,
}

impl Syncer {
    /// A sync over `cursor`; without a stored cursor it starts at `args.start`, or a day
    /// before now.
    pub fn new(
        extraction: Extraction,
        cursor: CursorStore,
        args: RunArgs,
        max_window_days: u32,
        stats: Arc<Stats>,
        readiness: Readiness,
    ) -> Syncer {
        let start = args
            .start
            .unwrap_or_else(|| now() - chrono::Duration::days(1));
        Syncer {
            extraction,
            cursor,
            args,
            start: whole_second(start),
            max_window: chrono::Duration::days(i64::from(max_window_days)),
            stats,
            readiness,
        }
    }

    /// Where the first window starts when no cursor is stored.
    pub fn start(&self) -> WdtTime {
        self.start
    }

    /// Runs windows until `shutdown`, and returns what they published; returns early with a
    /// failure no retry can fix.
    pub async fn run(&self, shutdown: &CancellationToken) -> Result<Summary, SyncError> {
        let mut total = Summary::default();
        let mut ticks = tokio::time::interval(self.args.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Between windows, the signal ends the loop at once.
                biased;
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            // Far behind, the next window follows at once, unless the signal came meanwhile.
            while self.attempt(&mut total).await? == Pass::Behind && !shutdown.is_cancelled() {}
            self.stats.update_lag();
        }
        info!(
            orders_read = total.orders_read,
            stored = total.stored,
            duplicates = total.duplicates,
            dead_letters = total.dead_letters,
            "Sync stopped"
        );
        Ok(total)
    }

    /// One pass; a transient failure is logged and counted, and leaves the window for the next
    /// interval.
    async fn attempt(&self, total: &mut Summary) -> Result<Pass, SyncError> {
        match self.pass(total).await {
            Ok(pass) => Ok(pass),
            Err(error) if error.is_transient() => {
                self.failed(&error);
                Ok(Pass::CaughtUp)
            }
            Err(error) => {
                // The caller reports it: the binary logs it as the cause of its exit.
                self.stats.window_failed();
                Err(error)
            }
        }
    }

    /// Reads one window and moves the cursor to its end.
    async fn pass(&self, total: &mut Summary) -> Result<Pass, SyncError> {
        let now = now();
        let stored = self.cursor.read().await?;
        if let Some(position) = &stored {
            self.stats.cursor_at(position.at);
        }
        let from = match &stored {
            Some(position) => before(whole_second(position.at), self.args.overlap),
            None => self.start,
        };
        let latest = whole_second(before(now, self.args.lag));
        if from > latest {
            debug!(from = %format_wdt_time(&from), "Nothing to read before the lag has passed");
            return Ok(Pass::CaughtUp);
        }
        let last_second = chrono::Duration::seconds(1);
        let to = latest.min(from + self.max_window - last_second);
        let window = Window {
            start: from,
            end: to,
        };

        // The window in hand is finished even if the signal comes meanwhile: never cancelled.
        let summary = self
            .extraction
            .extract(from, to, &CancellationToken::new())
            .await?;
        *total += summary;
        self.readiness.set(WDT_READY, true);
        self.advance(&window).await?;
        self.stats.window_done();
        Ok(if to < latest {
            Pass::Behind
        } else {
            Pass::CaughtUp
        })
    }

    async fn advance(&self, window: &Window) -> Result<(), SyncError> {
        match self.cursor.advance(window.end).await? {
            Advance::Moved { revision } => {
                debug!(cursor = %format_wdt_time(&window.end), revision, "Cursor moved");
                self.stats.cursor_at(window.end);
            }
            Advance::Refused { current } => {
                // Another extractor on the same cursor got further; this one's window is a
                // re-read of part of its work, already published.
                info!(
                    window = %window_text(window),
                    cursor = %format_wdt_time(&current),
                    "Cursor already past the window; left where it stands"
                );
                self.stats.cursor_at(current);
            }
        }
        Ok(())
    }

    fn failed(&self, error: &SyncError) {
        self.stats.window_failed();
        if error.is_wdt() {
            self.readiness.set(WDT_READY, false);
        }
        let failed_windows = self.stats.counts().failed_windows;
        warn!(
            error = %error,
            failed_windows,
            retry_in_ms = u64::try_from(self.args.interval.as_millis()).unwrap_or(u64::MAX),
            "Window failed; cursor left in place, trying again next interval"
        );
    }
}

fn now() -> WdtTime {
    chrono::Utc::now().with_timezone(&wdt::beijing())
}

fn whole_second(time: WdtTime) -> WdtTime {
    time.with_nanosecond(0).unwrap_or(time)
}

/// `time` minus `duration`. Validation keeps lag and overlap under 30 days, far inside what
/// chrono can subtract; should that ever fail, `time` itself is the safe answer (no overlap).
fn before(time: WdtTime, duration: Duration) -> WdtTime {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| time.checked_sub_signed(duration))
        .unwrap_or(time)
}
