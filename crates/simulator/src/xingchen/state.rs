//! What the 星辰 simulator holds: master data seeded from the [`World`], saved bills, issued
//! tokens, the current app secret, the fault knobs and the request log.
//!
//! Everything sits behind one mutex that is never held across an `await`; the HTTP handlers in
//! the sibling modules lock, decide, unlock, and only then sleep or answer. Tests reach the same
//! state through [`XingchenState`]'s methods, the admin endpoints through JSON.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::world::World;

use super::defaults;

/// How many request-log entries are kept; older ones are dropped.
const LOG_CAPACITY: usize = 100_000;

/// The simulator's fixed settings: credentials, token lifetime and clock tolerance.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The only `X-Api-ClientID` accepted.
    pub client_id: String,
    /// Its secret, the key of every X-Api-Signature.
    pub client_secret: String,
    /// The only `outerInstanceId` push_app_authorize knows.
    pub outer_instance_id: String,
    /// The app key of the active account set.
    pub app_key: String,
    /// The first app secret (rotated on demand).
    pub app_secret: String,
    /// The active account set's id.
    pub account_id: String,
    /// The active account set's group name.
    pub group_name: String,
    /// The router address business calls must name in `X-GW-Router-Addr`.
    pub domain: String,
    /// How long an issued token lives. Default 24 h.
    pub token_lifetime: Duration,
    /// How far `X-Api-TimeStamp` may stray from the server clock. Default 5 min.
    pub timestamp_tolerance: Duration,
    /// The fault knobs at start.
    pub knobs: Knobs,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            client_id: defaults::CLIENT_ID.to_owned(),
            client_secret: defaults::CLIENT_SECRET.to_owned(),
            outer_instance_id: defaults::OUTER_INSTANCE_ID.to_owned(),
            app_key: defaults::APP_KEY.to_owned(),
            app_secret: defaults::APP_SECRET.to_owned(),
            account_id: defaults::ACCOUNT_ID.to_owned(),
            group_name: defaults::GROUP_NAME.to_owned(),
            domain: defaults::DOMAIN.to_owned(),
            token_lifetime: Duration::from_secs(24 * 3600),
            timestamp_tolerance: Duration::from_secs(300),
            knobs: Knobs::default(),
        }
    }
}

/// Faults and delays the simulator injects into business calls (`/jdy/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Added to every gateway answer, in milliseconds.
    pub latency_ms: u64,
    /// Share of business calls answered HTTP 429, 0 to 1.
    pub fraction_429: f64,
    /// Share of business calls answered HTTP 519 with code 5003 or 5007, 0 to 1.
    pub fraction_519: f64,
    /// When set, a token answers 4011 once it has served this many business calls.
    pub token_expires_after_calls: Option<u64>,
    /// When set, business calls beyond this many in a sliding minute are answered 429.
    pub requests_per_minute: Option<u32>,
    /// Share of valid saves that store the bill and then stall before answering, 0 to 1.
    pub fraction_stall: f64,
    /// How long a stalled save waits before answering, in milliseconds. Default 30 000.
    pub stall_ms: u64,
    /// Answer push_app_authorize with `{code: 200, msg, data}` instead of `{errcode, …}`.
    pub authorize_code_envelope: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            latency_ms: 0,
            fraction_429: 0.0,
            fraction_519: 0.0,
            token_expires_after_calls: None,
            requests_per_minute: None,
            fraction_stall: 0.0,
            stall_ms: 30_000,
            authorize_code_envelope: false,
        }
    }
}

/// A customer as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCustomer {
    /// The internal id; generated when an admin call leaves it empty.
    #[serde(default)]
    pub id: String,
    /// The number (the WDT `shop_no`).
    pub number: String,
    /// The name.
    #[serde(default)]
    pub name: String,
}

/// A material as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMaterial {
    /// The internal id; generated when an admin call leaves it empty.
    #[serde(default)]
    pub id: String,
    /// The number (the WDT `goods_no`).
    pub number: String,
    /// The name.
    #[serde(default)]
    pub name: String,
    /// The base unit's id (`baseunitid_id`).
    pub base_unit_id: String,
    /// Every unit's id, the base unit included; a bill line's `unit_id` must be one of them.
    #[serde(default)]
    pub unit_ids: Vec<String>,
}

/// A store (warehouse) as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStore {
    /// The internal id; generated when an admin call leaves it empty.
    #[serde(default)]
    pub id: String,
    /// The number (the WDT `warehouse_no`).
    pub number: String,
    /// The name.
    #[serde(default)]
    pub name: String,
}

/// One gateway request, as the simulator answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// `GET` or `POST`.
    pub method: String,
    /// The path called.
    pub endpoint: String,
    /// The HTTP status answered; 0 while pending, 499 when the client left before the answer.
    pub status: u16,
    /// The gateway code (519), the auth errcode, or `None`.
    pub code: Option<i64>,
    /// When the request arrived, epoch ms.
    pub started_ms: i64,
    /// When the answer left (or the client left), epoch ms; 0 while pending.
    pub finished_ms: i64,
}

/// Counters an admin or a test reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls to kingdee_auth_token, answered or refused.
    pub token_calls: u64,
    /// Calls to push_app_authorize, answered or refused.
    pub authorize_calls: u64,
    /// Gateway requests logged.
    pub requests: u64,
    /// Bills held.
    pub bills: u64,
}

pub(super) struct TokenRecord {
    pub app_token: String,
    pub expires_ms: i64,
    pub calls: u64,
    pub revoked: bool,
}

pub(super) struct Data {
    pub customers: Vec<SimCustomer>,
    pub materials: Vec<SimMaterial>,
    pub stores: Vec<SimStore>,
    /// Bills by id; ids grow, so this is also creation order.
    pub bills: BTreeMap<String, Value>,
    pub app_secret: String,
    pub tokens: HashMap<String, TokenRecord>,
    pub knobs: Knobs,
    pub log: VecDeque<LogEntry>,
    pub logged: u64,
    pub token_calls: u64,
    pub authorize_calls: u64,
    pub recent_calls: VecDeque<Instant>,
    next_id: u64,
}

impl Data {
    /// A fresh 19-digit id, distinct from the world's.
    pub fn next_id(&mut self) -> String {
        fresh_id(&mut self.next_id)
    }

    pub fn bill_id_by_number(&self, billno: &str) -> Option<String> {
        self.bills
            .iter()
            .find(|(_, bill)| bill["billno"] == billno)
            .map(|(id, _)| id.clone())
    }

    /// Appends an entry and returns its sequence number.
    pub fn record(&mut self, mut entry: LogEntry) -> u64 {
        self.logged += 1;
        entry.seq = self.logged;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
        self.logged
    }

    /// Completes the entry `seq` with its answer, if it is still kept.
    pub fn finish(&mut self, seq: u64, status: u16, code: Option<i64>, finished_ms: i64) {
        if let Some(entry) = self.log.iter_mut().rev().find(|e| e.seq == seq) {
            entry.status = status;
            entry.code = code;
            entry.finished_ms = finished_ms;
        }
    }
}

/// Shared handle on the simulator's state; clones see the same data.
#[derive(Clone)]
pub struct XingchenState {
    pub(super) config: Arc<SimulatorConfig>,
    data: Arc<Mutex<Data>>,
}

impl XingchenState {
    /// The state for this world: every shop a customer, every warehouse a store, every goods
    /// item a material with its units.
    pub fn new(world: &World, config: SimulatorConfig) -> XingchenState {
        let data = Data {
            customers: world
                .shops
                .iter()
                .map(|s| SimCustomer {
                    id: s.customer_id.clone(),
                    number: s.shop_no.clone(),
                    name: s.shop_name.clone(),
                })
                .collect(),
            materials: world
                .goods
                .iter()
                .map(|g| SimMaterial {
                    id: g.material_id.clone(),
                    number: g.goods_no.clone(),
                    name: g.goods_name.clone(),
                    base_unit_id: g.base_unit_id.clone(),
                    unit_ids: g.unit_ids.clone(),
                })
                .collect(),
            stores: world
                .warehouses
                .iter()
                .map(|w| SimStore {
                    id: w.store_id.clone(),
                    number: w.warehouse_no.clone(),
                    name: w.warehouse_name.clone(),
                })
                .collect(),
            bills: BTreeMap::new(),
            app_secret: config.app_secret.clone(),
            tokens: HashMap::new(),
            knobs: config.knobs.clone(),
            log: VecDeque::new(),
            logged: 0,
            token_calls: 0,
            authorize_calls: 0,
            recent_calls: VecDeque::new(),
            // Far above the world's ids, which start near 1.786e18.
            next_id: 1_890_000_000_000_000_000 + rand::rng().random_range(0..1_000_000) * 1000,
        };
        XingchenState {
            config: Arc::new(config),
            data: Arc::new(Mutex::new(data)),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic while holding the lock leaves plain data behind, still fit to serve.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fixed settings.
    pub fn config(&self) -> &SimulatorConfig {
        &self.config
    }

    /// Every bill held, in creation order.
    pub fn bills(&self) -> Vec<Value> {
        self.lock().bills.values().cloned().collect()
    }

    /// The bill with this number.
    pub fn bill(&self, billno: &str) -> Option<Value> {
        self.lock()
            .bills
            .values()
            .find(|bill| bill["billno"] == billno)
            .cloned()
    }

    /// Deletes the bill with this number; false when there was none.
    pub fn delete_bill(&self, billno: &str) -> bool {
        let mut data = self.lock();
        match data.bill_id_by_number(billno) {
            Some(id) => data.bills.remove(&id).is_some(),
            None => false,
        }
    }

    /// Every customer.
    pub fn customers(&self) -> Vec<SimCustomer> {
        self.lock().customers.clone()
    }

    /// Adds a customer, or replaces the one with the same number (keeping its id when none is
    /// given); returns it with its id.
    pub fn upsert_customer(&self, customer: SimCustomer) -> SimCustomer {
        let mut data = self.lock();
        let data = &mut *data;
        upsert(&mut data.customers, customer, &mut data.next_id)
    }

    /// Removes the customer with this number; false when there was none.
    pub fn remove_customer(&self, number: &str) -> bool {
        remove(&mut self.lock().customers, number)
    }

    /// Every material.
    pub fn materials(&self) -> Vec<SimMaterial> {
        self.lock().materials.clone()
    }

    /// Adds a material, or replaces the one with the same number (a new base unit, say).
    pub fn upsert_material(&self, mut material: SimMaterial) -> SimMaterial {
        if !material.unit_ids.contains(&material.base_unit_id) {
            material.unit_ids.insert(0, material.base_unit_id.clone());
        }
        let mut data = self.lock();
        let data = &mut *data;
        upsert(&mut data.materials, material, &mut data.next_id)
    }

    /// Removes the material with this number; false when there was none.
    pub fn remove_material(&self, number: &str) -> bool {
        remove(&mut self.lock().materials, number)
    }

    /// Every store.
    pub fn stores(&self) -> Vec<SimStore> {
        self.lock().stores.clone()
    }

    /// Adds a store, or replaces the one with the same number.
    pub fn upsert_store(&self, store: SimStore) -> SimStore {
        let mut data = self.lock();
        let data = &mut *data;
        upsert(&mut data.stores, store, &mut data.next_id)
    }

    /// Removes the store with this number; false when there was none.
    pub fn remove_store(&self, number: &str) -> bool {
        remove(&mut self.lock().stores, number)
    }

    /// The request log, oldest first.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.iter().cloned().collect()
    }

    /// Empties the request log (the counters stay).
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let data = self.lock();
        Stats {
            token_calls: data.token_calls,
            authorize_calls: data.authorize_calls,
            requests: data.logged,
            bills: data.bills.len() as u64,
        }
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }

    /// Replaces the knobs.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.lock().knobs = knobs;
    }

    /// Changes the knobs in place.
    pub fn update_knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.lock().knobs);
    }

    /// Rotates the app secret, as 星辰 does every 24 h; token requests signed with the old one
    /// get errcode 1030002006.
    pub fn rotate_app_secret(&self) {
        let secret: String = {
            let mut rng = rand::rng();
            (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
                .collect()
        };
        self.lock().app_secret = secret;
    }

    /// The current app secret, which push_app_authorize hands out.
    pub fn app_secret(&self) -> String {
        self.lock().app_secret.clone()
    }

    /// Expires every issued token; the next business call with one gets 4011.
    pub fn expire_tokens(&self) {
        for token in self.lock().tokens.values_mut() {
            token.revoked = true;
        }
    }
}

/// A customer, material or store: master data 星辰 keeps by number, each with an internal id.
trait MasterRecord: Clone {
    fn number(&self) -> &str;
    fn id_mut(&mut self) -> &mut String;
}

macro_rules! master_record {
    ($($record:ty),*) => {$(
        impl MasterRecord for $record {
            fn number(&self) -> &str {
                &self.number
            }
            fn id_mut(&mut self) -> &mut String {
                &mut self.id
            }
        }
    )*};
}

master_record!(SimCustomer, SimMaterial, SimStore);

/// The next id from the world's counter.
fn fresh_id(counter: &mut u64) -> String {
    *counter += 1;
    counter.to_string()
}

/// Adds `record`, or replaces the one with its number, and returns it with its id. Modifying
/// keeps the id bills refer to; only a new number gets a new id.
fn upsert<T: MasterRecord>(records: &mut Vec<T>, mut record: T, counter: &mut u64) -> T {
    if record.id_mut().is_empty() {
        let known = records.iter_mut().find(|r| r.number() == record.number());
        *record.id_mut() = match known {
            Some(existing) => existing.id_mut().clone(),
            None => fresh_id(counter),
        };
    }
    records.retain(|r| r.number() != record.number());
    records.push(record.clone());
    record
}

/// Removes the record with `number`; false when there was none.
fn remove<T: MasterRecord>(records: &mut Vec<T>, number: &str) -> bool {
    let before = records.len();
    records.retain(|r| r.number() != number);
    records.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifying_a_material_by_number_keeps_its_id_and_lists_the_new_base_unit() {
        let world = World::generate(5);
        let state = XingchenState::new(&world, SimulatorConfig::default());
        let goods = &world.goods[0];
        let changed = state.upsert_material(SimMaterial {
            id: String::new(),
            number: goods.goods_no.clone(),
            name: goods.goods_name.clone(),
            base_unit_id: "77".into(),
            unit_ids: Vec::new(),
        });
        assert_eq!(changed.id, goods.material_id);
        assert_eq!(changed.unit_ids, ["77"]);
        assert_eq!(state.materials().len(), world.goods.len());

        let added = state.upsert_store(SimStore {
            id: String::new(),
            number: "NEW".into(),
            name: "新仓".into(),
        });
        assert!(!added.id.is_empty() && world.warehouses.iter().all(|w| w.store_id != added.id));
    }
}
