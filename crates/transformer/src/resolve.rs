//! Resolving an order's lookups: the master-data cache in KV first, 星辰's detail-by-number call
//! when the cache has nothing fresh, and the answer written back for every transformer.
//!
//! A lookup asks for one field of one record (`material baseunitid_id where number=G-1001`); the
//! cache holds whole records, under `<collection>.number.<number>`, with the id and every other
//! field a scheme may return (number, name, a material's `baseunitid_id`), so one 星辰 call
//! serves every lookup of that record. A miss ("星辰 has no such number") is cached too, and
//! trusted for the miss TTL only. Nothing is kept in this process between messages: what KV
//! holds is what the next message sees, so a `bridge masterdata sync` takes effect at once.
//!
//! Records of one order are resolved concurrently, up to a bound. Two messages needing the same
//! uncached record at once would both ask 星辰; a striped lock lets the second wait for the
//! first and read its answer from the cache instead. Filling the whole cache from 星辰's lists
//! is [`crate::sync`]'s job; deciding what a failed lookup does to the message is the handler's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use pipeline::StoreError;
use pipeline::masterdata::{CacheHit, Lookup, MasterDataCache, Resolved};
use scheme::{Collection, LookupKey};
use telemetry::metrics::{self, ApiEndpoint, ApiOutcome, CacheOutcome};
use tracing::{Instrument, warn};
use xingchen::{Client, Customer, MasterData, Material, Store};

/// The field the cache's keys match on: every lookup of the seed is by number.
pub const NUMBER_FIELD: &str = "number";

/// The field of a record that is its id rather than an attribute.
const ID_FIELD: &str = "id";

/// How many locks the uncached records are spread over.
const STRIPES: usize = 64;

/// The answers to one order's lookups, as the scheme's evaluation takes them; a key without an
/// answer was not found.
pub type Answers = HashMap<LookupKey, String>;

/// A lookup that could not be answered either way.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// 星辰 did not answer, or refused to.
    #[error("look up {collection} {number:?} in 星辰: {source}")]
    Xingchen {
        /// The collection.
        collection: Collection,
        /// The number looked up.
        number: String,
        /// The client's error.
        source: xingchen::Error,
    },
    /// The cache could not be read.
    #[error("read {collection} {number:?} from the master-data cache: {source}")]
    Cache {
        /// The collection.
        collection: Collection,
        /// The number looked up.
        number: String,
        /// The store's error.
        source: StoreError,
    },
}

impl LookupError {
    /// Whether asking again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            LookupError::Xingchen { source, .. } => source.is_transient(),
            LookupError::Cache { source, .. } => source.is_transient(),
        }
    }
}

/// Counts of where lookups were answered, for heartbeats.
#[derive(Debug, Default)]
pub struct LookupCounts {
    cached: AtomicU64,
    fetched: AtomicU64,
}

impl LookupCounts {
    /// Records answered from the cache.
    pub fn cached(&self) -> u64 {
        self.cached.load(Ordering::Relaxed)
    }

    /// Records 星辰 was asked for.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

/// Resolves lookups through the cache and 星辰; cheap to clone, clones share everything.
#[derive(Clone)]
pub struct Resolver {
    cache: MasterDataCache,
    xingchen: Client,
    concurrency: usize,
    stripes: Arc<Vec<tokio::sync::Mutex<()>>>,
    counts: Arc<LookupCounts>,
}

impl Resolver {
    /// A resolver over `cache` asking `xingchen`, resolving at most `concurrency` records of one
    /// order at a time.
    pub fn new(cache: MasterDataCache, xingchen: Client, concurrency: usize) -> Resolver {
        Resolver {
            cache,
            xingchen,
            concurrency: concurrency.max(1),
            stripes: Arc::new((0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect()),
            counts: Arc::default(),
        }
    }

    /// Where lookups were answered so far.
    pub fn counts(&self) -> Arc<LookupCounts> {
        Arc::clone(&self.counts)
    }

    /// Answers every key; a key whose record 星辰 does not have (or has without that field) is
    /// left out. Fails when any record could not be resolved either way.
    pub async fn resolve(&self, keys: &[LookupKey]) -> Result<Answers, LookupError> {
        let records: BTreeSet<(Collection, String)> = keys
            .iter()
            .map(|key| (key.collection, key.number.clone()))
            .collect();
        let resolving = records
            .into_iter()
            .map(|(collection, number)| self.keyed_record(collection, number));
        let resolved: BTreeMap<(Collection, String), (Option<Resolved>, CacheOutcome)> =
            futures::stream::iter(resolving)
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await?;

        let mut answers = Answers::new();
        for key in keys {
            let Some((record, outcome)) = resolved.get(&(key.collection, key.number.clone()))
            else {
                continue;
            };
            metrics::lookup(metric_collection(key), *outcome);
            if let Some(value) = record.as_ref().and_then(|r| field_value(r, &key.field)) {
                answers.insert(key.clone(), value);
            }
        }
        Ok(answers)
    }

    async fn keyed_record(
        &self,
        collection: Collection,
        number: String,
    ) -> Result<((Collection, String), (Option<Resolved>, CacheOutcome)), LookupError> {
        let answer = self.record(collection, &number).await?;
        Ok(((collection, number), answer))
    }

    /// One record: `None` when 星辰 has no record with that number.
    async fn record(
        &self,
        collection: Collection,
        number: &str,
    ) -> Result<(Option<Resolved>, CacheOutcome), LookupError> {
        let span = telemetry::lookup_span!("lookup", collection = collection.name(), key = number);
        let lookup = cache_lookup(collection, number);
        let resolving = async {
            if let Some(cached) = self.cached(&lookup, collection, number).await? {
                return Ok((cached, CacheOutcome::Hit));
            }
            let _turn = self.stripe(&lookup).lock().await;
            // Another message may have asked 星辰 for this record while this one waited.
            if let Some(cached) = self.cached(&lookup, collection, number).await? {
                return Ok((cached, CacheOutcome::Hit));
            }
            let fetched = self.fetch(collection, number).await?;
            self.remember(&lookup, fetched.as_ref()).await;
            Ok((fetched, CacheOutcome::Miss))
        };
        let result = resolving.instrument(span.clone()).await;
        if let Ok((_, outcome)) = &result {
            let counter = match outcome {
                CacheOutcome::Hit => &self.counts.cached,
                CacheOutcome::Miss | CacheOutcome::Expired => &self.counts.fetched,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            span.record("lookup.cache", outcome.as_label());
        }
        result
    }

    /// What the cache holds: `Some(None)` is a fresh miss, `None` means ask 星辰.
    async fn cached(
        &self,
        lookup: &Lookup,
        collection: Collection,
        number: &str,
    ) -> Result<Option<Option<Resolved>>, LookupError> {
        match self.cache.get(lookup).await {
            Ok(Some(CacheHit::Found(resolved))) => Ok(Some(Some(resolved))),
            Ok(Some(CacheHit::Missing { .. })) => Ok(Some(None)),
            Ok(None) => Ok(None),
            // An unreadable entry is replaced by what 星辰 answers now.
            Err(error @ StoreError::Corrupt { .. }) => {
                warn!(
                    collection = collection.name(),
                    number,
                    error = %error,
                    "Cached master data is unreadable; asking 星辰 again"
                );
                Ok(None)
            }
            Err(source) => Err(LookupError::Cache {
                collection,
                number: number.to_owned(),
                source,
            }),
        }
    }

    async fn fetch(
        &self,
        collection: Collection,
        number: &str,
    ) -> Result<Option<Resolved>, LookupError> {
        let endpoint = master_data(collection).detail_path();
        let span = telemetry::client_span!("xingchen detail", endpoint = endpoint);
        let started = Instant::now();
        let result = async {
            match collection {
                Collection::Customer => self
                    .xingchen
                    .customer(number)
                    .await
                    .map(|found| found.map(|c| customer_record(&c))),
                Collection::Material => self
                    .xingchen
                    .material(number)
                    .await
                    .map(|found| found.map(|m| material_record(&m))),
                Collection::Store => self
                    .xingchen
                    .store(number)
                    .await
                    .map(|found| found.map(|s| store_record(&s))),
            }
        }
        .instrument(span)
        .await;
        let outcome = ApiOutcome::of(&result, xingchen::Error::is_transient);
        metrics::api_call(ApiEndpoint::from_name(endpoint), outcome, started.elapsed());
        result.map_err(|source| LookupError::Xingchen {
            collection,
            number: number.to_owned(),
            source,
        })
    }

    /// Writes 星辰's answer to the cache. A failed write only costs a later 星辰 call, so the
    /// answer is used anyway.
    async fn remember(&self, lookup: &Lookup, found: Option<&Resolved>) {
        let written = match found {
            Some(resolved) => self.cache.put_found(lookup, resolved).await,
            None => self.cache.put_missing(lookup).await,
        };
        if let Err(error) = written {
            warn!(key = %lookup.key(), error = %error, "Master data could not be cached");
        }
    }

    fn stripe(&self, lookup: &Lookup) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        lookup.hash(&mut hasher);
        // The remainder is below STRIPES, so it fits in usize and indexes the vector.
        let index = (hasher.finish() % STRIPES as u64) as usize;
        &self.stripes[index]
    }
}

/// The cache entry a record of `collection` with `number` lives under.
pub fn cache_lookup(collection: Collection, number: &str) -> Lookup {
    Lookup::new(collection.name(), NUMBER_FIELD, number)
}

/// The 星辰 endpoints of a collection.
pub(crate) fn master_data(collection: Collection) -> MasterData {
    match collection {
        Collection::Customer => MasterData::Customer,
        Collection::Material => MasterData::Material,
        Collection::Store => MasterData::Store,
    }
}

/// The value of `field` in a cached record; `None` when the record lacks it.
pub fn field_value(record: &Resolved, field: &str) -> Option<String> {
    if field == ID_FIELD {
        return Some(record.id.clone());
    }
    record.attributes.get(field).cloned()
}

/// A customer as the cache keeps it.
pub fn customer_record(customer: &Customer) -> Resolved {
    record(
        &customer.id,
        [("number", &customer.number), ("name", &customer.name)],
    )
}

/// A material as the cache keeps it, with its base unit when 星辰 gives one.
pub fn material_record(material: &Material) -> Resolved {
    let mut resolved = record(
        &material.id,
        [("number", &material.number), ("name", &material.name)],
    );
    if let Some(unit) = material.base_unit_id.as_ref().filter(|u| !u.is_empty()) {
        resolved
            .attributes
            .insert("baseunitid_id".to_owned(), unit.clone());
    }
    resolved
}

/// A store as the cache keeps it.
pub fn store_record(store: &Store) -> Resolved {
    record(
        &store.id,
        [("number", &store.number), ("name", &store.name)],
    )
}

fn record<'a>(id: &str, fields: impl IntoIterator<Item = (&'a str, &'a String)>) -> Resolved {
    // An empty value is no value: a lookup of it must read as not found, never as "".
    let attributes = fields
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.clone()))
        .collect();
    Resolved {
        id: id.to_owned(),
        attributes,
    }
}

/// The metric label of a lookup: a material's base unit is counted as a unit lookup.
fn metric_collection(key: &LookupKey) -> metrics::Collection {
    match key.collection {
        Collection::Customer => metrics::Collection::Customer,
        Collection::Store => metrics::Collection::Warehouse,
        Collection::Material if key.field == ID_FIELD => metrics::Collection::Material,
        Collection::Material => metrics::Collection::Unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn material(base_unit: Option<&str>) -> Material {
        serde_json::from_value(json!({
            "id": "11", "number": "G-1001", "name": "保温杯", "baseunitid_id": base_unit,
        }))
        .expect("a material")
    }

    #[test]
    fn a_cached_material_answers_its_id_and_its_base_unit() {
        let record = material_record(&material(Some("77")));
        assert_eq!(field_value(&record, "id").as_deref(), Some("11"));
        assert_eq!(field_value(&record, "baseunitid_id").as_deref(), Some("77"));
        assert_eq!(field_value(&record, "name").as_deref(), Some("保温杯"));
        assert_eq!(field_value(&record, "colour"), None);
    }

    #[test]
    fn a_material_without_base_unit_does_not_answer_one() {
        for unit in [None, Some("")] {
            let record = material_record(&material(unit));
            assert_eq!(field_value(&record, "baseunitid_id"), None, "{unit:?}");
        }
    }

    #[test]
    fn records_of_every_collection_share_one_key_shape() {
        let customer = Customer {
            id: "5".into(),
            number: "DY 001".into(),
            name: String::new(),
            extra: Map::new(),
        };
        let record = customer_record(&customer);
        assert_eq!(
            record.attributes.get("number").map(String::as_str),
            Some("DY 001")
        );
        assert!(
            !record.attributes.contains_key("name"),
            "empty fields are left out"
        );
        let key = cache_lookup(Collection::Customer, "DY 001").key();
        assert!(key.starts_with("customer.number."), "{key}");
        assert_ne!(key, cache_lookup(Collection::Store, "DY 001").key());
    }

    #[test]
    fn base_unit_lookups_are_counted_as_units() {
        let key = |collection, field: &str| LookupKey {
            collection,
            field: field.into(),
            number: "N".into(),
        };
        assert_eq!(
            metric_collection(&key(Collection::Material, "baseunitid_id")),
            metrics::Collection::Unit
        );
        assert_eq!(
            metric_collection(&key(Collection::Material, "id")),
            metrics::Collection::Material
        );
        assert_eq!(
            metric_collection(&key(Collection::Store, "id")),
            metrics::Collection::Warehouse
        );
    }
}
