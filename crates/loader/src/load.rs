//! Loading one bill: read the ledger, decide, post to 星辰, record, so that every order ends as
//! exactly one bill holding its latest content.
//!
//! [`Loader::load`] takes the order's in-process lock, then loops: read the order's ledger entry,
//! [`decide`], act, and record the result with a compare-and-set on the revision it read. A lost
//! race (another loader recorded first) sends it round the loop to decide again on what that
//! loader wrote. The actions:
//!
//! * unchanged content or an older version than the ledger's: nothing is posted;
//! * no entry: the bill is created (posted without `id`) and the entry created;
//! * changed content: the bill is modified (posted with the ledger's `id`) and the entry updated.
//!
//! A create is never posted twice blindly. When its save may have stored the bill although no
//! answer came back (a timeout after sending), when 星辰 says the number is taken, and before
//! anything else when a message comes back with no ledger entry (the last delivery may have
//! crashed between its save and its record), the bill is looked up by number. A bill found is
//! recorded in the ledger first; if it already holds the incoming content that is the end,
//! otherwise the loop decides again and modifies it by its id.
//!
//! Turning messages into [`Incoming`] bills and results into acks, naks and dead letters is left
//! to [`crate::handler`]; comparing contents to [`crate::content`].

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};
use pipeline::StoreError;
use pipeline::ledger::{Decision, Ledger, LedgerEntry, decide};
use telemetry::health::Readiness;
use telemetry::metrics::LoadOutcome;
use tracing::{Instrument, debug, warn};
use xingchen::{BILL_LIST_PATH, Bill, FoundBill, SAVE_PATH, SavedBill};

use crate::content::same_content;
use crate::locks::KeyedLocks;
use crate::stats::{self, LoadStats};

/// Decisions per message before the loader gives up on a ledger entry that keeps changing.
const MAX_DECISIONS: usize = 5;

/// The content hash recorded for a bill found in 星辰 whose content is not the incoming one; it is
/// never an MD5, so the next decision modifies that bill.
pub const FOREIGN_CONTENT: &str = "found-by-number";

/// The readiness check that says the 星辰 credentials work.
pub const XINGCHEN_CHECK: &str = "xingchen";

/// A bill to load, as read from its message.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    /// WDT's id of the order; the ledger's key.
    pub stockout_id: String,
    /// WDT's number of the order.
    pub stockout_no: String,
    /// When WDT last changed the order.
    pub modified: DateTime<FixedOffset>,
    /// MD5 of the payload.
    pub content_hash: String,
    /// When the transformer published it, if it said.
    pub published_at: Option<DateTime<Utc>>,
    /// The bill, without an id: the ledger decides between create and modify.
    pub bill: Bill,
}

/// How a bill was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// What happened to it.
    pub outcome: LoadOutcome,
    /// The bill's id in 星辰, when this load recorded one.
    pub bill_id: Option<String>,
    /// When the ledger recorded it; `None` when nothing was recorded.
    pub recorded_at: Option<DateTime<Utc>>,
    /// Whether the bill was found by number rather than acknowledged by a save.
    pub recovered: bool,
}

impl Loaded {
    fn without_post(outcome: LoadOutcome) -> Loaded {
        Loaded {
            outcome,
            bill_id: None,
            recorded_at: None,
            recovered: false,
        }
    }
}

/// Why a bill could not be loaded this time.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The ledger could not be read or written.
    #[error("ledger: {0}")]
    Ledger(#[from] StoreError),
    /// 星辰 did not save the bill.
    #[error("save bill {billno}: {source}")]
    Save {
        /// The bill number.
        billno: String,
        /// The client's error, with Kingdee's message when it sent one.
        source: xingchen::Error,
    },
    /// The look-up by number failed.
    #[error("find bill {billno} by number: {source}")]
    Find {
        /// The bill number.
        billno: String,
        /// The client's error.
        source: xingchen::Error,
    },
    /// 星辰 says the number is taken, yet no bill with it was found.
    #[error("bill {billno}: number taken in 星辰 but no bill found by it: {message}")]
    DuplicateNotFound {
        /// The bill number.
        billno: String,
        /// Kingdee's message.
        message: String,
    },
    /// The order's ledger entry kept changing under this loader.
    #[error("order {stockout_id}: ledger entry changed {tries} times while loading")]
    Contended {
        /// The order.
        stockout_id: String,
        /// Decisions made.
        tries: usize,
    },
}

impl LoadError {
    /// Whether a later delivery may succeed.
    ///
    /// Only a bill 星辰 rejected on its merits, a bill that cannot be written and an unreadable
    /// ledger entry are permanent. Refused credentials or signatures are an operator's to fix and
    /// are retried, so bills are not dead-lettered by the thousand while the secret is wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            LoadError::Ledger(error) => error.is_transient(),
            LoadError::Save { source, .. } => !matches!(
                source,
                xingchen::Error::Rejected { .. } | xingchen::Error::Config(_)
            ),
            LoadError::Find { .. }
            | LoadError::DuplicateNotFound { .. }
            | LoadError::Contended { .. } => true,
        }
    }
}

/// What an action left the loop to do.
enum Step {
    /// The bill is loaded.
    Done(Loaded),
    /// The ledger changed: read it and decide again.
    Again,
}

/// Posts bills and keeps the ledger; shared by every message task of one loader.
#[derive(Debug)]
pub struct Loader {
    client: xingchen::Client,
    ledger: Ledger,
    locks: KeyedLocks,
    stats: Arc<LoadStats>,
    readiness: Readiness,
}

impl Loader {
    /// A loader posting with `client` and recording in `ledger`; it counts into `stats` and
    /// keeps the [`XINGCHEN_CHECK`] of `readiness` up to date.
    pub fn new(
        client: xingchen::Client,
        ledger: Ledger,
        stats: Arc<LoadStats>,
        readiness: Readiness,
    ) -> Loader {
        Loader {
            client,
            ledger,
            locks: KeyedLocks::default(),
            stats,
            readiness,
        }
    }

    /// Loads `incoming`, delivered for the `delivered`-th time.
    pub async fn load(&self, incoming: &Incoming, delivered: i64) -> Result<Loaded, LoadError> {
        let _turn = self.locks.lock(&incoming.stockout_id).await;
        // A redelivered message may follow a crash between save and record: look before posting.
        let mut look_first = delivered > 1;
        for _ in 0..MAX_DECISIONS {
            let current = self.ledger.get(&incoming.stockout_id).await?;
            if current.is_none() && look_first {
                look_first = false;
                if let Some(found) = self.find(&incoming.bill.billno).await? {
                    match self.adopt(incoming, found).await? {
                        Step::Done(loaded) => return Ok(loaded),
                        Step::Again => continue,
                    }
                }
            }

            let existing = current.as_ref().map(|entry| &entry.value);
            let step = match decide(existing, &incoming.content_hash, incoming.modified) {
                Decision::Unchanged => return Ok(Loaded::without_post(LoadOutcome::Unchanged)),
                Decision::Stale => return Ok(Loaded::without_post(LoadOutcome::Stale)),
                Decision::Create => self.create(incoming).await?,
                Decision::Modify { bill_id } => {
                    let revision = current.map(|entry| entry.revision);
                    self.modify(incoming, bill_id, revision).await?
                }
            };
            if let Step::Done(loaded) = step {
                return Ok(loaded);
            }
        }
        Err(LoadError::Contended {
            stockout_id: incoming.stockout_id.clone(),
            tries: MAX_DECISIONS,
        })
    }

    async fn create(&self, incoming: &Incoming) -> Result<Step, LoadError> {
        let billno = &incoming.bill.billno;
        let error = match self.save(&incoming.bill).await {
            Ok(saved) => {
                return self
                    .record(incoming, saved.id, None, LoadOutcome::Created)
                    .await;
            }
            Err(error) => error,
        };
        if !(error.is_ambiguous() || error.is_duplicate_bill()) {
            return Err(LoadError::Save {
                billno: billno.clone(),
                source: error,
            });
        }

        warn!(billno = %billno, error = %error, "Bill may exist already; looking it up by number");
        match self.find(billno).await? {
            Some(found) => self.adopt(incoming, found).await,
            None if error.is_duplicate_bill() => Err(LoadError::DuplicateNotFound {
                billno: billno.clone(),
                message: error.to_string(),
            }),
            // Not stored after all: a later delivery may create it.
            None => Err(LoadError::Save {
                billno: billno.clone(),
                source: error,
            }),
        }
    }

    async fn modify(
        &self,
        incoming: &Incoming,
        bill_id: String,
        revision: Option<u64>,
    ) -> Result<Step, LoadError> {
        let mut bill = incoming.bill.clone();
        bill.id = Some(bill_id.clone());
        let saved = self.save(&bill).await.map_err(|source| LoadError::Save {
            billno: bill.billno.clone(),
            source,
        })?;
        if saved.id != bill_id {
            warn!(
                billno = %bill.billno,
                bill_id,
                saved_id = %saved.id,
                "Modified bill came back with another id"
            );
        }
        self.record(incoming, saved.id, revision, LoadOutcome::Modified)
            .await
    }

    /// Records a bill found by number; done if it holds the incoming content already.
    async fn adopt(&self, incoming: &Incoming, found: FoundBill) -> Result<Step, LoadError> {
        self.stats.recovered();
        let same = same_content(&incoming.bill, &found.bill);
        let content_hash = if same {
            incoming.content_hash.clone()
        } else {
            FOREIGN_CONTENT.to_owned()
        };
        let entry = LedgerEntry {
            bill_id: found.id.clone(),
            billno: incoming.bill.billno.clone(),
            content_hash,
            modified: incoming.modified,
            loaded_at: Utc::now(),
        };
        warn!(
            billno = %entry.billno,
            bill_id = %entry.bill_id,
            same_content = same,
            "Recording a bill found by number"
        );
        match self.ledger.put(&incoming.stockout_id, &entry, None).await {
            Ok(_) if same => Ok(Step::Done(Loaded {
                outcome: LoadOutcome::Created,
                bill_id: Some(entry.bill_id),
                recorded_at: Some(entry.loaded_at),
                recovered: true,
            })),
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(Step::Again),
            Err(error) => Err(error.into()),
        }
    }

    async fn record(
        &self,
        incoming: &Incoming,
        bill_id: String,
        expected: Option<u64>,
        outcome: LoadOutcome,
    ) -> Result<Step, LoadError> {
        let entry = LedgerEntry {
            bill_id,
            billno: incoming.bill.billno.clone(),
            content_hash: incoming.content_hash.clone(),
            modified: incoming.modified,
            loaded_at: Utc::now(),
        };
        match self
            .ledger
            .put(&incoming.stockout_id, &entry, expected)
            .await
        {
            Ok(_) => Ok(Step::Done(Loaded {
                outcome,
                bill_id: Some(entry.bill_id),
                recorded_at: Some(entry.loaded_at),
                recovered: false,
            })),
            Err(StoreError::Conflict { .. }) => {
                warn!(billno = %entry.billno, "Ledger entry changed meanwhile; deciding again");
                Ok(Step::Again)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Saves without the client's own look-up after an ambiguous failure: [`Loader::create`]
    /// looks up itself, so it can compare what it finds.
    async fn save(&self, bill: &Bill) -> xingchen::Result<SavedBill> {
        let span = telemetry::client_span!(
            "save bill",
            endpoint = SAVE_PATH,
            billno = bill.billno.as_str(),
            modify = bill.id.is_some()
        );
        let started = Instant::now();
        let result = self.client.save(bill).instrument(span).await;
        stats::api_call(SAVE_PATH, &result, started.elapsed());
        self.note_credentials(&result);
        debug!(
            billno = %bill.billno,
            ok = result.is_ok(),
            elapsed_ms = elapsed_ms(started),
            "Save answered"
        );
        result
    }

    async fn find(&self, billno: &str) -> Result<Option<FoundBill>, LoadError> {
        let span = telemetry::client_span!("find bill", endpoint = BILL_LIST_PATH, billno = billno);
        let started = Instant::now();
        let result = self
            .client
            .find_bill_by_number(billno)
            .instrument(span)
            .await;
        stats::api_call(BILL_LIST_PATH, &result, started.elapsed());
        self.note_credentials(&result);
        result.map_err(|source| LoadError::Find {
            billno: billno.to_owned(),
            source,
        })
    }

    fn note_credentials<T>(&self, result: &xingchen::Result<T>) {
        match result {
            Ok(_) => self.readiness.set(XINGCHEN_CHECK, true),
            Err(xingchen::Error::Auth { .. }) => self.readiness.set(XINGCHEN_CHECK, false),
            Err(_) => {}
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save_error(source: xingchen::Error) -> LoadError {
        LoadError::Save {
            billno: "CK1".into(),
            source,
        }
    }

    #[test]
    fn only_a_rejected_bill_or_a_corrupt_ledger_is_permanent() {
        let rejected = save_error(xingchen::Error::Rejected {
            endpoint: SAVE_PATH.into(),
            code: String::new(),
            message: "第1行计量单位unit_id[9]不是商品[G1]的计量单位".into(),
        });
        assert!(!rejected.is_transient());
        assert!(
            rejected.to_string().contains("不是商品[G1]的计量单位"),
            "{rejected}"
        );

        let limited = save_error(xingchen::Error::RateLimited {
            endpoint: SAVE_PATH.into(),
        });
        assert!(limited.is_transient());
        let refused = save_error(xingchen::Error::Auth {
            endpoint: SAVE_PATH.into(),
            code: "1030002001".into(),
            message: "app_key不存在".into(),
        });
        assert!(
            refused.is_transient(),
            "credentials are an operator's to fix"
        );
        let contended = LoadError::Contended {
            stockout_id: "1".into(),
            tries: MAX_DECISIONS,
        };
        assert!(contended.is_transient());
    }

    #[test]
    fn the_foreign_content_marker_is_never_a_payload_hash() {
        let hash = pipeline::message::content_hash(FOREIGN_CONTENT.as_bytes());
        assert_ne!(hash, FOREIGN_CONTENT);
        assert!(!FOREIGN_CONTENT.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
