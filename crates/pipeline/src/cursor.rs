//! The extractor's cursor: the Beijing-time instant up to which every order has been published.
//!
//! It lives in the `bridge_cursor` bucket under one key per cursor name (one extractor query,
//! usually `stockout`), as JSON `{"at": "<RFC 3339, +08:00>", "updated_at": "<RFC 3339, UTC>"}`.
//! It only moves forward: [`CursorStore::advance`] writes with the revision it read, and refuses
//! when the stored instant is already at or past the new one, so two extractors racing can never
//! move it back. When to advance (after every publish of a window is acknowledged) is the
//! extractor's decision; choosing windows is left to it too.

use async_nats::jetstream::kv::Store;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::key;
use crate::kv::{self, StoreError, Versioned};
use crate::message::beijing;

/// How many times a compare-and-set that lost a race is tried again before giving up.
const CAS_ATTEMPTS: usize = 5;

#[derive(Serialize, Deserialize)]
struct CursorValue {
    at: DateTime<FixedOffset>,
    updated_at: DateTime<Utc>,
}

/// The cursor as read: where it stands and the revision to name when moving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorPosition {
    /// The instant up to which every order has been published, in Beijing time.
    pub at: DateTime<FixedOffset>,
    /// The KV revision read.
    pub revision: u64,
}

/// What an attempt to advance the cursor did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advance {
    /// The cursor now stands at the requested instant.
    Moved {
        /// The new KV revision.
        revision: u64,
    },
    /// The cursor already stood at or past the requested instant and was left there.
    Refused {
        /// Where it stands.
        current: DateTime<FixedOffset>,
    },
}

/// One named cursor in the cursor bucket.
#[derive(Clone, Debug)]
pub struct CursorStore {
    store: Store,
    key: String,
}

impl CursorStore {
    /// The cursor called `name` in `store` (the topology's cursor bucket).
    pub fn new(store: Store, name: &str) -> CursorStore {
        CursorStore {
            store,
            key: key::encode(name),
        }
    }

    /// Where the cursor stands; `None` before the first advance.
    pub async fn read(&self) -> Result<Option<CursorPosition>, StoreError> {
        let stored: Option<Versioned<CursorValue>> = kv::read_json(&self.store, &self.key).await?;
        Ok(stored.map(|Versioned { value, revision }| CursorPosition {
            at: value.at.with_timezone(&beijing()),
            revision,
        }))
    }

    /// Moves the cursor forward to `to`, or refuses if it already stands there or later.
    ///
    /// A write that loses a race against another writer is decided again on a fresh read, so
    /// the answer always reflects the cursor as stored.
    pub async fn advance(&self, to: DateTime<FixedOffset>) -> Result<Advance, StoreError> {
        let mut last_conflict = None;
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read().await?;
            if let Some(current) = current.as_ref().filter(|current| current.at >= to) {
                return Ok(Advance::Refused {
                    current: current.at,
                });
            }
            let expected = current.map(|current| current.revision);
            match self.compare_and_set(expected, to).await {
                Ok(revision) => return Ok(Advance::Moved { revision }),
                Err(conflict @ StoreError::Conflict { .. }) => last_conflict = Some(conflict),
                Err(other) => return Err(other),
            }
        }
        // The loop ran at least once and every pass that did not return stored a conflict.
        Err(last_conflict.expect("a conflict was recorded"))
    }

    /// Writes `to` if the cursor is still at revision `expected` (`None`: if it was never set).
    async fn compare_and_set(
        &self,
        expected: Option<u64>,
        to: DateTime<FixedOffset>,
    ) -> Result<u64, StoreError> {
        let value = CursorValue {
            at: to.with_timezone(&beijing()),
            updated_at: Utc::now(),
        };
        kv::write_json(&self.store, &self.key, &value, expected).await
    }
}
