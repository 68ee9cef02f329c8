//! The ledger of bills posted to 星辰, and the decision it drives for each incoming bill.
//!
//! One entry per order in the `bridge_ledger` bucket, keyed by the encoded `stockout_id`, holding
//! the 星辰 bill id and number, the hash of the payload that was posted, the order's `modified`
//! and when it was loaded. Writes name the revision they read ([`Ledger::put`] with
//! `expected`), so two loaders handling two versions of one order cannot overwrite each other
//! unseen: the loser gets [`StoreError::Conflict`], reads again and decides again.
//!
//! [`decide`] is the pure rule; posting, looking a bill up by number after an ambiguous failure,
//! and recording what was found are left to the loader.

use async_nats::jetstream::kv::Store;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::key;
use crate::kv::{self, StoreError, Versioned};

/// What the ledger knows about the bill of one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 星辰's id of the bill, which a modification must name.
    pub bill_id: String,
    /// The bill's number (the order's `stockout_no`).
    pub billno: String,
    /// MD5 of the bill payload that was posted.
    pub content_hash: String,
    /// The order's `modified` at the time of that post.
    pub modified: DateTime<FixedOffset>,
    /// When the post was recorded.
    pub loaded_at: DateTime<Utc>,
}

/// What the loader does with an incoming bill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No bill yet: post without an id.
    Create,
    /// A different version was posted: post again naming this bill id.
    Modify {
        /// The bill to replace.
        bill_id: String,
    },
    /// This very content was posted already: acknowledge without posting.
    Unchanged,
    /// A newer version of the order was posted already: acknowledge without posting.
    Stale,
}

/// Decides what to do with a bill of hash `incoming_hash` for an order last changed at
/// `incoming_modified`, given what the ledger holds for that order.
pub fn decide(
    existing: Option<&LedgerEntry>,
    incoming_hash: &str,
    incoming_modified: DateTime<FixedOffset>,
) -> Decision {
    let Some(existing) = existing else {
        return Decision::Create;
    };
    if incoming_modified < existing.modified {
        Decision::Stale
    } else if incoming_hash == existing.content_hash {
        Decision::Unchanged
    } else {
        // Same or later `modified` with other content: the order changed, or the mapping did.
        Decision::Modify {
            bill_id: existing.bill_id.clone(),
        }
    }
}

/// The ledger bucket.
#[derive(Clone, Debug)]
pub struct Ledger {
    store: Store,
}

impl Ledger {
    /// The ledger in `store` (the topology's ledger bucket).
    pub fn new(store: Store) -> Ledger {
        Ledger { store }
    }

    /// The entry of an order with the revision a later [`Ledger::put`] must name.
    pub async fn get(
        &self,
        stockout_id: &str,
    ) -> Result<Option<Versioned<LedgerEntry>>, StoreError> {
        kv::read_json(&self.store, &key::encode(stockout_id)).await
    }

    /// Records `entry` if the order's entry is still at revision `expected` (`None`: if it has
    /// none yet); returns the new revision, or [`StoreError::Conflict`] if another writer came
    /// first.
    pub async fn put(
        &self,
        stockout_id: &str,
        entry: &LedgerEntry,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        kv::write_json(&self.store, &key::encode(stockout_id), entry, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse_modified;

    fn at(text: &str) -> DateTime<FixedOffset> {
        parse_modified(text).expect("test time")
    }

    fn posted() -> LedgerEntry {
        LedgerEntry {
            bill_id: "1790001".to_owned(),
            billno: "CK001".to_owned(),
            content_hash: "aaa".to_owned(),
            modified: at("2024-05-01 12:00:00"),
            loaded_at: Utc::now(),
        }
    }

    #[test]
    fn an_order_never_posted_is_created() {
        assert_eq!(
            decide(None, "aaa", at("2024-05-01 12:00:00")),
            Decision::Create
        );
    }

    #[test]
    fn the_same_content_again_is_not_posted() {
        let entry = posted();
        assert_eq!(
            decide(Some(&entry), "aaa", entry.modified),
            Decision::Unchanged
        );
        assert_eq!(
            decide(Some(&entry), "aaa", at("2024-05-02 08:00:00")),
            Decision::Unchanged
        );
    }

    #[test]
    fn changed_content_modifies_the_posted_bill() {
        let entry = posted();
        let decision = decide(Some(&entry), "bbb", at("2024-05-01 13:00:00"));
        assert_eq!(
            decision,
            Decision::Modify {
                bill_id: "1790001".to_owned()
            }
        );
    }

    #[test]
    fn changed_content_at_the_same_modified_time_still_modifies() {
        // A new mapping scheme changes the bill without WDT changing the order.
        let entry = posted();
        let decision = decide(Some(&entry), "bbb", entry.modified);
        assert_eq!(
            decision,
            Decision::Modify {
                bill_id: "1790001".to_owned()
            }
        );
    }

    #[test]
    fn an_older_version_than_the_ledger_holds_is_stale() {
        let entry = posted();
        assert_eq!(
            decide(Some(&entry), "bbb", at("2024-05-01 11:59:59")),
            Decision::Stale
        );
        assert_eq!(
            decide(Some(&entry), "aaa", at("2024-04-30 12:00:00")),
            Decision::Stale
        );
    }

    #[test]
    fn times_compare_as_instants_whatever_their_offset() {
        let entry = posted();
        // 04:00 UTC is 12:00 in Beijing: the same instant, so not stale.
        let same_instant = DateTime::parse_from_rfc3339("2024-05-01T04:00:00Z").expect("time");
        assert_eq!(
            decide(Some(&entry), "aaa", same_instant),
            Decision::Unchanged
        );
    }
}
