//! The 星辰 request budget shared by every replica: one token bucket per account set, kept in the
//! `bridge_budget` KV bucket and updated by compare-and-set, so that however many transformers
//! and loaders run, their calls together stay within the account set's requests per minute.
//!
//! The bucket is a GCRA ("generic cell rate algorithm", a token bucket written as one number):
//! the key holds the theoretical arrival time `tat`, the instant at which the bucket would be
//! full again. Taking `n` tokens at `now` is allowed while `max(tat, now) + n × interval` stays
//! within `now + burst × interval`, and moves `tat` there. Refill is therefore a function of the
//! one state every process agrees on (the latest revision) and of the clock; no process creates
//! tokens of its own. A process writes with the revision it read; when another process wrote
//! first the update fails, and the loser reads again and waits for the next token, with a little
//! jitter so that the same process does not always win the race.
//!
//! **Why the rate is a little below R.** The 星辰 simulator, like the gateway it imitates, refuses
//! a call when R calls were already accepted in the 60 s before it (a sliding window). In a bucket
//! of capacity `burst` and interval `i`, any `R + 1` grants span at least `(R + 1 − burst) × i`,
//! so the window never sees more than R if that span is at least 60 s. Grants reach the gateway a
//! little later than they are made, and not all equally late (the KV write, the HTTP send,
//! scheduling, clock differences between hosts), so the span must also cover that spread, the
//! `slack`: `i = (60 s + slack) / (R + 1 − burst)`. With the defaults (burst 3, slack 500 ms)
//! this is 99.0 % of R at R = 1200/min, 98.8 % at 500/min and 95.9 % at 60/min. A bigger burst
//! absorbs longer pauses between a token becoming free and a process claiming it, but costs
//! `burst / R` of the rate; a burst of 1 loses every token not claimed the instant it is due.
//!
//! **Leases.** A process takes tokens only for callers already waiting (at most `burst` at a
//! time, since the bucket holds no more) and hands each out at once, so no token is ever held:
//! a token held and spent later could meet newer ones in the gateway's window. The KV traffic is
//! one write per grant batch (about R/60 writes a second across all replicas, plus a failed write
//! and a read per replica that lost a race), which JetStream carries easily at the rates 星辰
//! allows.
//!
//! **Failure.** While NATS does not answer, callers wait; the refill task retries with backoff
//! (100 ms doubling to 5 s) and never lets a call through unbudgeted. A value in the key that
//! this version cannot read is reported at ERROR and waited on the same way; deleting the key
//! resets the bucket to full. Clock skew between hosts of `d` gives the faster host at most `d`
//! worth of tokens once, and is covered by the slack while it stays below it.
//!
//! **Callers.** Waiting callers of one process queue in arrival order and are served first come
//! first served; a caller that gives up (its future dropped) leaves the queue and its place goes
//! to the next. The queue holds one entry per waiting caller and nothing else, so its length is
//! bounded by the worker's own concurrency. How the 星辰 client calls [`SharedBudget::acquire`]
//! before each request is left to the `xingchen` crate (`RateLimitFn`), and creating the bucket
//! to [`crate::topology`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::Store;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{ConfigError, duration_text};
use crate::key;
use crate::kv::{StoreError, Versioned, read_json, write_json};

/// The window the gateway counts requests in.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Default capacity of the shared bucket, in requests.
pub const DEFAULT_BUDGET_BURST: &str = "3";
/// Default allowance for the spread between a grant and its arrival at the gateway.
pub const DEFAULT_BUDGET_SLACK: &str = "500ms";

/// First wait after NATS failed to answer; it doubles up to [`OUTAGE_MAX_DELAY`].
const OUTAGE_MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts while NATS does not answer.
const OUTAGE_MAX_DELAY: Duration = Duration::from_secs(5);
/// Longest random delay added before claiming a token.
const MAX_JITTER: Duration = Duration::from_millis(5);

/// How the shared request budget is shaped; the rate itself is `XINGCHEN_REQUESTS_PER_MINUTE`,
/// which the worker passes to [`SharedBudget::start`].
#[derive(Clone, Debug, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Requests the bucket holds when full: how many may go at once after a pause. Each one
    /// lowers the sustained rate by 1/R, see the module docs.
    #[arg(long = "budget-burst", env = "BRIDGE_BUDGET_BURST",
          default_value = DEFAULT_BUDGET_BURST)]
    pub burst: u32,

    /// Spread allowed between a grant and its arrival at the gateway; the bucket refills R
    /// requests per 60 s plus this.
    #[arg(long = "budget-slack", env = "BRIDGE_BUDGET_SLACK",
          default_value = DEFAULT_BUDGET_SLACK, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub slack: Duration,
}

impl BudgetConfig {
    /// Checks this shape against the account set's `requests_per_minute`.
    pub fn validate(&self, requests_per_minute: u32) -> Result<(), ConfigError> {
        Rate::new(requests_per_minute, self).map(|_| ())
    }
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        // The defaults are constants of this file; `defaults_agree_everywhere` parses them.
        BudgetConfig {
            burst: DEFAULT_BUDGET_BURST.parse().expect("default burst"),
            slack: humantime::parse_duration(DEFAULT_BUDGET_SLACK).expect("default slack"),
        }
    }
}

/// The bucket's interval and capacity, derived from R and a [`BudgetConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    interval_us: i64,
    burst: u32,
}

impl Rate {
    /// The rate that keeps `requests_per_minute` in every 60 s window, as the module docs derive.
    pub fn new(requests_per_minute: u32, config: &BudgetConfig) -> Result<Rate, ConfigError> {
        let invalid = |field, problem: &str| ConfigError {
            field,
            problem: problem.to_owned(),
        };
        if requests_per_minute == 0 {
            return Err(invalid("requests_per_minute", "must be at least 1"));
        }
        if config.burst == 0 || config.burst > requests_per_minute {
            return Err(invalid("burst", "must be from 1 to requests_per_minute"));
        }
        if config.slack > RATE_WINDOW {
            return Err(invalid("slack", "must be at most 60s"));
        }
        let span_us = (RATE_WINDOW + config.slack).as_micros() as i64;
        let grants = i64::from(requests_per_minute - config.burst) + 1;
        Ok(Rate {
            // Rounded up: a rate a hair low is safe, a hair high is not.
            interval_us: (span_us + grants - 1) / grants,
            burst: config.burst,
        })
    }

    /// Time between two tokens.
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us as u64)
    }

    /// Capacity of the bucket, in requests.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The sustained rate in requests per minute (below R, see the module docs).
    pub fn per_minute(&self) -> f64 {
        RATE_WINDOW.as_secs_f64() / self.interval().as_secs_f64()
    }

    /// What taking up to `want` tokens at `now_us` does to a bucket at `tat_us`.
    fn step(&self, tat_us: i64, now_us: i64, want: u32) -> Step {
        let interval = self.interval_us;
        let base = tat_us.max(now_us);
        // The latest `tat` a grant may leave behind: a bucket emptied to the last token.
        let ceiling = now_us + interval * i64::from(self.burst);
        // Negative when a host with a faster clock moved `tat` ahead of this one's `now`.
        let available = (ceiling - base) / interval;
        if available >= 1 {
            let tokens = want.min(available as u32);
            Step::Take {
                tokens,
                tat_us: base + interval * i64::from(tokens),
            }
        } else {
            Step::Wait {
                delay_us: base + interval - ceiling,
            }
        }
    }
}

/// The outcome of one look at the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Take `tokens` and write `tat_us`.
    Take { tokens: u32, tat_us: i64 },
    /// No token until `delay_us` from now.
    Wait { delay_us: i64 },
}

/// The value stored under an account set's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BucketState {
    /// Theoretical arrival time, microseconds since the Unix epoch.
    tat_us: i64,
}

/// What the refill task last knew of the key.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    tat_us: i64,
    /// `None` while the key does not exist.
    revision: Option<u64>,
}

/// Counters of one process's use of the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Tokens handed to callers.
    pub granted: u64,
    /// Callers waiting now.
    pub waiting: usize,
    /// Writes that lost a race with another process.
    pub conflicts: u64,
    /// Reads or writes NATS did not answer or refused.
    pub errors: u64,
    /// Tokens taken for callers that gave up before they got them.
    pub discarded: u64,
}

/// A handle on the shared budget; cheap to clone, every clone shares one queue and task.
#[derive(Clone)]
pub struct SharedBudget {
    inner: Arc<Inner>,
}

struct Inner {
    waiters: Arc<Waiters>,
    rate: Rate,
    key: String,
    refill: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone, so nobody can be waiting on the queue.
        self.refill.abort();
    }
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("key", &self.inner.key)
            .field("rate", &self.inner.rate)
            .finish_non_exhaustive()
    }
}

impl SharedBudget {
    /// Starts the budget of `account_set` (for instance the 星辰 account id) in `store`, the
    /// topology's budget bucket, at `requests_per_minute` for all replicas together. Needs a
    /// Tokio runtime: it spawns the task that talks to KV.
    pub fn start(
        store: Store,
        account_set: &str,
        requests_per_minute: u32,
        config: &BudgetConfig,
    ) -> Result<SharedBudget, ConfigError> {
        let rate = Rate::new(requests_per_minute, config)?;
        let key = key::encode(account_set);
        let waiters = Arc::new(Waiters::default());
        let refill = Refill {
            store,
            key: key.clone(),
            rate,
            waiters: Arc::clone(&waiters),
            known: None,
        };
        info!(
            bucket = %refill.store.name,
            key,
            requests_per_minute,
            effective_per_minute = rate.per_minute(),
            burst = rate.burst,
            "Shared request budget started"
        );
        let refill = tokio::spawn(refill.run());
        Ok(SharedBudget {
            inner: Arc::new(Inner {
                waiters,
                rate,
                key,
                refill,
            }),
        })
    }

    /// Waits until one more request may be sent. Cancellation-safe: dropping the future gives
    /// up the caller's place, and a token granted at that moment goes unused rather than late.
    pub async fn acquire(&self) {
        loop {
            let (sender, receiver) = oneshot::channel();
            self.inner.waiters.push(sender);
            // An error means the sender was dropped unsent (the task stopped mid-hand-out);
            // that is no permission, so queue again.
            if receiver.await.is_ok() {
                return;
            }
        }
    }

    /// [`SharedBudget::acquire`] as a boxed future that owns its handle, the shape
    /// `xingchen::RateLimitFn` asks for.
    pub fn acquire_owned(&self) -> BoxFuture<'static, ()> {
        let budget = self.clone();
        Box::pin(async move { budget.acquire().await })
    }

    /// The bucket's shape.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// This process's counters.
    pub fn stats(&self) -> BudgetStats {
        self.inner.waiters.stats()
    }
}

/// The callers of one process waiting for a token, in arrival order.
#[derive(Default)]
struct Waiters {
    queue: Mutex<VecDeque<oneshot::Sender<()>>>,
    arrived: Notify,
    granted: AtomicU64,
    conflicts: AtomicU64,
    errors: AtomicU64,
    discarded: AtomicU64,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, VecDeque<oneshot::Sender<()>>> {
        // No code holding the lock can panic, so a poisoned lock still holds a sound queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, sender: oneshot::Sender<()>) {
        let mut queue = self.lock();
        // Callers that gave up leave closed senders; dropping them here keeps the queue at the
        // number of live callers even when no token comes for a long time.
        queue.retain(|waiting| !waiting.is_closed());
        queue.push_back(sender);
        drop(queue);
        self.arrived.notify_one();
    }

    /// Live callers waiting.
    fn demand(&self) -> usize {
        let mut queue = self.lock();
        queue.retain(|waiting| !waiting.is_closed());
        queue.len()
    }

    /// Gives `tokens` to the longest-waiting live callers; returns how many found nobody.
    fn hand_out(&self, tokens: u32) -> u32 {
        let mut left = tokens;
        let mut queue = self.lock();
        while left > 0 {
            let Some(waiting) = queue.pop_front() else {
                break;
            };
            if waiting.send(()).is_ok() {
                left -= 1;
            }
        }
        drop(queue);
        let given = u64::from(tokens - left);
        self.granted.fetch_add(given, Ordering::Relaxed);
        self.discarded.fetch_add(u64::from(left), Ordering::Relaxed);
        left
    }

    fn stats(&self) -> BudgetStats {
        BudgetStats {
            granted: self.granted.load(Ordering::Relaxed),
            waiting: self.demand(),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }
}

/// What one attempt on the bucket gave.
enum Attempt {
    /// Tokens taken, to hand out now.
    Taken(u32),
    /// No token is free yet.
    Wait(Duration),
    /// Another process wrote first.
    Conflict,
}

/// The task that takes tokens from KV for this process's waiting callers.
struct Refill {
    store: Store,
    key: String,
    rate: Rate,
    waiters: Arc<Waiters>,
    known: Option<Snapshot>,
}

impl Refill {
    async fn run(mut self) {
        let mut outage_delay = OUTAGE_MIN_DELAY;
        loop {
            let demand = self.waiters.demand();
            if demand == 0 {
                self.waiters.arrived.notified().await;
                continue;
            }
            let want = u32::try_from(demand).unwrap_or(u32::MAX);
            match self.attempt(want).await {
                Ok(Attempt::Taken(tokens)) => {
                    outage_delay = self.recovered(outage_delay);
                    self.hand_out(tokens);
                }
                Ok(Attempt::Wait(delay)) => {
                    outage_delay = self.recovered(outage_delay);
                    tokio::time::sleep(delay + self.jitter()).await;
                }
                // The next attempt reads the winner's state and waits for the token after it.
                Ok(Attempt::Conflict) => {
                    self.waiters.conflicts.fetch_add(1, Ordering::Relaxed);
                    debug!(key = %self.key, "Budget write lost a race; reading again");
                }
                Err(error) => {
                    self.failed(&error, outage_delay);
                    tokio::time::sleep(outage_delay).await;
                    outage_delay = (outage_delay * 2).min(OUTAGE_MAX_DELAY);
                }
            }
        }
    }

    /// One read (unless the last write is known) and at most one compare-and-set.
    async fn attempt(&mut self, want: u32) -> Result<Attempt, StoreError> {
        let snapshot = match self.known {
            Some(snapshot) => snapshot,
            None => self.read().await?,
        };
        let (tokens, tat_us) = match self.rate.step(snapshot.tat_us, now_us(), want) {
            Step::Take { tokens, tat_us } => (tokens, tat_us),
            // A known state can only be older than the real one, whose `tat` is later still,
            // so waiting on it never waits too little; the write after the wait checks.
            Step::Wait { delay_us } => {
                return Ok(Attempt::Wait(Duration::from_micros(delay_us.max(0) as u64)));
            }
        };
        let state = BucketState { tat_us };
        match write_json(&self.store, &self.key, &state, snapshot.revision).await {
            Ok(revision) => {
                self.known = Some(Snapshot {
                    tat_us,
                    revision: Some(revision),
                });
                Ok(Attempt::Taken(tokens))
            }
            Err(StoreError::Conflict { .. }) => {
                self.known = None;
                Ok(Attempt::Conflict)
            }
            Err(error) => {
                // The write may have been applied with its answer lost; reading again is the
                // only way to know, and a lost answer only wastes the tokens it took.
                self.known = None;
                Err(error)
            }
        }
    }

    async fn read(&mut self) -> Result<Snapshot, StoreError> {
        let stored: Option<Versioned<BucketState>> = read_json(&self.store, &self.key).await?;
        // A missing key is a full bucket: a `tat` long past.
        let snapshot = match stored {
            Some(stored) => Snapshot {
                tat_us: stored.value.tat_us,
                revision: Some(stored.revision),
            },
            None => Snapshot {
                tat_us: 0,
                revision: None,
            },
        };
        self.known = Some(snapshot);
        Ok(snapshot)
    }

    fn hand_out(&self, tokens: u32) {
        let unused = self.waiters.hand_out(tokens);
        if unused > 0 {
            debug!(key = %self.key, unused, "Budget tokens found no caller");
        }
    }

    fn failed(&self, error: &StoreError, delay: Duration) {
        self.waiters.errors.fetch_add(1, Ordering::Relaxed);
        let delay_ms = delay.as_millis() as u64;
        if error.is_transient() {
            warn!(
                key = %self.key, error = %error, delay_ms,
                "Budget store unavailable; callers wait"
            );
        } else {
            error!(
                key = %self.key, error = %error, delay_ms,
                "Budget state unreadable; callers wait"
            );
        }
    }

    fn recovered(&self, outage_delay: Duration) -> Duration {
        if outage_delay > OUTAGE_MIN_DELAY {
            info!(key = %self.key, "Budget store answers again");
        }
        OUTAGE_MIN_DELAY
    }

    /// A random delay of up to a quarter interval (at most [`MAX_JITTER`]), so that replicas
    /// waking for the same token do not always reach KV in the same order.
    fn jitter(&self) -> Duration {
        let max = (self.rate.interval() / 4).min(MAX_JITTER);
        Duration::from_micros(rand::random_range(0..=max.as_micros() as u64))
    }
}

fn now_us() -> i64 {
    // A clock before 1970 would be a broken host; it reads as the epoch and only delays grants.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(requests_per_minute: u32, burst: u32, slack_ms: u64) -> Rate {
        let config = BudgetConfig {
            burst,
            slack: Duration::from_millis(slack_ms),
        };
        Rate::new(requests_per_minute, &config).expect("valid rate")
    }

    #[test]
    fn defaults_agree_everywhere() {
        use clap::{CommandFactory, FromArgMatches, Parser};
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            budget: BudgetConfig,
        }
        let command = Flags::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(["worker"]).expect("parse");
        let flags = Flags::from_arg_matches(&matches).expect("flags fit");
        assert_eq!(flags.budget, BudgetConfig::default());
        let parsed: BudgetConfig = toml::from_str("").expect("empty table");
        assert_eq!(parsed, BudgetConfig::default());
        assert!(toml::from_str::<BudgetConfig>("brust = 3").is_err());
        BudgetConfig::default()
            .validate(500)
            .expect("defaults are valid");
    }

    #[test]
    fn the_rate_leaves_room_for_burst_and_slack() {
        // 1200/min, burst 3, slack 500 ms: 1198 intervals span 60.5 s.
        let rate = rate(1200, 3, 500);
        assert_eq!(rate.interval(), Duration::from_micros(50_501));
        assert!((1188.0..1189.0).contains(&rate.per_minute()), "{rate:?}");
        let exact = self::rate(60, 1, 0);
        assert_eq!(exact.interval(), Duration::from_secs(1));
    }

    #[test]
    fn impossible_shapes_are_refused() {
        let config = BudgetConfig::default();
        assert_eq!(
            Rate::new(0, &config).expect_err("zero").field,
            "requests_per_minute"
        );
        assert_eq!(Rate::new(2, &config).expect_err("burst > R").field, "burst");
        let no_burst = BudgetConfig {
            burst: 0,
            ..config.clone()
        };
        assert!(Rate::new(100, &no_burst).is_err());
        let long = BudgetConfig {
            slack: Duration::from_secs(61),
            ..config
        };
        assert_eq!(Rate::new(100, &long).expect_err("slack").field, "slack");
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
        let rate = rate(60, 3, 0);
        let interval = rate.interval_us;
        let now = 1_000_000_000_000;
        let Step::Take { tokens, tat_us } = rate.step(0, now, 10) else {
            panic!("a full bucket gives tokens");
        };
        assert_eq!(tokens, 3);
        assert_eq!(rate.step(tat_us, now, 1), Step::Wait { delay_us: interval });
        let later = now + interval;
        assert_eq!(
            rate.step(tat_us, later, 5),
            Step::Take {
                tokens: 1,
                tat_us: tat_us + interval
            }
        );
    }

    #[test]
    fn a_clock_behind_the_stored_state_waits_instead_of_taking() {
        let rate = rate(60, 2, 0);
        let interval = rate.interval_us;
        let tat = 10 * interval;
        // This host's clock reads five intervals before the writer's.
        let Step::Wait { delay_us } = rate.step(tat, tat - 5 * interval, 1) else {
            panic!("nothing is free");
        };
        assert_eq!(delay_us, 4 * interval);
    }

    proptest! {
        /// Whatever the demand and however callers are spaced, R + 1 grants never fall within
        /// 60 s + slack: the gateway's window never sees more than R.
        #[test]
        fn no_window_of_a_minute_holds_more_than_r_grants(
            requests_per_minute in 1u32..200,
            burst_share in 0.0f64..1.0,
            slack_ms in 0u64..2_000,
            gaps_ms in proptest::collection::vec(0u64..3_000, 1..400),
            wants in proptest::collection::vec(1u32..8, 1..400),
        ) {
            let burst = 1 + (burst_share * f64::from(requests_per_minute - 1)) as u32;
            let rate = rate(requests_per_minute, burst, slack_ms);
            let mut tat = 0;
            let mut now = 1_000_000_000_000;
            let mut grants = Vec::new();
            for (gap_ms, want) in gaps_ms.iter().zip(wants.iter().cycle()) {
                now += *gap_ms as i64 * 1000;
                if let Step::Take { tokens, tat_us } = rate.step(tat, now, *want) {
                    tat = tat_us;
                    grants.extend(std::iter::repeat_n(now, tokens as usize));
                }
            }
            let span = (RATE_WINDOW.as_micros() + u128::from(slack_ms) * 1000) as i64;
            let r = requests_per_minute as usize;
            for (first, last) in grants.iter().zip(grants.iter().skip(r)) {
                prop_assert!(last - first >= span, "{} grants within {} us", r + 1, last - first);
            }
        }
    }
}
