//! The Qimen router of 旺店通·企业奇门, serving `wdt.stockout.order.query.trade` from seeded orders.
//!
//! The simulator checks what the real router checks, with its own code (it must not share the
//! client's signer, or a shared bug would pass unseen): the method, `app_key`, the signature
//! (`md5`, `hmac`, `hmac-sha256`), the timestamp within ±10 minutes, `target_app_key` and `sid`.
//! Then it applies the knobs (latency, injected 5xx and rate-limit failures, a calls-per-minute
//! limit, live mode) and answers the query: windows of at most 30 days, inclusive at both ends,
//! on consign time by default and on modified time with `is_by_modified=1` or a status below 95;
//! filters on status, `stockout_no`, `src_order_no`, `src_tid`, `shop_no` and `warehouse_no`;
//! pages from 0, `page_size` 1 to 100, ordered by `stockout_id`, `total_count` on every page.
//! Failures use the Qimen envelope `{"response":{"flag":"failure",…}}` with HTTP 200; the codes
//! are this project's choice (reference `wdt-qimen.md` §6 leaves the real ones open) and are kept
//! in [`codes`]. Every call is logged with its parameters and outcome. Order generation is
//! [`crate::orders`]'s; the admin endpoints under `/admin/wdt/` let tests and the demo change the
//! orders and the knobs and read the log.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use chrono::{DateTime, FixedOffset};
use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::orders::{
    OrderGenConfig, OrderJson, decimal_of, format_time, generate_order, generate_orders, money,
    now_beijing, parse_time,
};
use crate::world::World;

/// The caller's Qimen app key the simulator accepts by default.
pub const DEFAULT_APP_KEY: &str = "12345678";
/// The Qimen app secret the simulator accepts by default.
pub const DEFAULT_APP_SECRET: &str = "sim_qimen_secret";
/// WDT's Qimen app key (`target_app_key`) the simulator accepts by default.
pub const DEFAULT_TARGET_APP_KEY: &str = "87654321";
/// The WDT seller account (`sid`) the simulator accepts by default.
pub const DEFAULT_SID: &str = "sim_sid";
/// The path of the router.
pub const ROUTER_PATH: &str = "/router/qm";
/// The one method the simulator serves.
pub const METHOD: &str = "wdt.stockout.order.query.trade";

/// The failure codes the simulator sends: `(code, message, sub_code, sub_message)`.
pub mod codes {
    /// A failure envelope's four texts.
    pub type Code = (&'static str, &'static str, &'static str, &'static str);
    /// Unknown or missing method.
    pub const BAD_METHOD: Code = ("22", "Invalid method", "isv.method-not-exist", "方法不存在");
    /// Unknown `app_key`.
    pub const BAD_APP_KEY: Code = (
        "29",
        "Invalid app Key",
        "isv.appkey-not-exists",
        "应用不存在",
    );
    /// Wrong signature or sign method.
    pub const BAD_SIGN: Code = (
        "25",
        "Invalid signature",
        "sign-check-failure",
        "Illegal request",
    );
    /// Missing timestamp or more than 10 minutes off.
    pub const BAD_TIMESTAMP: Code = (
        "31",
        "Invalid timestamp",
        "isv.invalid-timestamp",
        "timestamp 与服务器时间相差超过10分钟",
    );
    /// Unknown `target_app_key`.
    pub const BAD_TARGET_APP_KEY: Code = (
        "50",
        "Invalid target app key",
        "isv.invalid-target-app-key",
        "目标应用不存在或未授权",
    );
    /// `sid` not authorised for this app.
    pub const BAD_SID: Code = (
        "50",
        "Invalid sid",
        "isv.sid-not-authorized",
        "卖家账号未授权",
    );
    /// Too many calls.
    pub const RATE_LIMITED: Code = ("7", "App Call Limited", "1012", "系统调用频繁,请稍后再试");
    /// Window longer than 30 days.
    pub const WINDOW_TOO_LONG: Code = (
        "40",
        "Invalid arguments",
        "isv.invalid-parameter",
        "查询时间跨度不能超过30天",
    );
    /// Neither a window nor a number to look for.
    pub const NO_CRITERIA: Code = (
        "40",
        "Invalid arguments",
        "2900",
        "时间范围与订单编号不能全部为空",
    );
    /// Any other bad business parameter; the sub-message names it.
    pub const BAD_PARAMETER: Code = ("40", "Invalid arguments", "isv.invalid-parameter", "");
}

/// The credentials the simulator accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The caller's app key.
    pub app_key: String,
    /// The caller's app secret.
    pub app_secret: String,
    /// WDT's app key.
    pub target_app_key: String,
    /// The seller account.
    pub sid: String,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            app_key: DEFAULT_APP_KEY.into(),
            app_secret: DEFAULT_APP_SECRET.into(),
            target_app_key: DEFAULT_TARGET_APP_KEY.into(),
            sid: DEFAULT_SID.into(),
        }
    }
}

/// Behaviour that tests and the demo turn up and down while the simulator runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Added to every call, in milliseconds.
    pub latency_ms: u64,
    /// The share of calls answered with the `1012` rate-limit failure, 0 to 1.
    pub rate_limit_fraction: f64,
    /// The share of calls answered with HTTP 503, 0 to 1.
    pub server_error_fraction: f64,
    /// Calls per rolling minute before the `1012` failure; none for no limit.
    pub calls_per_minute: Option<u32>,
    /// An order becomes visible only once the real clock passes its consign time (modified time
    /// when unshipped) plus a seeded delay.
    pub live: bool,
    /// The largest such delay, in seconds.
    pub live_delay_max_secs: u64,
}

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct WdtSimConfig {
    /// The seed of the world, the orders and the injected failures.
    pub seed: u64,
    /// The master data; `World::generate(seed)` when none.
    pub world: Option<World>,
    /// The orders to generate at start; none for an empty simulator.
    pub orders: Option<OrderGenConfig>,
    /// The credentials accepted.
    pub credentials: Credentials,
    /// The knobs at start.
    pub knobs: Knobs,
}

impl WdtSimConfig {
    /// An empty simulator with the default credentials and no faults.
    pub fn new(seed: u64) -> WdtSimConfig {
        WdtSimConfig {
            seed,
            world: None,
            orders: None,
            credentials: Credentials::default(),
            knobs: Knobs::default(),
        }
    }

    /// Generates `count` orders consigned between `from` and `to` at start.
    pub fn with_orders(
        mut self,
        count: usize,
        from: DateTime<FixedOffset>,
        to: DateTime<FixedOffset>,
    ) -> WdtSimConfig {
        self.orders = Some(OrderGenConfig::new(self.seed, count, from, to));
        self
    }
}

/// One call as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// 1 for the first call.
    pub seq: u64,
    /// When it arrived, Beijing time.
    pub at: String,
    /// Every parameter, query string and body merged.
    pub params: BTreeMap<String, String>,
    /// `start_time`, as sent.
    pub start_time: Option<String>,
    /// `end_time`, as sent.
    pub end_time: Option<String>,
    /// `page_no`, when it parsed.
    pub page_no: Option<u32>,
    /// What the simulator answered.
    pub outcome: CallOutcome,
}

impl CallRecord {
    /// The window's length, when both ends parsed.
    pub fn window_span(&self) -> Option<chrono::Duration> {
        let start = parse_time(self.start_time.as_deref()?)?;
        Some(parse_time(self.end_time.as_deref()?)? - start)
    }
}

/// What the simulator answered one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallOutcome {
    /// A page of orders.
    Success {
        /// Orders on the page.
        returned: usize,
        /// Orders matching the query.
        total_count: usize,
    },
    /// A Qimen failure envelope.
    Failure {
        /// `code`.
        code: String,
        /// `sub_code`.
        sub_code: String,
        /// `sub_message`, or `message` when empty.
        message: String,
    },
    /// An HTTP error status with no envelope.
    HttpError {
        /// The status.
        status: u16,
    },
}

/// The orders the simulator holds, by `stockout_id`.
#[derive(Debug, Default)]
pub struct OrderBook {
    orders: BTreeMap<i64, StoredOrder>,
}

#[derive(Debug)]
struct StoredOrder {
    json: OrderJson,
    /// The order's live-mode delay as a share of `live_delay_max_secs`, in thousandths.
    live_delay_permille: u32,
}

impl OrderBook {
    /// One order.
    pub fn get(&self, stockout_id: i64) -> Option<&OrderJson> {
        self.orders.get(&stockout_id).map(|o| &o.json)
    }

    /// Every `stockout_id`, ascending.
    pub fn ids(&self) -> Vec<i64> {
        self.orders.keys().copied().collect()
    }

    /// How many orders.
    pub fn len(&self) -> usize {
        self.orders.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Changes one order in place; `false` when there is no such order.
    pub fn update(&mut self, stockout_id: i64, change: impl FnOnce(&mut OrderJson)) -> bool {
        match self.orders.get_mut(&stockout_id) {
            Some(order) => {
                change(&mut order.json);
                true
            }
            None => false,
        }
    }

    /// Removes one order; `false` when there is no such order.
    pub fn remove(&mut self, stockout_id: i64) -> bool {
        self.orders.remove(&stockout_id).is_some()
    }

    fn insert(&mut self, json: OrderJson, live_delay_permille: u32) -> Option<i64> {
        let id = json.get("stockout_id")?.as_i64()?;
        self.orders.insert(
            id,
            StoredOrder {
                json,
                live_delay_permille,
            },
        );
        Some(id)
    }
}

/// A hook run after each call with the order book, while the call's lock is held.
pub type CallHook = Box<dyn FnMut(&CallRecord, &mut OrderBook) + Send>;

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No order with this `stockout_id`.
    #[error("no order with stockout_id {0}")]
    NoSuchOrder(i64),
    /// No goods line with this `rec_id` in the order.
    #[error("order {stockout_id} has no goods line with rec_id {rec_id}")]
    NoSuchLine {
        /// The order.
        stockout_id: i64,
        /// The line asked for.
        rec_id: i64,
    },
    /// An order to add has no numeric `stockout_id`.
    #[error("an order to add has no numeric stockout_id")]
    MissingId,
}

/// The simulator's state, shared by the router, the admin endpoints and tests.
#[derive(Clone)]
pub struct WdtState {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    world: World,
    credentials: Credentials,
    knobs: Knobs,
    book: OrderBook,
    calls: Vec<CallRecord>,
    recent_calls: VecDeque<Instant>,
    rng: StdRng,
    hook: Option<CallHook>,
}

impl WdtState {
    /// Builds the state: the world, the generated orders, the knobs.
    pub fn new(config: WdtSimConfig) -> WdtState {
        let world = config.world.unwrap_or_else(|| World::generate(config.seed));
        let mut inner = Inner {
            credentials: config.credentials,
            knobs: config.knobs,
            book: OrderBook::default(),
            calls: Vec::new(),
            recent_calls: VecDeque::new(),
            rng: StdRng::seed_from_u64(config.seed ^ 0x5157_4454),
            hook: None,
            world,
        };
        if let Some(orders) = &config.orders {
            for order in generate_orders(&inner.world, orders) {
                inner.insert(order);
            }
        }
        WdtState {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (in a test's hook) must not hide every later answer.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The credentials accepted.
    pub fn credentials(&self) -> Credentials {
        self.lock().credentials.clone()
    }

    /// The world the orders come from.
    pub fn world(&self) -> World {
        self.lock().world.clone()
    }

    /// The knobs now.
    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }

    /// Replaces the knobs.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.lock().knobs = knobs;
    }

    /// One order.
    pub fn order(&self, stockout_id: i64) -> Option<OrderJson> {
        self.lock().book.get(stockout_id).cloned()
    }

    /// Every order, by `stockout_id`.
    pub fn orders(&self) -> Vec<OrderJson> {
        self.lock()
            .book
            .orders
            .values()
            .map(|o| o.json.clone())
            .collect()
    }

    /// Adds (or replaces) orders; each must carry a numeric `stockout_id`.
    pub fn add_orders(&self, orders: Vec<OrderJson>) -> Result<Vec<i64>, AdminError> {
        if orders
            .iter()
            .any(|o| o.get("stockout_id").and_then(Value::as_i64).is_none())
        {
            return Err(AdminError::MissingId);
        }
        let mut inner = self.lock();
        Ok(orders
            .into_iter()
            .filter_map(|order| inner.insert(order))
            .collect())
    }

    /// Generates `count` more shipped orders consigned between `from` and `to`, with new ids.
    pub fn generate(
        &self,
        count: usize,
        from: DateTime<FixedOffset>,
        to: DateTime<FixedOffset>,
    ) -> Vec<i64> {
        let mut inner = self.lock();
        let first = inner
            .book
            .orders
            .keys()
            .next_back()
            .map_or(58_001, |last| last + 1);
        let seed = inner.rng.random();
        let config = OrderGenConfig {
            first_stockout_id: first,
            unshipped_fraction: 0.0,
            ..OrderGenConfig::new(seed, count, from, to)
        };
        let orders = generate_orders(&inner.world, &config);
        orders
            .into_iter()
            .filter_map(|order| inner.insert(order))
            .collect()
    }

    /// Generates one shipped order with `stockout_id`, consigned at `consign_time`.
    pub fn generate_one(&self, stockout_id: i64, consign_time: DateTime<FixedOffset>) -> OrderJson {
        let mut inner = self.lock();
        let mut rng = StdRng::seed_from_u64(inner.rng.random());
        let order = generate_order(&inner.world, &mut rng, stockout_id, consign_time, true);
        inner.insert(order.clone());
        order
    }

    /// Overwrites header fields and fields of goods lines (by `rec_id`) of one order.
    pub fn modify_order(
        &self,
        stockout_id: i64,
        change: &OrderChange,
    ) -> Result<OrderJson, AdminError> {
        let mut inner = self.lock();
        let order = inner
            .book
            .orders
            .get_mut(&stockout_id)
            .ok_or(AdminError::NoSuchOrder(stockout_id))?;
        for rec_id in change.details.keys() {
            if find_line(&order.json, *rec_id).is_none() {
                return Err(AdminError::NoSuchLine {
                    stockout_id,
                    rec_id: *rec_id,
                });
            }
        }
        for (rec_id, fields) in &change.details {
            if let Some(line) = find_line_mut(&mut order.json, *rec_id) {
                line.extend(fields.clone());
            }
        }
        if !change.details.is_empty() {
            recompute_totals(&mut order.json);
        }
        order.json.extend(change.set.clone());
        Ok(order.json.clone())
    }

    /// Changes one order with a closure; `false` when there is no such order.
    pub fn update_order(&self, stockout_id: i64, change: impl FnOnce(&mut OrderJson)) -> bool {
        self.lock().book.update(stockout_id, change)
    }

    /// Removes one order.
    pub fn remove_order(&self, stockout_id: i64) -> Result<(), AdminError> {
        if self.lock().book.remove(stockout_id) {
            Ok(())
        } else {
            Err(AdminError::NoSuchOrder(stockout_id))
        }
    }

    /// Removes one goods line; the header's counts follow and `modified` becomes now.
    pub fn remove_line(&self, stockout_id: i64, rec_id: i64) -> Result<OrderJson, AdminError> {
        let mut inner = self.lock();
        let order = inner
            .book
            .orders
            .get_mut(&stockout_id)
            .ok_or(AdminError::NoSuchOrder(stockout_id))?;
        let lines = order
            .json
            .get_mut("details_list")
            .and_then(Value::as_array_mut);
        let Some(lines) = lines else {
            return Err(AdminError::NoSuchLine {
                stockout_id,
                rec_id,
            });
        };
        let before = lines.len();
        lines.retain(|line| line.get("rec_id").and_then(Value::as_i64) != Some(rec_id));
        if lines.len() == before {
            return Err(AdminError::NoSuchLine {
                stockout_id,
                rec_id,
            });
        }
        recompute_totals(&mut order.json);
        order
            .json
            .insert("modified".into(), json!(format_time(&now_beijing())));
        Ok(order.json.clone())
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    /// Forgets the calls so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Runs `hook` after every call, with the order book, until [`WdtState::clear_hook`].
    pub fn set_after_call_hook(
        &self,
        hook: impl FnMut(&CallRecord, &mut OrderBook) + Send + 'static,
    ) {
        self.lock().hook = Some(Box::new(hook));
    }

    /// Removes the hook.
    pub fn clear_hook(&self) {
        self.lock().hook = None;
    }
}

/// A change of one order through the admin API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderChange {
    /// Header fields to overwrite (`modified`, `consign_time`, `status`…).
    pub set: Map<String, Value>,
    /// Fields to overwrite in goods lines, by `rec_id` (`goods_count`…); header counts follow.
    pub details: BTreeMap<i64, Map<String, Value>>,
}

fn find_line(order: &OrderJson, rec_id: i64) -> Option<&Map<String, Value>> {
    order
        .get("details_list")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|line| line.get("rec_id").and_then(Value::as_i64) == Some(rec_id))
}

fn find_line_mut(order: &mut OrderJson, rec_id: i64) -> Option<&mut Map<String, Value>> {
    order
        .get_mut("details_list")?
        .as_array_mut()?
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|line| line.get("rec_id").and_then(Value::as_i64) == Some(rec_id))
}

/// Keeps the header's `goods_count` and `goods_type_count` equal to its lines'.
fn recompute_totals(order: &mut OrderJson) {
    let lines = order
        .get("details_list")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let count: Decimal = lines
        .iter()
        .map(|line| decimal_of(&line["goods_count"]))
        .sum();
    order.insert("goods_count".into(), money(count));
    order.insert("goods_type_count".into(), json!(lines.len()));
}

impl Inner {
    fn insert(&mut self, order: OrderJson) -> Option<i64> {
        let delay_permille = self.rng.random_range(0..=1000);
        self.book.insert(order, delay_permille)
    }
}

// ---------------------------------------------------------------------------------------------
// The router.

/// An answer before it becomes HTTP.
enum Answer {
    Page {
        total_count: usize,
        orders: Vec<Value>,
    },
    Failure {
        code: codes::Code,
        detail: Option<String>,
    },
    Http(StatusCode),
}

impl Answer {
    fn failure(code: codes::Code) -> Answer {
        Answer::Failure { code, detail: None }
    }

    fn outcome(&self) -> CallOutcome {
        match self {
            Answer::Page {
                total_count,
                orders,
            } => CallOutcome::Success {
                returned: orders.len(),
                total_count: *total_count,
            },
            Answer::Failure { code, detail } => CallOutcome::Failure {
                code: code.0.into(),
                sub_code: code.2.into(),
                message: detail.clone().unwrap_or_else(|| code.3.into()),
            },
            Answer::Http(status) => CallOutcome::HttpError {
                status: status.as_u16(),
            },
        }
    }

    fn into_response(self) -> Response {
        match self {
            Answer::Page {
                total_count,
                orders,
            } => Json(json!({
                "response": {
                    "errorcode": 0,
                    "message": "",
                    "total_count": total_count,
                    "stockout_list": orders,
                }
            }))
            .into_response(),
            Answer::Failure { code, detail } => Json(json!({
                "response": {
                    "flag": "failure",
                    "code": code.0,
                    "message": code.1,
                    "sub_code": code.2,
                    "sub_message": detail.unwrap_or_else(|| code.3.to_owned()),
                }
            }))
            .into_response(),
            Answer::Http(status) => {
                (status, "<html><body>service unavailable</body></html>").into_response()
            }
        }
    }
}

async fn route(State(state): State<WdtState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let latency_ms = state.knobs().latency_ms;
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let mut params = BTreeMap::new();
    let query_pairs =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""));
    let body_pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body);
    let (Ok(query_pairs), Ok(body_pairs)) = (query_pairs, body_pairs) else {
        return (StatusCode::BAD_REQUEST, "malformed form").into_response();
    };
    params.extend(query_pairs);
    params.extend(body_pairs);

    let mut inner = state.lock();
    let answer = inner.answer(&params);
    let record = CallRecord {
        seq: inner.calls.len() as u64 + 1,
        at: format_time(&now_beijing()),
        start_time: params.get("start_time").cloned(),
        end_time: params.get("end_time").cloned(),
        page_no: params.get("page_no").and_then(|p| p.parse().ok()),
        outcome: answer.outcome(),
        params,
    };
    tracing::debug!(seq = record.seq, outcome = ?record.outcome, "Simulated a WDT call");
    if let Some(mut hook) = inner.hook.take() {
        hook(&record, &mut inner.book);
        // Unless the hook replaced itself, keep it for the next call.
        inner.hook.get_or_insert(hook);
    }
    inner.calls.push(record);
    drop(inner);
    answer.into_response()
}

impl Inner {
    fn answer(&mut self, params: &BTreeMap<String, String>) -> Answer {
        if self
            .rng
            .random_bool(self.knobs.server_error_fraction.clamp(0.0, 1.0))
        {
            return Answer::Http(StatusCode::SERVICE_UNAVAILABLE);
        }
        if let Err(code) = self.authenticate(params) {
            return Answer::failure(code);
        }
        if self.rate_limited() {
            return Answer::failure(codes::RATE_LIMITED);
        }
        match Query::parse(params) {
            Ok(query) => self.page(&query),
            Err(failure) => failure,
        }
    }

    fn authenticate(&self, params: &BTreeMap<String, String>) -> Result<(), codes::Code> {
        let param = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
        let credentials = &self.credentials;
        if param("method") != METHOD {
            return Err(codes::BAD_METHOD);
        }
        if param("app_key") != credentials.app_key {
            return Err(codes::BAD_APP_KEY);
        }
        let expected = expected_sign(params, &credentials.app_secret).ok_or(codes::BAD_SIGN)?;
        if !expected.eq_ignore_ascii_case(param("sign")) {
            return Err(codes::BAD_SIGN);
        }
        let fresh = parse_time(param("timestamp"))
            .is_some_and(|sent| (now_beijing() - sent).num_seconds().abs() <= 600);
        if !fresh {
            return Err(codes::BAD_TIMESTAMP);
        }
        if param("target_app_key") != credentials.target_app_key {
            return Err(codes::BAD_TARGET_APP_KEY);
        }
        if param("sid") != credentials.sid {
            return Err(codes::BAD_SID);
        }
        Ok(())
    }

    fn rate_limited(&mut self) -> bool {
        if self
            .rng
            .random_bool(self.knobs.rate_limit_fraction.clamp(0.0, 1.0))
        {
            return true;
        }
        let Some(limit) = self.knobs.calls_per_minute else {
            return false;
        };
        let now = Instant::now();
        while self
            .recent_calls
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.recent_calls.pop_front();
        }
        if self.recent_calls.len() >= limit as usize {
            return true;
        }
        self.recent_calls.push_back(now);
        false
    }

    fn page(&self, query: &Query) -> Answer {
        let now = now_beijing();
        let matching: Vec<&StoredOrder> = self
            .book
            .orders
            .values()
            .filter(|order| query.matches(&order.json))
            .filter(|order| {
                !self.knobs.live || visible(order, self.knobs.live_delay_max_secs, &now)
            })
            .collect();
        let start = (query.page_no as usize).saturating_mul(query.page_size as usize);
        let orders = matching
            .iter()
            .skip(start)
            .take(query.page_size as usize)
            .map(|order| Value::Object(order.json.clone()))
            .collect();
        Answer::Page {
            total_count: matching.len(),
            orders,
        }
    }
}

/// Whether live mode shows the order yet: its consign (or modified) time plus its delay has passed.
fn visible(order: &StoredOrder, delay_max_secs: u64, now: &DateTime<FixedOffset>) -> bool {
    let time = |field: &str| {
        order
            .json
            .get(field)
            .and_then(Value::as_str)
            .and_then(parse_time)
    };
    let delay_ms = delay_max_secs.saturating_mul(u64::from(order.live_delay_permille));
    match time("consign_time").or_else(|| time("modified")) {
        Some(at) => at + chrono::Duration::milliseconds(delay_ms as i64) <= *now,
        None => true,
    }
}

/// The signature the caller should have sent, computed here and not by the client crate.
fn expected_sign(params: &BTreeMap<String, String>, secret: &str) -> Option<String> {
    // A BTreeMap iterates in byte order of the keys, which is the order the signature needs.
    let joined: String = params
        .iter()
        .filter(|(key, value)| key.as_str() != "sign" && !key.is_empty() && !value.is_empty())
        .map(|(key, value)| format!("{key}{value}"))
        .collect();
    let digest = match params.get("sign_method").map(String::as_str) {
        Some("md5") | None => {
            let mut md5 = Md5::new();
            md5.update(format!("{secret}{joined}{secret}").as_bytes());
            md5.finalize().to_vec()
        }
        Some("hmac") => {
            let mut mac = hmac::Hmac::<Md5>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(joined.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Some("hmac-sha256") => {
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(joined.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Some(_) => return None,
    };
    Some(digest.iter().map(|byte| format!("{byte:02X}")).collect())
}

/// A query window, both ends inclusive.
type Span = (DateTime<FixedOffset>, DateTime<FixedOffset>);

/// The business parameters of one call, checked.
struct Query {
    window: Option<Span>,
    by_modified: bool,
    status: Option<i64>,
    numbers: Vec<(&'static str, String)>,
    page_no: u32,
    page_size: u32,
}

impl Query {
    fn parse(params: &BTreeMap<String, String>) -> Result<Query, Answer> {
        let bad = |detail: String| Answer::Failure {
            code: codes::BAD_PARAMETER,
            detail: Some(detail),
        };
        let param = |key: &str| {
            params
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let number = |key: &str, default: u32| -> Result<u32, Answer> {
            param(key).map_or(Ok(default), |v| {
                v.parse().map_err(|_| bad(format!("{key}不合法: {v}")))
            })
        };
        let page_no = number("page_no", 0)?;
        let page_size = number("page_size", 40)?;
        if !(1..=100).contains(&page_size) {
            return Err(bad(format!("page_size必须在1到100之间: {page_size}")));
        }
        let status = match param("status") {
            Some(v) => Some(
                v.parse::<i64>()
                    .map_err(|_| bad(format!("status不合法: {v}")))?,
            ),
            None => None,
        };
        let numbers: Vec<(&'static str, String)> = [
            "stockout_no",
            "src_order_no",
            "src_tid",
            "shop_no",
            "warehouse_no",
        ]
        .into_iter()
        .filter_map(|key| param(key).map(|v| (key, v.to_owned())))
        .collect();
        let window = Query::window(param("start_time"), param("end_time"))?;
        let looks_up_a_number = numbers
            .iter()
            .any(|(key, _)| matches!(*key, "stockout_no" | "src_order_no" | "src_tid"));
        if window.is_none() && !looks_up_a_number {
            return Err(Answer::failure(codes::NO_CRITERIA));
        }
        // WDT's own rule: a status below 95 is looked up by modified time.
        let by_modified = param("is_by_modified") == Some("1") || status.is_some_and(|s| s < 95);
        Ok(Query {
            window,
            by_modified,
            status,
            numbers,
            page_no,
            page_size,
        })
    }

    fn window(start: Option<&str>, end: Option<&str>) -> Result<Option<Span>, Answer> {
        let bad = |detail: &str| Answer::Failure {
            code: codes::BAD_PARAMETER,
            detail: Some(detail.into()),
        };
        let (start, end) = match (start, end) {
            (None, None) => return Ok(None),
            (Some(start), Some(end)) => (start, end),
            _ => return Err(bad("start_time与end_time必须同时提供")),
        };
        let (Some(start), Some(end)) = (parse_time(start), parse_time(end)) else {
            return Err(bad("时间格式错误,应为yyyy-MM-dd HH:mm:ss"));
        };
        if end < start {
            return Err(bad("end_time不能早于start_time"));
        }
        if end - start > chrono::Duration::days(30) {
            return Err(Answer::failure(codes::WINDOW_TOO_LONG));
        }
        Ok(Some((start, end)))
    }

    fn matches(&self, order: &OrderJson) -> bool {
        let text = |field: &str| match order.get(field) {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let status = order.get("status").and_then(Value::as_i64).unwrap_or(0);
        let status_ok = match self.status {
            Some(wanted) => status == wanted,
            None => status >= 95,
        };
        if !status_ok
            || self
                .numbers
                .iter()
                .any(|(key, value)| !number_matches(order, key, value, &text))
        {
            return false;
        }
        let Some((start, end)) = self.window else {
            return true;
        };
        let field = if self.by_modified {
            "modified"
        } else {
            "consign_time"
        };
        parse_time(&text(field)).is_some_and(|at| start <= at && at <= end)
    }
}

fn number_matches(
    order: &OrderJson,
    key: &str,
    wanted: &str,
    text: &impl Fn(&str) -> String,
) -> bool {
    match key {
        // The platform order number sits on the goods lines (and in the header's `src_tids`).
        "src_tid" => {
            text("src_tids").split(',').any(|tid| tid == wanted)
                || order
                    .get("details_list")
                    .and_then(Value::as_array)
                    .is_some_and(|lines| {
                        lines
                            .iter()
                            .any(|line| line.get("src_tid").and_then(Value::as_str) == Some(wanted))
                    })
        }
        "stockout_no" => text("stockout_no") == wanted || text("order_no") == wanted,
        _ => text(key) == wanted,
    }
}

// ---------------------------------------------------------------------------------------------
// The admin endpoints.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOrders {
    #[serde(default)]
    orders: Vec<OrderJson>,
    #[serde(default)]
    generate: Option<Generate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Generate {
    count: usize,
    consign_from: String,
    consign_to: String,
}

fn admin_error(error: AdminError) -> Response {
    let status = match error {
        AdminError::MissingId => StatusCode::BAD_REQUEST,
        _ => StatusCode::NOT_FOUND,
    };
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

async fn list_orders(State(state): State<WdtState>) -> Json<Vec<OrderJson>> {
    Json(state.orders())
}

async fn get_order(State(state): State<WdtState>, Path(id): Path<i64>) -> Response {
    match state.order(id) {
        Some(order) => Json(order).into_response(),
        None => admin_error(AdminError::NoSuchOrder(id)),
    }
}

async fn add_orders(State(state): State<WdtState>, Json(add): Json<AddOrders>) -> Response {
    let mut added = match state.add_orders(add.orders) {
        Ok(ids) => ids,
        Err(error) => return admin_error(error),
    };
    if let Some(generate) = add.generate {
        let (Some(from), Some(to)) = (
            parse_time(&generate.consign_from),
            parse_time(&generate.consign_to),
        ) else {
            let error =
                json!({ "error": "consign_from and consign_to must be yyyy-MM-dd HH:mm:ss" });
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        };
        added.extend(state.generate(generate.count, from, to));
    }
    Json(json!({ "added": added })).into_response()
}

async fn modify_order(
    State(state): State<WdtState>,
    Path(id): Path<i64>,
    Json(change): Json<OrderChange>,
) -> Response {
    match state.modify_order(id, &change) {
        Ok(order) => Json(order).into_response(),
        Err(error) => admin_error(error),
    }
}

async fn remove_order(State(state): State<WdtState>, Path(id): Path<i64>) -> Response {
    match state.remove_order(id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => admin_error(error),
    }
}

async fn remove_line(
    State(state): State<WdtState>,
    Path((id, rec_id)): Path<(i64, i64)>,
) -> Response {
    match state.remove_line(id, rec_id) {
        Ok(order) => Json(order).into_response(),
        Err(error) => admin_error(error),
    }
}

async fn list_calls(State(state): State<WdtState>) -> Json<Vec<CallRecord>> {
    Json(state.calls())
}

async fn clear_calls(State(state): State<WdtState>) -> StatusCode {
    state.clear_calls();
    StatusCode::NO_CONTENT
}

async fn get_knobs(State(state): State<WdtState>) -> Json<Knobs> {
    Json(state.knobs())
}

async fn put_knobs(State(state): State<WdtState>, Json(knobs): Json<Knobs>) -> Json<Knobs> {
    state.set_knobs(knobs.clone());
    Json(knobs)
}

/// The router: `/router/qm` and the admin endpoints under `/admin/wdt/`.
pub fn router(state: WdtState) -> Router {
    Router::new()
        .route(ROUTER_PATH, get(route).post(route))
        .route("/admin/wdt/orders", get(list_orders).post(add_orders))
        .route(
            "/admin/wdt/orders/{id}",
            get(get_order).patch(modify_order).delete(remove_order),
        )
        .route(
            "/admin/wdt/orders/{id}/details/{rec_id}",
            delete(remove_line),
        )
        .route("/admin/wdt/calls", get(list_calls).delete(clear_calls))
        .route("/admin/wdt/knobs", get(get_knobs).put(put_knobs))
        .with_state(state)
}

/// A running simulator, stopped when dropped.
pub struct WdtSimulator {
    addr: SocketAddr,
    state: WdtState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WdtSimulator {
    /// Starts the simulator on a free port of 127.0.0.1.
    pub async fn start(config: WdtSimConfig) -> std::io::Result<WdtSimulator> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        WdtSimulator::serve(listener, WdtState::new(config))
    }

    /// Serves `state` on `listener`.
    pub fn serve(listener: TcpListener, state: WdtState) -> std::io::Result<WdtSimulator> {
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::error!(%error, "WDT simulator stopped");
            }
        });
        Ok(WdtSimulator {
            addr,
            state,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The router URL, `http://127.0.0.1:<port>/router/qm`.
    pub fn url(&self) -> String {
        format!("http://{}{ROUTER_PATH}", self.addr)
    }

    /// `http://127.0.0.1:<port>`, the base of the admin endpoints.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state, to change orders and knobs and read the call log.
    pub fn state(&self) -> &WdtState {
        &self.state
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for WdtSimulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use crate::orders::parse_cli_time;

    fn v4(sign_method: &str) -> BTreeMap<String, String> {
        [
            ("method", METHOD),
            ("app_key", "12345678"),
            ("target_app_key", "87654321"),
            ("timestamp", "2024-05-01 12:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", sign_method),
            ("sid", "demo_sid"),
            ("start_time", "2024-05-01 00:00:00"),
            ("end_time", "2024-05-01 23:59:59"),
            ("is_by_modified", "1"),
            ("page_no", "0"),
            ("page_size", "100"),
            ("status", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn own_signature_check_agrees_with_the_reference_vectors() {
        let secret = "qm_demo_secret";
        assert_eq!(
            expected_sign(&v4("md5"), secret).unwrap(),
            "4708216DA3E0A93F84B4C602B9A30FE1"
        );
        assert_eq!(
            expected_sign(&v4("hmac"), secret).unwrap(),
            "DAAB61464F39965FE7A82312C2CE89ED"
        );
        assert_eq!(
            expected_sign(&v4("hmac-sha256"), secret).unwrap(),
            "6108B63E2F992E53956F0C6566B6CC8351C6BC983D291D1F57BF21CD33141F5B"
        );
        assert_eq!(expected_sign(&v4("sha1"), secret), None);
    }

    fn state(count: usize) -> WdtState {
        let from = parse_cli_time("2024-05-01 00:00:00").unwrap();
        let to = parse_cli_time("2024-05-20 23:59:59").unwrap();
        WdtState::new(WdtSimConfig::new(5).with_orders(count, from, to))
    }

    /// A correctly signed call with the default credentials and `business` parameters.
    fn call(state: &WdtState, business: &[(&str, &str)]) -> Answer {
        let mut params: BTreeMap<String, String> = [
            ("method", METHOD),
            ("app_key", DEFAULT_APP_KEY),
            ("target_app_key", DEFAULT_TARGET_APP_KEY),
            ("sid", DEFAULT_SID),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", "md5"),
        ]
        .into_iter()
        .chain(business.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params
            .entry("timestamp".into())
            .or_insert_with(|| format_time(&now_beijing()));
        let sign = expected_sign(&params, DEFAULT_APP_SECRET).unwrap();
        params.entry("sign".into()).or_insert(sign);
        state.lock().answer(&params)
    }

    fn failure_code(answer: &Answer) -> Option<&'static str> {
        match answer {
            Answer::Failure { code, .. } => Some(code.2),
            _ => None,
        }
    }

    fn page(answer: Answer) -> (usize, Vec<Value>) {
        match answer {
            Answer::Page {
                total_count,
                orders,
            } => (total_count, orders),
            other => panic!("expected a page, got {:?}", other.outcome()),
        }
    }

    const MAY: [(&str, &str); 2] = [
        ("start_time", "2024-05-01 00:00:00"),
        ("end_time", "2024-05-30 23:59:59"),
    ];

    #[test]
    fn pages_from_zero_with_total_count_on_every_page() {
        let state = state(250);
        let shipped = state
            .orders()
            .iter()
            .filter(|o| o["status"].as_i64() >= Some(95))
            .count();
        let mut seen = Vec::new();
        for page_no in ["0", "1", "2", "3"] {
            let (total, orders) = page(call(
                &state,
                &[MAY[0], MAY[1], ("page_no", page_no), ("page_size", "100")],
            ));
            assert_eq!(total, shipped);
            seen.extend(orders.iter().map(|o| o["stockout_id"].as_i64().unwrap()));
        }
        assert_eq!(seen.len(), shipped);
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn refuses_windows_over_30_days_bad_pages_and_stale_timestamps() {
        let state = state(10);
        let long = call(
            &state,
            &[
                ("start_time", "2024-05-01 00:00:00"),
                ("end_time", "2024-05-31 00:00:01"),
            ],
        );
        assert_eq!(failure_code(&long), Some(codes::WINDOW_TOO_LONG.2));
        let exactly = call(
            &state,
            &[
                ("start_time", "2024-05-01 00:00:00"),
                ("end_time", "2024-05-31 00:00:00"),
            ],
        );
        assert_eq!(failure_code(&exactly), None);
        let big = call(&state, &[MAY[0], MAY[1], ("page_size", "101")]);
        assert_eq!(failure_code(&big), Some(codes::BAD_PARAMETER.2));
        let stale = call(
            &state,
            &[MAY[0], MAY[1], ("timestamp", "2024-05-01 12:00:00")],
        );
        assert_eq!(failure_code(&stale), Some(codes::BAD_TIMESTAMP.2));
        assert_eq!(failure_code(&call(&state, &[])), Some(codes::NO_CRITERIA.2));
    }

    #[test]
    fn refuses_wrong_credentials_by_name() {
        let state = state(1);
        state.lock().credentials.target_app_key = "other".into();
        assert_eq!(
            failure_code(&call(&state, &MAY)),
            Some(codes::BAD_TARGET_APP_KEY.2)
        );
        state.lock().credentials = Credentials {
            sid: "other".into(),
            ..Credentials::default()
        };
        assert_eq!(failure_code(&call(&state, &MAY)), Some(codes::BAD_SID.2));
        state.lock().credentials = Credentials {
            app_secret: "other".into(),
            ..Credentials::default()
        };
        assert_eq!(failure_code(&call(&state, &MAY)), Some(codes::BAD_SIGN.2));
    }

    #[test]
    fn filters_on_consign_or_modified_time_status_and_numbers() {
        let state = state(0);
        let order = state.generate_one(1, parse_cli_time("2024-05-10 10:00:00").unwrap());
        state.update_order(1, |o| {
            o.insert("modified".into(), json!("2024-06-20 08:00:00"));
            o.insert("status".into(), json!(95));
        });
        let june = [
            ("start_time", "2024-06-15 00:00:00"),
            ("end_time", "2024-06-30 00:00:00"),
        ];
        assert_eq!(page(call(&state, &MAY)).0, 1);
        assert_eq!(page(call(&state, &june)).0, 0);
        assert_eq!(
            page(call(&state, &[june[0], june[1], ("is_by_modified", "1")])).0,
            1
        );
        assert_eq!(
            page(call(&state, &[MAY[0], MAY[1], ("status", "110")])).0,
            0
        );
        let shop = order["shop_no"].as_str().unwrap();
        assert_eq!(
            page(call(&state, &[MAY[0], MAY[1], ("shop_no", shop)])).0,
            1
        );
        assert_eq!(
            page(call(&state, &[MAY[0], MAY[1], ("warehouse_no", "nowhere")])).0,
            0
        );
        let number = order["stockout_no"].as_str().unwrap();
        assert_eq!(page(call(&state, &[("stockout_no", number)])).0, 1);
    }

    #[test]
    fn live_mode_hides_orders_until_their_time() {
        let state = state(0);
        state.generate_one(1, now_beijing() + chrono::Duration::hours(1));
        state.generate_one(2, now_beijing() - chrono::Duration::hours(1));
        state.set_knobs(Knobs {
            live: true,
            live_delay_max_secs: 60,
            ..Knobs::default()
        });
        let start = format_time(&(now_beijing() - chrono::Duration::days(1)));
        let end = format_time(&(now_beijing() + chrono::Duration::days(1)));
        let (total, orders) = page(call(&state, &[("start_time", &start), ("end_time", &end)]));
        assert_eq!((total, orders[0]["stockout_id"].as_i64()), (1, Some(2)));
    }

    #[test]
    fn removing_a_line_keeps_the_header_counts() {
        let state = state(0);
        let order = state.generate_one(7, parse_cli_time("2024-05-10 10:00:00").unwrap());
        let lines = order["details_list"].as_array().unwrap();
        let rec_id = lines[0]["rec_id"].as_i64().unwrap();
        let after = state.remove_line(7, rec_id).unwrap();
        assert_eq!(after["goods_type_count"], json!(lines.len() - 1));
        assert_eq!(
            state.remove_line(7, rec_id),
            Err(AdminError::NoSuchLine {
                stockout_id: 7,
                rec_id
            })
        );
        let change = OrderChange {
            set: Map::from_iter([("status".into(), json!(110))]),
            ..OrderChange::default()
        };
        assert_eq!(
            state.modify_order(7, &change).unwrap()["status"],
            json!(110)
        );
        assert_eq!(
            state.modify_order(8, &change),
            Err(AdminError::NoSuchOrder(8))
        );
    }
}
