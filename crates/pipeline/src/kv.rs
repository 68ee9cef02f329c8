//! What the three KV-backed stores (cursor, ledger, master-data cache) share: their error, and
//! reading and writing JSON values with a revision.
//!
//! Each store owns its bucket's keys and values; this module only moves bytes and maps
//! async-nats errors to [`StoreError`], keeping the one distinction callers act on: a write that
//! lost a race (`Conflict`) is retried after reading again, anything else by the caller's policy.

use async_nats::jetstream::kv::{self, Store};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A failed read or write of a KV-backed store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the key since it was read (or created it first).
    #[error("{bucket}/{key}: changed by another writer")]
    Conflict {
        /// The bucket.
        bucket: String,
        /// The key as stored (encoded).
        key: String,
    },
    /// The stored value is not what this version of the bridge writes.
    #[error("{bucket}/{key}: unreadable value: {source}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The key as stored (encoded).
        key: String,
        /// Why it could not be read.
        source: serde_json::Error,
    },
    /// NATS did not answer or refused the operation.
    #[error("{bucket}/{key}: {operation} failed: {source}")]
    Nats {
        /// The bucket.
        bucket: String,
        /// The key as stored (encoded).
        key: String,
        /// `read`, `create` or `update`.
        operation: &'static str,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A conflict or an unanswered request may succeed when tried again; a corrupt value never.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::Corrupt { .. })
    }
}

/// A value read together with the revision a compare-and-set must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The KV revision it was read at.
    pub revision: u64,
}

pub(crate) async fn read_json<T: DeserializeOwned>(
    store: &Store,
    key: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    let bucket = store.name.as_str();
    let entry = store
        .entry(key)
        .await
        .map_err(|source| nats(bucket, key, "read", source))?;
    // A deleted or purged key reads as a marker entry; to the stores it is simply absent.
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let value = serde_json::from_slice(&entry.value).map_err(|source| StoreError::Corrupt {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        source,
    })?;
    Ok(Some(Versioned {
        value,
        revision: entry.revision,
    }))
}

/// Writes `value` if the key is still at `expected` (`None`: if it does not exist yet) and
/// returns the new revision.
pub(crate) async fn write_json<T: Serialize>(
    store: &Store,
    key: &str,
    value: &T,
    expected: Option<u64>,
) -> Result<u64, StoreError> {
    let bucket = store.name.as_str();
    // Serialising plain structs of strings and times cannot fail.
    let bytes = Bytes::from(serde_json::to_vec(value).expect("store values serialise"));
    let conflict = || StoreError::Conflict {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    };
    match expected {
        None => store
            .create(key, bytes)
            .await
            .map_err(|err| match err.kind() {
                kv::CreateErrorKind::AlreadyExists => conflict(),
                _ => nats(bucket, key, "create", err),
            }),
        Some(revision) => {
            store
                .update(key, bytes, revision)
                .await
                .map_err(|err| match err.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => conflict(),
                    _ => nats(bucket, key, "update", err),
                })
        }
    }
}

/// Writes `value` whatever the key holds.
pub(crate) async fn put_json<T: Serialize>(
    store: &Store,
    key: &str,
    value: &T,
) -> Result<u64, StoreError> {
    let bucket = store.name.as_str();
    // Same invariant as in `write_json`.
    let bytes = Bytes::from(serde_json::to_vec(value).expect("store values serialise"));
    store
        .put(key, bytes)
        .await
        .map_err(|source| nats(bucket, key, "put", source))
}

fn nats(
    bucket: &str,
    key: &str,
    operation: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Nats {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        operation,
        source: Box::new(source),
    }
}
