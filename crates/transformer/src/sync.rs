//! Refreshing the whole master-data cache from 星辰's lists: what `bridge masterdata sync` runs.
//!
//! [`sync_masterdata`] reads every page of customers, materials (with their base units) and
//! stores first; if any list fails, nothing in the cache changes. It then writes every record
//! under the key the transformer reads ([`crate::resolve::cache_lookup`]), overwriting cached
//! misses and stale copies, and deletes every cached entry whose number 星辰 no longer holds,
//! misses included. Since the transformer keeps no copy of its own, the next message resolves
//! with what 星辰 holds now. It reports, per collection, what it found and what it changed.
//!
//! Resolving single numbers on demand is [`crate::resolve`]'s; the command line is `bridge`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use pipeline::StoreError;
use pipeline::masterdata::{CacheHit, MasterDataCache, Resolved};
use scheme::Collection;
use serde::Serialize;
use tracing::{info, warn};
use xingchen::Client;

use crate::resolve::{NUMBER_FIELD, cache_lookup, customer_record, material_record, store_record};

/// Cache writes and deletes in flight at once.
const WRITES_IN_FLIGHT: usize = 16;

/// What a sync did to one collection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectionSync {
    /// `customer`, `material` or `store`.
    pub collection: String,
    /// Records 星辰 holds (distinct numbers).
    pub records: usize,
    /// Records written that the cache did not hold (or held as a miss).
    pub added: usize,
    /// Records written whose cached copy differed.
    pub updated: usize,
    /// Records written again as they were, which restarts their age.
    pub unchanged: usize,
    /// Cached records deleted because 星辰 no longer has their number.
    pub removed: usize,
    /// Cached misses dropped: deleted, or replaced by the record 星辰 now has.
    pub misses_dropped: usize,
}

/// What a whole sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// One entry per collection: customers, materials, stores.
    pub collections: Vec<CollectionSync>,
    /// How long the sync took, in milliseconds.
    pub elapsed_ms: u64,
}

impl SyncReport {
    /// The entry of `collection`.
    pub fn collection(&self, collection: Collection) -> Option<&CollectionSync> {
        self.collections
            .iter()
            .find(|entry| entry.collection == collection.name())
    }
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A 星辰 list could not be read; the cache was left as it was.
    #[error("list {collection} from 星辰: {source}")]
    Xingchen {
        /// The collection.
        collection: Collection,
        /// The client's error.
        source: xingchen::Error,
    },
    /// The cache's keys could not be listed.
    #[error("list the master-data cache: {0}")]
    Keys(String),
    /// A cache entry could not be read or written.
    #[error("master-data cache: {0}")]
    Store(#[from] StoreError),
    /// A stale entry could not be deleted.
    #[error("delete {key} from the master-data cache: {message}")]
    Delete {
        /// The key.
        key: String,
        /// The server's or client's error.
        message: String,
    },
}

impl SyncError {
    /// Whether running the sync again may succeed as it is.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Xingchen { source, .. } => source.is_transient(),
            SyncError::Store(source) => source.is_transient(),
            SyncError::Keys(_) | SyncError::Delete { .. } => true,
        }
    }
}

/// A cached entry as the sync sees it.
struct CachedEntry {
    key: String,
    collection: Collection,
    number: String,
    hit: CacheHit,
}

/// Refreshes the master-data cache in `store` from 星辰 through `client`.
pub async fn sync_masterdata(client: &Client, store: &Store) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let fresh = read_xingchen(client).await?;
    let cache = MasterDataCache::new(store.clone(), Duration::from_secs(1));
    let cached = read_cache(&cache, store).await?;

    let mut report = SyncReport::default();
    for collection in Collection::ALL {
        let records = fresh.get(&collection).cloned().unwrap_or_default();
        let entries: Vec<&CachedEntry> = cached
            .iter()
            .filter(|entry| entry.collection == collection)
            .collect();
        let entry = sync_collection(&cache, store, collection, &records, &entries).await?;
        info!(
            collection = collection.name(),
            records = entry.records,
            added = entry.added,
            updated = entry.updated,
            removed = entry.removed,
            misses_dropped = entry.misses_dropped,
            "Master data synchronised"
        );
        report.collections.push(entry);
    }
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Every record of every collection, by number; nothing is changed until all three are read.
async fn read_xingchen(
    client: &Client,
) -> Result<BTreeMap<Collection, BTreeMap<String, Resolved>>, SyncError> {
    let failed = |collection| move |source| SyncError::Xingchen { collection, source };
    let customers = client
        .customers()
        .await
        .map_err(failed(Collection::Customer))?;
    let materials = client
        .materials()
        .await
        .map_err(failed(Collection::Material))?;
    let stores = client.stores().await.map_err(failed(Collection::Store))?;

    let mut fresh = BTreeMap::new();
    fresh.insert(
        Collection::Customer,
        by_number(Collection::Customer, customers.iter().map(customer_record)),
    );
    fresh.insert(
        Collection::Material,
        by_number(Collection::Material, materials.iter().map(material_record)),
    );
    fresh.insert(
        Collection::Store,
        by_number(Collection::Store, stores.iter().map(store_record)),
    );
    Ok(fresh)
}

fn by_number(
    collection: Collection,
    records: impl Iterator<Item = Resolved>,
) -> BTreeMap<String, Resolved> {
    let mut numbered = BTreeMap::new();
    for record in records {
        let Some(number) = record.attributes.get(NUMBER_FIELD).cloned() else {
            warn!(collection = collection.name(), id = %record.id, "星辰 record has no number");
            continue;
        };
        if numbered.contains_key(&number) {
            // 星辰 keeps numbers unique; if it ever lists one twice, the first one wins, as a
            // detail-by-number call would give one record.
            warn!(
                collection = collection.name(),
                number, "星辰 lists a number twice"
            );
            continue;
        }
        numbered.insert(number, record);
    }
    numbered
}

/// Every entry the cache holds for the three collections.
async fn read_cache(cache: &MasterDataCache, store: &Store) -> Result<Vec<CachedEntry>, SyncError> {
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|error| SyncError::Keys(error.to_string()))?
        .try_collect()
        .await
        .map_err(|error| SyncError::Keys(error.to_string()))?;

    // Read as of the epoch, every cached miss is still fresh (it was recorded later), so each
    // entry reads as what it is: a record or a miss, never as absent.
    let as_of: DateTime<Utc> = DateTime::UNIX_EPOCH;
    let parsed: Vec<(String, Collection, String)> = keys
        .into_iter()
        .filter_map(|key| parse_key(&key).map(|(c, n)| (key, c, n)))
        .collect();
    let entries = futures::stream::iter(parsed)
        .map(|(key, collection, number)| async move {
            let lookup = cache_lookup(collection, &number);
            match cache.get_at(&lookup, as_of).await {
                Ok(Some(hit)) => Ok(Some(CachedEntry {
                    key,
                    collection,
                    number,
                    hit,
                })),
                Ok(None) => Ok(None),
                // An unreadable entry is replaced or deleted like any other.
                Err(StoreError::Corrupt { .. }) => Ok(Some(CachedEntry {
                    key,
                    collection,
                    number,
                    hit: CacheHit::Missing { since: as_of },
                })),
                Err(error) => Err(SyncError::Store(error)),
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_filter_map(|entry| async move { Ok(entry) })
        .try_collect()
        .await?;
    Ok(entries)
}

/// The collection and number of a cache key the transformer writes; `None` for any other key.
fn parse_key(key: &str) -> Option<(Collection, String)> {
    let mut parts = key.split('.');
    let (collection, field, number) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let collection = pipeline::key::decode(collection).ok()?;
    let collection = Collection::ALL
        .into_iter()
        .find(|known| known.name() == collection)?;
    if pipeline::key::decode(field).ok()? != NUMBER_FIELD {
        return None;
    }
    let number = pipeline::key::decode(number).ok()?;
    Some((collection, number))
}

async fn sync_collection(
    cache: &MasterDataCache,
    store: &Store,
    collection: Collection,
    records: &BTreeMap<String, Resolved>,
    cached: &[&CachedEntry],
) -> Result<CollectionSync, SyncError> {
    let mut entry = CollectionSync {
        collection: collection.name().to_owned(),
        records: records.len(),
        ..CollectionSync::default()
    };
    let before: BTreeMap<&str, &CacheHit> = cached
        .iter()
        .map(|cached| (cached.number.as_str(), &cached.hit))
        .collect();
    for (number, record) in records {
        match before.get(number.as_str()) {
            Some(CacheHit::Found(old)) if old == record => entry.unchanged += 1,
            Some(CacheHit::Found(_)) => entry.updated += 1,
            Some(CacheHit::Missing { .. }) => {
                entry.misses_dropped += 1;
                entry.added += 1;
            }
            None => entry.added += 1,
        }
    }

    futures::stream::iter(records)
        .map(|(number, record)| async move {
            cache
                .put_found(&cache_lookup(collection, number), record)
                .await
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;

    let gone: BTreeSet<&str> = cached
        .iter()
        .filter(|cached| !records.contains_key(&cached.number))
        .map(|cached| cached.key.as_str())
        .collect();
    for cached in cached.iter().filter(|c| gone.contains(c.key.as_str())) {
        match cached.hit {
            CacheHit::Found(_) => entry.removed += 1,
            CacheHit::Missing { .. } => entry.misses_dropped += 1,
        }
    }
    futures::stream::iter(gone)
        .map(|key| async move {
            store.delete(key).await.map_err(|error| SyncError::Delete {
                key: key.to_owned(),
                message: error.to_string(),
            })
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_transformers_keys_are_taken_as_entries() {
        let key = cache_lookup(Collection::Material, "G.1004").key();
        assert_eq!(
            parse_key(&key),
            Some((Collection::Material, "G.1004".to_owned()))
        );
        let chinese = cache_lookup(Collection::Store, "北京仓").key();
        assert_eq!(
            parse_key(&chinese),
            Some((Collection::Store, "北京仓".to_owned()))
        );
        for other in [
            "material.id.G-1",
            "unit.number.G-1",
            "material.number",
            "material.number.G-1.x",
        ] {
            assert_eq!(parse_key(other), None, "{other}");
        }
    }
}
