//! The transformer against a private nats-server and the 星辰 simulator, both on free ports: raw
//! orders generated from the simulator's world go in, and the bills (or dead letters) that come
//! out are checked against what the test computes itself from the order and 星辰's master data.

#![allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::message::StreamMessage;
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use pipeline::dead_letter::{DeadLetter, ReasonKind};
use pipeline::masterdata::MasterDataCache;
use pipeline::message::{self, OrderIdentity, TraceContext, header};
use pipeline::publisher::Publisher;
use pipeline::worker::RunReport;
use pipeline::{Stage, Topology, TopologyConfig};
use rust_decimal::Decimal;
use scheme::Collection;
use serde_json::{Value, json};
use simulator::orders::{OrderGenConfig, OrderJson, generate_orders, parse_cli_time};
use simulator::world::World;
use simulator::xingchen::{SimMaterial, SimulatorConfig, XingchenSimulator, defaults};
use test_support::NatsServer;
use test_support::process::{Process, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use transformer::resolve::cache_lookup;
use transformer::{Transformer, TransformerConfig, heartbeat};
use xingchen::{Secret, XingchenConfig};

const WAIT: Duration = Duration::from_secs(60);
const MATERIAL_DETAIL: &str = "/jdy/basedata/material_detail";
const CUSTOMER_DETAIL: &str = "/jdy/basedata/customer_detail";
const STORE_DETAIL: &str = "/jdy/basedata/store_detail";

/// A nats-server, a 星辰 simulator, and the topology the transformer will use.
struct Harness {
    _nats: NatsServer,
    nats_url: String,
    world: World,
    xingchen: XingchenSimulator,
    topology_config: TopologyConfig,
    topology: Topology,
}

impl Harness {
    async fn start(seed: u64) -> Harness {
        Harness::start_with(seed, TopologyConfig::default()).await
    }

    async fn start_with(seed: u64, topology_config: TopologyConfig) -> Harness {
        let nats = NatsServer::start();
        let world = World::generate(seed);
        let xingchen = XingchenSimulator::start(&world, SimulatorConfig::default())
            .await
            .unwrap();
        let client = nats.connect().await;
        let jetstream = async_nats::jetstream::new(client);
        let topology = pipeline::ensure_topology(&jetstream, &topology_config)
            .await
            .unwrap();
        Harness {
            nats_url: nats.url(),
            _nats: nats,
            world,
            xingchen,
            topology_config,
            topology,
        }
    }

    fn xingchen_config(&self) -> XingchenConfig {
        let mut config = XingchenConfig::new(
            self.xingchen.url(),
            defaults::CLIENT_ID.to_owned(),
            Secret::new(defaults::CLIENT_SECRET),
            defaults::OUTER_INSTANCE_ID.to_owned(),
        );
        // One attempt per call: a failing 星辰 shows as a retried message, not a slow one.
        config.retry_attempts = 1;
        config.retry_min_delay = Duration::from_millis(10);
        config.retry_max_delay = Duration::from_millis(50);
        config.timeout = Duration::from_secs(5);
        config
    }

    fn transformer_config(&self) -> TransformerConfig {
        let mut config = TransformerConfig::new(&self.nats_url, self.xingchen_config());
        config.topology = self.topology_config.clone();
        config.pull.backoff = vec![Duration::from_millis(50)];
        config.pull.expires = Duration::from_secs(2);
        config.pull.heartbeat = Duration::from_secs(1);
        config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.heartbeat_interval = Duration::from_millis(200);
        config
    }

    async fn spawn(&self, config: TransformerConfig) -> Running {
        let transformer = Transformer::start(config).await.unwrap();
        let health = transformer.health_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(transformer.run(shutdown.clone()));
        Running {
            shutdown,
            task,
            health,
        }
    }

    fn orders(&self, seed: u64, count: usize) -> Vec<OrderJson> {
        let from = parse_cli_time("2024-05-01 00:00:00").unwrap();
        let to = parse_cli_time("2024-05-09 23:59:59").unwrap();
        let config = OrderGenConfig {
            unshipped_fraction: 0.0,
            ..OrderGenConfig::new(seed, count, from, to)
        };
        generate_orders(&self.world, &config)
    }

    async fn publish(&self, orders: &[OrderJson]) {
        let publisher = Publisher::new(self.topology.jetstream.clone());
        for order in orders {
            let raw = Bytes::from(serde_json::to_vec(order).unwrap());
            let message = message::raw_order_message(
                &self.topology.names,
                &identity(order),
                raw,
                &TraceContext::default(),
            )
            .unwrap();
            publisher.publish(message).await.unwrap();
        }
    }

    async fn stream_messages(&self, stream: &str) -> Vec<StreamMessage> {
        let mut stream = self.topology.jetstream.get_stream(stream).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return messages;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                messages.push(message);
            }
        }
        messages
    }

    async fn bills(&self) -> Vec<StreamMessage> {
        self.stream_messages(&self.topology.names.bills_stream())
            .await
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let messages = self
            .stream_messages(&self.topology.names.dlq_stream())
            .await;
        messages
            .into_iter()
            .map(|m| DeadLetter::from_message(&m.headers, m.payload).unwrap())
            .collect()
    }

    /// Waits until `count` orders have reached a bill or a dead letter and nothing is pending.
    async fn settled(&self, count: usize) -> (Vec<StreamMessage>, Vec<DeadLetter>) {
        eventually(
            &format!("{count} orders to become bills or dead letters"),
            WAIT,
            || async {
                let bills = self.bills().await;
                let dead = self.dead_letters().await;
                let info = self.topology.transformer.clone().info().await.ok()?.clone();
                let idle = info.num_pending == 0 && info.num_ack_pending == 0;
                (idle && bills.len() + dead.len() >= count).then_some((bills, dead))
            },
        )
        .await
    }

    fn calls(&self, endpoint: &str) -> usize {
        let log = self.xingchen.state().log();
        log.iter()
            .filter(|entry| entry.endpoint == endpoint)
            .count()
    }

    fn masterdata(&self) -> MasterData {
        let state = self.xingchen.state();
        MasterData {
            customers: state
                .customers()
                .into_iter()
                .map(|c| (c.number, c.id))
                .collect(),
            materials: state
                .materials()
                .into_iter()
                .map(|m| (m.number, (m.id, m.base_unit_id)))
                .collect(),
            stores: state
                .stores()
                .into_iter()
                .map(|s| (s.number, s.id))
                .collect(),
        }
    }

    fn xingchen_client(&self) -> xingchen::Client {
        xingchen::Client::new(self.xingchen_config()).unwrap()
    }
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<RunReport>>,
    health: SocketAddr,
}

impl Running {
    async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        let report = tokio::time::timeout(WAIT, self.task).await;
        report.unwrap().unwrap().unwrap()
    }
}

fn identity(order: &OrderJson) -> OrderIdentity {
    OrderIdentity {
        stockout_id: order["stockout_id"].to_string(),
        stockout_no: order["stockout_no"].as_str().unwrap().to_owned(),
        modified: message::parse_modified(order["modified"].as_str().unwrap()).unwrap(),
    }
}

/// The same order under another id and number, as a second order of the same goods.
fn renumbered(order: &OrderJson, suffix: &str) -> OrderJson {
    let mut order = order.clone();
    let id = order["stockout_id"].as_i64().unwrap();
    order.insert("stockout_id".into(), json!(id * 1000 + suffix.len() as i64));
    let number = format!("{}{suffix}", order["stockout_no"].as_str().unwrap());
    order.insert("stockout_no".into(), json!(number));
    order
}

fn goods_numbers(order: &OrderJson) -> BTreeSet<String> {
    order["details_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["goods_no"].as_str().unwrap().to_owned())
        .collect()
}

/// What 星辰 holds, by number.
struct MasterData {
    customers: BTreeMap<String, String>,
    materials: BTreeMap<String, (String, String)>,
    stores: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq)]
struct ExpectedBill {
    billdate: String,
    billno: String,
    customerid_id: String,
    lines: Vec<ExpectedLine>,
}

#[derive(Debug, PartialEq)]
struct ExpectedLine {
    materialid_id: String,
    stockid_id: String,
    qty: Decimal,
    unit_id: String,
    taxprice: Decimal,
    cess: Decimal,
    project: String,
}

const PROJECT_FIELD: &str = "custom_field42obgp309axx5_number";

/// The bill the seed's table makes of `order`, worked out here without the scheme crate.
fn expected_bill(order: &OrderJson, md: &MasterData) -> ExpectedBill {
    let text = |value: &Value| value.as_str().unwrap().to_owned();
    let consigned =
        NaiveDateTime::parse_from_str(order["consign_time"].as_str().unwrap(), "%Y-%m-%d %H:%M:%S")
            .unwrap();
    let shop_no = text(&order["shop_no"]);
    let store_id = md.stores[order["warehouse_no"].as_str().unwrap()].clone();
    let lines = order["details_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let (material_id, unit_id) = md.materials[row["goods_no"].as_str().unwrap()].clone();
            ExpectedLine {
                materialid_id: material_id,
                stockid_id: store_id.clone(),
                qty: decimal(&row["goods_count"]),
                unit_id,
                taxprice: decimal(&row["market_price"]),
                cess: Decimal::from(13),
                project: shop_no.clone(),
            }
        })
        .collect();
    ExpectedBill {
        billdate: consigned.date().format("%Y-%m-%d").to_string(),
        billno: text(&order["stockout_no"]),
        customerid_id: md.customers[&shop_no].clone(),
        lines,
    }
}

/// A published bill read back into the same shape, refusing any field the table does not map.
fn actual_bill(payload: &[u8]) -> ExpectedBill {
    let bill: Value = serde_json::from_slice(payload).unwrap();
    let keys: BTreeSet<&str> = bill
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected_keys = BTreeSet::from(["billdate", "billno", "customerid_id", "material_entity"]);
    assert_eq!(keys, expected_keys, "{bill}");
    let text = |value: &Value| value.as_str().unwrap().to_owned();
    let lines = bill["material_entity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            assert_eq!(line.as_object().unwrap().len(), 7, "{line}");
            ExpectedLine {
                materialid_id: text(&line["materialid_id"]),
                stockid_id: text(&line["stockid_id"]),
                qty: decimal(&line["qty"]),
                unit_id: text(&line["unit_id"]),
                taxprice: decimal(&line["taxprice"]),
                cess: decimal(&line["cess"]),
                project: text(&line[PROJECT_FIELD]),
            }
        })
        .collect();
    ExpectedBill {
        billdate: text(&bill["billdate"]),
        billno: text(&bill["billno"]),
        customerid_id: text(&bill["customerid_id"]),
        lines,
    }
}

fn decimal(value: &Value) -> Decimal {
    match value {
        Value::String(text) => Decimal::from_str(text).unwrap(),
        Value::Number(number) => Decimal::from_str(&number.to_string()).unwrap(),
        other => panic!("not a decimal: {other}"),
    }
}

fn header_text<'a>(message: &'a StreamMessage, name: &str) -> &'a str {
    message.headers.get(name).unwrap().as_str()
}

fn bills_by_number(bills: &[StreamMessage]) -> BTreeMap<String, &StreamMessage> {
    let by_number: BTreeMap<String, &StreamMessage> = bills
        .iter()
        .map(|bill| (header_text(bill, header::STOCKOUT_NO).to_owned(), bill))
        .collect();
    assert_eq!(by_number.len(), bills.len(), "one bill per order");
    by_number
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_becomes_exactly_the_bill_its_master_data_gives() {
    let harness = Harness::start(11).await;
    let orders = harness.orders(11, 40);
    let running = harness.spawn(harness.transformer_config()).await;
    harness.publish(&orders).await;

    let (bills, dead) = harness.settled(orders.len()).await;
    assert!(dead.is_empty(), "no dead letters: {dead:?}");
    assert_eq!(bills.len(), orders.len());
    let by_number = bills_by_number(&bills);
    let raw = harness
        .stream_messages(&harness.topology.names.raw_orders_stream())
        .await;
    let md = harness.masterdata();
    for (order, raw) in orders.iter().zip(&raw) {
        let number = order["stockout_no"].as_str().unwrap();
        let bill = by_number[number];
        assert_eq!(
            actual_bill(&bill.payload),
            expected_bill(order, &md),
            "{number}"
        );

        // Identity from the raw message, the hash of the payload as sent.
        for name in [header::STOCKOUT_ID, header::STOCKOUT_NO, header::MODIFIED] {
            assert_eq!(header_text(bill, name), header_text(raw, name), "{name}");
        }
        let hash = message::content_hash(&bill.payload);
        assert_eq!(header_text(bill, header::CONTENT_HASH), hash);
        let msg_id = format!("{}:{hash}", header_text(raw, header::STOCKOUT_ID));
        assert_eq!(header_text(bill, header::MSG_ID), msg_id);
        // The bill is stamped with the time the raw order was stored, to the millisecond.
        let stamped = DateTime::parse_from_rfc3339(header_text(bill, header::PUBLISHED_AT))
            .unwrap()
            .with_timezone(&Utc);
        let stored = DateTime::<Utc>::from(SystemTime::from(raw.time));
        assert_eq!(
            stamped.timestamp_millis(),
            stored.timestamp_millis(),
            "{number}"
        );
    }

    let ready = eventually("/readyz to answer 200", WAIT, || async {
        let (status, body) = http_get(running.health, "/readyz").await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(ready.contains("\"ready\":true"), "{ready}");
    let (status, metrics) = http_get(running.health, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "bridge_bills_published_total",
        r#"bridge_lookups_total{collection="material",cache="hit"}"#,
        r#"bridge_lookups_total{collection="unit",cache="miss"}"#,
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }

    let report = running.stop().await;
    assert_eq!(report.acked, orders.len() as u64);
    assert_eq!(report.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_with_goods_unknown_to_xingchen_end_as_dead_letters_naming_them() {
    let harness = Harness::start(12).await;
    let orders = harness.orders(12, 30);
    // The goods of the first order, missing from 星辰.
    let unknown = goods_numbers(&orders[0]).into_iter().next().unwrap();
    assert!(harness.xingchen.state().remove_material(&unknown));
    let (bad, good): (Vec<&OrderJson>, Vec<&OrderJson>) = orders
        .iter()
        .partition(|order| goods_numbers(order).contains(&unknown));
    assert!(!good.is_empty(), "some orders do not sell {unknown}");

    let running = harness.spawn(harness.transformer_config()).await;
    harness.publish(&orders).await;
    // A raw order that is not JSON at all.
    let mut not_json = orders[1].clone();
    not_json.insert("stockout_no".into(), json!("CK-NOT-JSON"));
    let message = message::raw_order_message(
        &harness.topology.names,
        &identity(&not_json),
        Bytes::from_static(b"{\"stockout_id\": 1, oops"),
        &TraceContext::default(),
    )
    .unwrap();
    Publisher::new(harness.topology.jetstream.clone())
        .publish(message)
        .await
        .unwrap();

    let (bills, dead) = harness.settled(orders.len() + 1).await;
    let by_number = bills_by_number(&bills);
    let md = harness.masterdata();
    for order in &good {
        let number = order["stockout_no"].as_str().unwrap();
        assert_eq!(
            actual_bill(&by_number[number].payload),
            expected_bill(order, &md)
        );
    }
    assert_eq!(bills.len(), good.len(), "no bill for the bad orders");

    let mut dead_numbers = BTreeSet::new();
    for letter in &dead {
        assert_eq!(letter.stage, Stage::Transform);
        let number = letter.stockout_no.clone().unwrap();
        if number == "CK-NOT-JSON" {
            assert_eq!(letter.reason_kind, ReasonKind::MalformedOrder);
            assert!(letter.reason.contains("not JSON"), "{}", letter.reason);
            continue;
        }
        assert_eq!(
            letter.reason_kind,
            ReasonKind::LookupNotFound,
            "{}",
            letter.reason
        );
        let naming = format!("lookup_not_found: material {unknown} not found (");
        assert!(
            letter.reason.contains(&naming),
            "{naming} in {}",
            letter.reason
        );
        assert!(
            letter.reason.contains(".materialid_id"),
            "{}",
            letter.reason
        );
        assert!(letter.reason.contains(".unit_id"), "{}", letter.reason);
        dead_numbers.insert(number);
    }
    let bad_numbers: BTreeSet<String> = bad
        .iter()
        .map(|order| order["stockout_no"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead_numbers, bad_numbers);
    assert_eq!(dead.len(), bad.len() + 1);

    let (_, metrics) = http_get(running.health, "/metrics").await;
    let counted = r#"bridge_dead_letters_total{stage="transform",reason="lookup_not_found"}"#;
    assert!(metrics.contains(counted), "{metrics}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_asked_once_and_a_sync_brings_xingchen_changes_in_without_restart() {
    let harness = Harness::start(13).await;
    let first = harness.orders(13, 1).remove(0);
    let goods = goods_numbers(&first);
    let running = harness.spawn(harness.transformer_config()).await;

    harness.publish(std::slice::from_ref(&first)).await;
    harness.settled(1).await;
    assert_eq!(
        harness.calls(MATERIAL_DETAIL),
        goods.len(),
        "one call per goods number"
    );
    assert_eq!(harness.calls(CUSTOMER_DETAIL), 1);
    assert_eq!(harness.calls(STORE_DETAIL), 1);

    // The same goods, shop and warehouse again: every lookup is a cache hit.
    let second = renumbered(&first, "-B");
    harness.publish(std::slice::from_ref(&second)).await;
    let (bills, _) = harness.settled(2).await;
    assert_eq!(harness.calls(MATERIAL_DETAIL), goods.len());
    assert_eq!(harness.calls(CUSTOMER_DETAIL), 1);
    assert_eq!(harness.calls(STORE_DETAIL), 1);
    let md = harness.masterdata();
    let by_number = bills_by_number(&bills);
    let number = second["stockout_no"].as_str().unwrap();
    assert_eq!(
        actual_bill(&by_number[number].payload),
        expected_bill(&second, &md)
    );

    // A goods number 星辰 does not know yet: the miss is cached.
    let mut third = renumbered(&first, "-CC");
    third["details_list"][0]["goods_no"] = json!("G-NEW 1");
    harness.publish(std::slice::from_ref(&third)).await;
    let (_, dead) = harness.settled(3).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("material G-NEW 1 not found"),
        "{}",
        dead[0].reason
    );

    // 星辰 changes: a new base unit, the new goods item, and a goods item removed.
    let changed = goods.iter().next().unwrap().clone();
    let state = harness.xingchen.state();
    let material = |number: &str, unit: &str| SimMaterial {
        id: String::new(),
        number: number.to_owned(),
        name: "改过的商品".to_owned(),
        base_unit_id: unit.to_owned(),
        unit_ids: Vec::new(),
    };
    state.upsert_material(material(&changed, "7770001"));
    let added = state.upsert_material(material("G-NEW 1", "7770002"));
    let dropped = harness
        .world
        .goods
        .iter()
        .find(|g| !goods.contains(&g.goods_no))
        .unwrap();
    let cache = MasterDataCache::new(harness.topology.masterdata.clone(), Duration::from_secs(60));
    let dropped_key = cache_lookup(Collection::Material, &dropped.goods_no);
    cache
        .put_found(
            &dropped_key,
            &transformer::resolve::material_record(
                &harness
                    .xingchen_client()
                    .material(&dropped.goods_no)
                    .await
                    .unwrap()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(state.remove_material(&dropped.goods_no));

    // Until the sync, the cache answers as before.
    let fourth = renumbered(&third, "-DDD");
    harness.publish(std::slice::from_ref(&fourth)).await;
    let (_, dead) = harness.settled(4).await;
    assert_eq!(dead.len(), 2, "the cached miss still holds");

    let report =
        transformer::sync_masterdata(&harness.xingchen_client(), &harness.topology.masterdata)
            .await
            .unwrap();
    let materials = report.collection(Collection::Material).unwrap();
    assert_eq!(materials.records, harness.world.goods.len());
    assert_eq!(materials.updated, 1, "{report:?}");
    assert_eq!(materials.removed, 1, "{report:?}");
    assert_eq!(materials.misses_dropped, 1, "{report:?}");
    assert_eq!(
        materials.added,
        harness.world.goods.len() - goods.len(),
        "{report:?}"
    );
    assert_eq!(
        report.collection(Collection::Customer).unwrap().records,
        harness.world.shops.len()
    );
    assert!(
        cache.get(&dropped_key).await.unwrap().is_none(),
        "a gone number is deleted"
    );

    // The next messages resolve with what 星辰 holds now, without restarting the transformer.
    let calls_before = harness.calls(MATERIAL_DETAIL);
    let fifth = renumbered(&third, "-EEEE");
    let sixth = renumbered(&first, "-FFFFF");
    harness.publish(&[fifth.clone(), sixth.clone()]).await;
    let (bills, dead) = harness.settled(6).await;
    assert_eq!(dead.len(), 2);
    assert_eq!(
        harness.calls(MATERIAL_DETAIL),
        calls_before,
        "served from the synced cache"
    );
    let md = harness.masterdata();
    assert_eq!(md.materials["G-NEW 1"].0, added.id);
    let by_number = bills_by_number(&bills);
    for order in [&fifth, &sixth] {
        let number = order["stockout_no"].as_str().unwrap();
        let bill = actual_bill(&by_number[number].payload);
        assert_eq!(bill, expected_bill(order, &md), "{number}");
    }
    let sixth_bill = actual_bill(&by_number[sixth["stockout_no"].as_str().unwrap()].payload);
    let changed_rows = sixth["details_list"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&sixth_bill.lines)
        .filter(|(row, _)| row["goods_no"] == changed.as_str());
    for (_, line) in changed_rows {
        assert_eq!(line.unit_id, "7770001", "the changed base unit is used");
    }

    // The heartbeat says who the worker is and what it did.
    let instance = transformer::TransformerConfig::new("", harness.xingchen_config()).instance();
    let key = heartbeat::heartbeat_key(&instance);
    let beat: heartbeat::Heartbeat = eventually("a heartbeat with four bills", WAIT, || async {
        let entry = harness.topology.workers.get(&key).await.ok()??;
        let beat: heartbeat::Heartbeat = serde_json::from_slice(&entry).ok()?;
        (beat.processed.get("bills_published") == Some(&4)).then_some(beat)
    })
    .await;
    assert_eq!(beat.stage, "transform");
    assert_eq!(beat.pid, std::process::id());
    assert_eq!(beat.processed.get("dead_lettered"), Some(&2));

    running.stop().await;
    let gone = harness.topology.workers.get(&key).await.unwrap();
    assert!(gone.is_none(), "a clean stop removes the heartbeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_xingchen_means_retries_and_every_order_passes_once_it_recovers() {
    let topology = TopologyConfig {
        max_deliver: 1_000,
        ..TopologyConfig::default()
    };
    let harness = Harness::start_with(14, topology).await;
    let orders = harness.orders(14, 8);
    harness
        .xingchen
        .state()
        .update_knobs(|knobs| knobs.fraction_519 = 1.0);
    let running = harness.spawn(harness.transformer_config()).await;
    harness.publish(&orders).await;

    eventually(
        "orders to be retried while 星辰 answers 519",
        WAIT,
        || async {
            let info = harness
                .topology
                .transformer
                .clone()
                .info()
                .await
                .ok()?
                .clone();
            let refused = harness
                .xingchen
                .state()
                .log()
                .iter()
                .filter(|e| e.status == 519)
                .count();
            (info.num_redelivered >= orders.len() && refused >= 3 * orders.len()).then_some(())
        },
    )
    .await;
    let codes: BTreeSet<Option<i64>> = harness
        .xingchen
        .state()
        .log()
        .iter()
        .filter(|e| e.status == 519)
        .map(|e| e.code)
        .collect();
    assert!(
        codes.iter().all(|code| matches!(code, Some(5003 | 5007))),
        "{codes:?}"
    );
    assert!(
        harness.bills().await.is_empty(),
        "no bill while 星辰 refuses"
    );

    harness
        .xingchen
        .state()
        .update_knobs(|knobs| knobs.fraction_519 = 0.0);
    let (bills, dead) = harness.settled(orders.len()).await;
    assert!(dead.is_empty(), "no dead letters: {dead:?}");
    let by_number = bills_by_number(&bills);
    let md = harness.masterdata();
    for order in &orders {
        let number = order["stockout_no"].as_str().unwrap();
        assert_eq!(
            actual_bill(&by_number[number].payload),
            expected_bill(order, &md)
        );
    }
    let report = running.stop().await;
    assert!(report.retried >= orders.len() as u64, "{report:?}");
    assert_eq!(report.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_xingchen_credentials_keep_orders_waiting_and_the_worker_unready() {
    let harness = Harness::start(16).await;
    let orders = harness.orders(16, 3);
    let mut config = harness.transformer_config();
    config.xingchen.client_secret = Secret::new("not-the-secret");
    let running = harness.spawn(config).await;
    harness.publish(&orders).await;

    eventually(
        "orders to be retried with refused credentials",
        WAIT,
        || async {
            let info = harness
                .topology
                .transformer
                .clone()
                .info()
                .await
                .ok()?
                .clone();
            (info.num_redelivered >= orders.len()).then_some(())
        },
    )
    .await;
    let (status, body) = http_get(running.health, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("xingchen"), "{body}");
    assert!(
        harness.dead_letters().await.is_empty(),
        "an account problem is no order's fault"
    );
    assert!(harness.bills().await.is_empty());
    let report = running.stop().await;
    assert!(report.retried >= orders.len() as u64, "{report:?}");
    assert_eq!(report.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_orders_and_exits_zero() {
    let harness = Harness::start(15).await;
    let orders = harness.orders(15, 12);
    // Slow 星辰 answers keep messages in flight when the signal comes.
    harness
        .xingchen
        .state()
        .update_knobs(|knobs| knobs.latency_ms = 300);
    let xingchen = harness.xingchen_config();
    let envs = [
        ("NATS_URL", harness.nats_url.clone()),
        ("XINGCHEN_API_URL", xingchen.api_url.clone()),
        ("XINGCHEN_CLIENT_ID", xingchen.client_id.clone()),
        ("XINGCHEN_CLIENT_SECRET", defaults::CLIENT_SECRET.to_owned()),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            xingchen.outer_instance_id.clone(),
        ),
        ("XINGCHEN_RETRY_ATTEMPTS", "1".to_owned()),
        ("METRICS_LISTEN", "127.0.0.1:0".to_owned()),
        ("BRIDGE_RETRY_BACKOFF", "50ms".to_owned()),
        ("BRIDGE_INSTANCE_ID", "sigterm-test".to_owned()),
        ("BRIDGE_HEARTBEAT_INTERVAL", "200ms".to_owned()),
        ("BRIDGE_IN_FLIGHT", "4".to_owned()),
        ("BRIDGE_PULL_BATCH", "4".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let binary = Path::new(env!("CARGO_BIN_EXE_transformer"));
    let mut process = Process::spawn_path(binary, "transformer", Vec::<String>::new(), &envs);
    let key = heartbeat::heartbeat_key("sigterm-test");
    eventually("the transformer's heartbeat", WAIT, || async {
        harness.topology.workers.get(&key).await.ok()?.map(drop)
    })
    .await;

    harness.publish(&orders).await;
    eventually("a first bill", WAIT, || async {
        (!harness.bills().await.is_empty()).then_some(())
    })
    .await;
    process.terminate();
    let status = process.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", process.log());
    let log = process.log();
    // Every message delivered to it reached an exit: acked, or nakked for another worker.
    let stopped = log
        .lines()
        .find(|line| line.contains("Worker stopped"))
        .unwrap_or_default();
    for expected in ["exit_failures: 0", "abandoned: 0"] {
        assert!(stopped.contains(expected), "{expected} in:\n{log}");
    }
    assert!(harness.topology.workers.get(&key).await.unwrap().is_none());

    // What the stopped worker did not finish, a new one does; nothing is lost or doubled.
    harness
        .xingchen
        .state()
        .update_knobs(|knobs| knobs.latency_ms = 0);
    let running = harness.spawn(harness.transformer_config()).await;
    let (bills, dead) = harness.settled(orders.len()).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(bills_by_number(&bills).len(), orders.len());
    running.stop().await;
}
