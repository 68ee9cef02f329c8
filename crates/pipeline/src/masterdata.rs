//! The master-data cache: 星辰 ids resolved from business numbers, shared by every transformer.
//!
//! An entry lives in the `bridge_masterdata` bucket under
//! `<collection>.<field>.<number>`, each part [`key`]-encoded, so a number with Chinese, spaces
//! or dots is a valid key. Its JSON value is either a resolved id (with optional attributes such
//! as a material's base unit) or a miss: the number was looked up and 星辰 has no such record.
//! Found entries age out with the bucket's `max_age`; a miss carries the time it was recorded
//! and reads as absent once older than the cache's miss TTL, so a record created in 星辰 after a
//! failed lookup is found soon. Filling the cache from the paged 星辰 lists and the
//! detail-by-number call is left to the transformer.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::key;
use crate::kv::{self, StoreError, Versioned};

/// A sensible miss TTL for callers without their own setting: one minute.
pub const DEFAULT_MISS_TTL: Duration = Duration::from_secs(60);

/// What is looked up: a record of `collection` whose `field` equals `number`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lookup {
    /// The 星辰 collection, e.g. `customer`, `material`, `store`.
    pub collection: String,
    /// The field matched, e.g. `number`.
    pub field: String,
    /// The business number, as the order gives it.
    pub number: String,
}

impl Lookup {
    /// A lookup of `number` in `field` of `collection`.
    pub fn new(collection: &str, field: &str, number: &str) -> Lookup {
        Lookup {
            collection: collection.into(),
            field: field.into(),
            number: number.into(),
        }
    }

    /// The KV key of this lookup.
    pub fn key(&self) -> String {
        let parts = [&self.collection, &self.field, &self.number];
        parts.map(|part| key::encode(part)).join(".")
    }
}

/// A resolved record: its id and whatever else the mapping needs from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// 星辰's id of the record.
    pub id: String,
    /// Further ids or values, e.g. `base_unit_id` of a material.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// What the cache knows about a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheHit {
    /// The record exists.
    Found(Resolved),
    /// 星辰 had no such record when it was asked at `since`, recently enough to trust.
    Missing {
        /// When the miss was recorded.
        since: DateTime<Utc>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum CachedValue {
    Found {
        resolved: Resolved,
        cached_at: DateTime<Utc>,
    },
    Missing {
        cached_at: DateTime<Utc>,
    },
}

/// The master-data bucket, with the miss TTL readers apply.
#[derive(Clone, Debug)]
pub struct MasterDataCache {
    store: Store,
    miss_ttl: Duration,
}

impl MasterDataCache {
    /// The cache in `store` (the topology's master-data bucket); misses older than `miss_ttl`
    /// read as absent.
    pub fn new(store: Store, miss_ttl: Duration) -> MasterDataCache {
        MasterDataCache { store, miss_ttl }
    }

    /// What the cache knows now; `None` when the lookup must be resolved by 星辰.
    pub async fn get(&self, lookup: &Lookup) -> Result<Option<CacheHit>, StoreError> {
        self.get_at(lookup, Utc::now()).await
    }

    /// What the cache knows at `now`, which tests set to step past the miss TTL.
    pub async fn get_at(
        &self,
        lookup: &Lookup,
        now: DateTime<Utc>,
    ) -> Result<Option<CacheHit>, StoreError> {
        let stored: Option<Versioned<CachedValue>> =
            kv::read_json(&self.store, &lookup.key()).await?;
        Ok(stored.and_then(|stored| fresh(stored.value, now, self.miss_ttl)))
    }

    /// Records that `lookup` resolves to `resolved`.
    pub async fn put_found(&self, lookup: &Lookup, resolved: &Resolved) -> Result<(), StoreError> {
        let value = CachedValue::Found {
            resolved: resolved.clone(),
            cached_at: Utc::now(),
        };
        kv::put_json(&self.store, &lookup.key(), &value)
            .await
            .map(drop)
    }

    /// Records that 星辰 has no record for `lookup`, as of now.
    pub async fn put_missing(&self, lookup: &Lookup) -> Result<(), StoreError> {
        self.put_missing_at(lookup, Utc::now()).await
    }

    /// Records that 星辰 had no record for `lookup` at `at`.
    pub async fn put_missing_at(
        &self,
        lookup: &Lookup,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let value = CachedValue::Missing { cached_at: at };
        kv::put_json(&self.store, &lookup.key(), &value)
            .await
            .map(drop)
    }
}

fn fresh(value: CachedValue, now: DateTime<Utc>, miss_ttl: Duration) -> Option<CacheHit> {
    match value {
        CachedValue::Found { resolved, .. } => Some(CacheHit::Found(resolved)),
        CachedValue::Missing { cached_at } => {
            let age = now
                .signed_duration_since(cached_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            (age < miss_ttl).then_some(CacheHit::Missing { since: cached_at })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_are_valid_whatever_the_number() {
        let lookup = Lookup::new("customer", "number", "天猫 旗舰店.01/A");
        let key = lookup.key();
        assert!(key::is_valid_kv_key(&key), "{key}");
        assert_eq!(key.split('.').count(), 3);
        assert!(key.starts_with("customer.number."));
        assert_ne!(
            key,
            Lookup::new("customer", "number", "天猫 旗舰店.01/B").key()
        );
    }

    #[test]
    fn a_miss_is_trusted_only_within_its_ttl() {
        let ttl = Duration::from_secs(60);
        let at = Utc::now();
        let miss = || CachedValue::Missing { cached_at: at };
        let later = |secs| at + chrono::Duration::seconds(secs);
        assert_eq!(
            fresh(miss(), later(59), ttl),
            Some(CacheHit::Missing { since: at })
        );
        assert_eq!(fresh(miss(), later(60), ttl), None);
        // A clock that went backwards does not make the miss eternal, only fresh.
        assert_eq!(
            fresh(miss(), later(-5), ttl),
            Some(CacheHit::Missing { since: at })
        );
    }

    #[test]
    fn a_found_record_does_not_expire_by_the_miss_ttl() {
        let resolved = Resolved {
            id: "42".into(),
            attributes: BTreeMap::new(),
        };
        let found = CachedValue::Found {
            resolved: resolved.clone(),
            cached_at: Utc::now(),
        };
        let much_later = Utc::now() + chrono::Duration::days(30);
        assert_eq!(
            fresh(found, much_later, Duration::ZERO),
            Some(CacheHit::Found(resolved))
        );
    }
}
