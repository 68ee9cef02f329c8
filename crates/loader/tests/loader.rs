//! The loader against a real `nats-server -js` and the 星辰 simulator: bills created once,
//! repeats not posted, changes modified in place, old versions dropped, faults and stalled saves
//! survived, a crash between save and record recovered, rejections dead-lettered, and a loader
//! process killed mid-run. Each test starts its own server and simulator on free ports and
//! builds its bill messages with `pipeline::message::bill_message`, as the transformer does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use futures::TryStreamExt;
use loader::{LoadReport, LoaderConfig};
use pipeline::dead_letter::{DeadLetter, ReasonKind};
use pipeline::ledger::{Ledger, LedgerEntry};
use pipeline::message::{self, OrderIdentity, OutgoingMessage, TraceContext, header};
use pipeline::{Names, NatsConfig, PullConfig, Topology, TopologyConfig};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use simulator::world::World;
use simulator::xingchen::{Knobs, SimulatorConfig, XingchenSimulator, defaults};
use test_support::NatsServer;
use test_support::process::{Process, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use xingchen::{Bill, BillLine, SAVE_PATH, Secret, XingchenConfig};

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(90);

/// The status the simulator logs for a request whose client gave up before the answer.
const CLIENT_CLOSED: u16 = 499;

/// The custom line field the seed's mapping fills with the shop number.
const SHOP_FIELD: &str = "custom_field42obgp309axx5_number";

/// Everything one test runs against.
struct Harness {
    nats: NatsServer,
    sim: XingchenSimulator,
    world: World,
    topology: Topology,
}

impl Harness {
    async fn start(seed: u64) -> Harness {
        let nats = NatsServer::start();
        let world = World::generate(seed);
        let sim = XingchenSimulator::start(&world, SimulatorConfig::default())
            .await
            .expect("start the 星辰 simulator");
        let client = pipeline::connect(&NatsConfig::for_url(nats.url()))
            .await
            .expect("connect");
        let topology = pipeline::ensure_topology(&jetstream::new(client), &topology_config())
            .await
            .expect("topology");
        Harness {
            nats,
            sim,
            world,
            topology,
        }
    }

    fn xingchen_config(&self) -> XingchenConfig {
        let mut config = XingchenConfig::new(
            self.sim.url(),
            defaults::CLIENT_ID,
            Secret::new(defaults::CLIENT_SECRET),
            defaults::OUTER_INSTANCE_ID,
        );
        config.requests_per_minute = 60_000;
        config.timeout = Duration::from_secs(5);
        config.retry_min_delay = Duration::from_millis(10);
        config.retry_max_delay = Duration::from_millis(50);
        config
    }

    fn loader_config(&self) -> LoaderConfig {
        let mut config =
            LoaderConfig::new(NatsConfig::for_url(self.nats.url()), self.xingchen_config());
        config.topology = topology_config();
        config.pull = PullConfig {
            batch: 8,
            in_flight: 8,
            expires: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
            backoff: vec![Duration::from_millis(50)],
            shutdown_deadline: Duration::from_secs(10),
            ..PullConfig::default()
        };
        config.telemetry.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        config.heartbeat_interval = Duration::from_millis(200);
        config
    }

    fn start_loader(&self, config: LoaderConfig) -> RunningLoader {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(loader::run(config, shutdown.clone()));
        RunningLoader { shutdown, task }
    }

    /// Order `n` of this world, with quantity `qty` on its first line, last changed at `modified`.
    fn order(&self, n: usize, qty: i64, modified: &str) -> Order {
        let world = &self.world;
        let shop = &world.shops[n % world.shops.len()];
        let store = &world.warehouses[n % world.warehouses.len()];
        let lines = (0..2)
            .map(|i| {
                let goods = &world.goods[(n * 7 + i) % world.goods.len()];
                BillLine {
                    id: None,
                    materialid_id: goods.material_id.clone(),
                    stockid_id: store.store_id.clone(),
                    qty: Decimal::from(qty + i as i64),
                    unit_id: goods.base_unit_id.clone(),
                    taxprice: goods.market_price,
                    cess: Decimal::from(13),
                    custom: BTreeMap::from([(SHOP_FIELD.to_owned(), json!(shop.shop_no))]),
                }
            })
            .collect();
        let bill = Bill {
            id: None,
            billdate: NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"),
            billno: format!("CK20240501{n:05}"),
            customerid_id: shop.customer_id.clone(),
            material_entity: lines,
            custom: BTreeMap::new(),
        };
        Order {
            stockout_id: (100_000 + n).to_string(),
            modified: message::parse_modified(modified).expect("time"),
            bill,
        }
    }

    async fn publish(&self, messages: Vec<OutgoingMessage>) {
        let summary = self
            .topology
            .publisher()
            .publish_all(messages, 64)
            .await
            .expect("publish bills");
        assert_eq!(
            summary.duplicates, 0,
            "a test message was dropped as a duplicate"
        );
    }

    /// Waits until the loader has taken an exit for every bill published so far.
    async fn settled(&self) {
        let bills = self.topology.names.bills_stream();
        let last = stream_last_sequence(&self.topology.jetstream, &bills).await;
        let consumer = &self.topology.loader;
        eventually("the loader to finish every bill", PATIENCE, || async move {
            let info = consumer.get_info().await.ok()?;
            let done = info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence >= last;
            done.then_some(())
        })
        .await;
    }

    fn saves(&self) -> usize {
        let log = self.sim.state().log();
        log.iter()
            .filter(|entry| entry.endpoint == SAVE_PATH)
            .count()
    }

    fn saves_answered(&self, status: u16) -> usize {
        let log = self.sim.state().log();
        log.iter()
            .filter(|entry| entry.endpoint == SAVE_PATH && entry.status == status)
            .count()
    }

    fn held(&self, billno: &str) -> Option<(String, Bill)> {
        let value = self.sim.state().bill(billno)?;
        let id = value["id"]
            .as_str()
            .expect("a held bill has an id")
            .to_owned();
        Some((
            id,
            serde_json::from_value(value).expect("a held bill reads as a Bill"),
        ))
    }

    fn ledger(&self) -> Ledger {
        Ledger::new(self.topology.ledger.clone())
    }

    async fn ledger_entry(&self, order: &Order) -> Option<LedgerEntry> {
        let entry = self
            .ledger()
            .get(&order.stockout_id)
            .await
            .expect("ledger read");
        entry.map(|versioned| versioned.value)
    }

    async fn ledger_len(&self) -> usize {
        match self.topology.ledger.keys().await {
            Ok(keys) => keys
                .try_collect::<Vec<_>>()
                .await
                .expect("ledger keys")
                .len(),
            Err(_) => 0,
        }
    }

    /// Asserts one bill per order in the simulator, holding the order's content, and a ledger
    /// entry per order naming that bill.
    async fn assert_loaded_once(&self, orders: &[Order]) {
        let bills = self.sim.state().bills();
        let numbers: BTreeSet<&str> = bills.iter().filter_map(|b| b["billno"].as_str()).collect();
        assert_eq!(bills.len(), orders.len(), "bills in the simulator");
        assert_eq!(
            numbers.len(),
            orders.len(),
            "distinct bill numbers in the simulator"
        );
        assert_eq!(self.ledger_len().await, orders.len(), "ledger entries");
        for order in orders {
            let (id, held) = self
                .held(&order.bill.billno)
                .expect("the order's bill is held");
            assert!(
                loader::content::same_content(&order.bill, &held),
                "bill {} holds other content: {held:?}",
                order.bill.billno
            );
            let entry = self
                .ledger_entry(order)
                .await
                .expect("the order has a ledger entry");
            assert_eq!(
                entry.bill_id, id,
                "ledger of {} names another bill",
                order.bill.billno
            );
            assert_eq!(entry.billno, order.bill.billno);
            assert_eq!(entry.content_hash, message::content_hash(&order.payload()));
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let stream_name = self.topology.names.dlq_stream();
        let stream = self
            .topology
            .jetstream
            .get_stream(&stream_name)
            .await
            .expect("dlq");
        let last = stream_last_sequence(&self.topology.jetstream, &stream_name).await;
        let mut letters = Vec::new();
        for sequence in 1..=last {
            let stored = stream.get_raw_message(sequence).await.expect("dead letter");
            letters.push(DeadLetter::from_message(&stored.headers, stored.payload).expect("read"));
        }
        letters
    }
}

/// An order's bill as the transformer would publish it.
struct Order {
    stockout_id: String,
    modified: DateTime<FixedOffset>,
    bill: Bill,
}

impl Order {
    /// The payload: the bill's V1 JSON with its keys sorted.
    fn payload(&self) -> Bytes {
        let value = serde_json::to_value(&self.bill).expect("bill to JSON");
        Bytes::from(serde_json::to_vec(&value).expect("JSON to bytes"))
    }

    fn message(&self) -> OutgoingMessage {
        let identity = OrderIdentity {
            stockout_id: self.stockout_id.clone(),
            stockout_no: self.bill.billno.clone(),
            modified: self.modified,
        };
        message::bill_message(
            &Names::default(),
            &identity,
            self.payload(),
            &TraceContext::default(),
            Utc::now(),
        )
        .expect("bill message")
    }

    /// The same message under a new `Nats-Msg-Id`, as a replay or a re-extraction sends it.
    fn message_again(&self) -> OutgoingMessage {
        let mut message = self.message();
        let id = format!("{}:again", message.msg_id().expect("msg id"));
        message.headers.insert(header::MSG_ID, id);
        message
    }
}

/// A loader run in-process.
struct RunningLoader {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<LoadReport>>,
}

impl RunningLoader {
    async fn stop(self) -> LoadReport {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the loader stops within the deadline")
            .expect("the loader task")
            .expect("the loader ran without error")
    }
}

fn topology_config() -> TopologyConfig {
    TopologyConfig {
        ack_wait: Duration::from_secs(2),
        max_deliver: 10,
        ..TopologyConfig::default()
    }
}

async fn stream_last_sequence(jetstream: &jetstream::Context, name: &str) -> u64 {
    let mut stream = jetstream.get_stream(name).await.expect("stream");
    stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence
}

fn messages(orders: &[Order]) -> Vec<OutgoingMessage> {
    orders.iter().map(Order::message).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_bills_become_n_bills_and_the_same_bills_again_post_nothing() {
    let harness = Harness::start(11).await;
    let loader = harness.start_loader(harness.loader_config());
    let orders: Vec<Order> = (0..25)
        .map(|n| harness.order(n, 2, "2024-05-01 10:00:00"))
        .collect();

    harness.publish(messages(&orders)).await;
    harness.settled().await;
    harness.assert_loaded_once(&orders).await;
    assert_eq!(harness.saves(), orders.len(), "one save per bill");

    let again = orders.iter().map(Order::message_again).collect();
    harness.publish(again).await;
    harness.settled().await;
    assert_eq!(
        harness.saves(),
        orders.len(),
        "the repeats posted something"
    );
    harness.assert_loaded_once(&orders).await;

    let report = loader.stop().await;
    assert_eq!(report.loads.created, 25);
    assert_eq!(report.loads.unchanged, 25);
    assert_eq!(report.worker.acked, 50);
    assert_eq!(report.worker.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_bill_is_modified_in_place_and_an_older_version_is_not_posted() {
    let harness = Harness::start(12).await;
    let loader = harness.start_loader(harness.loader_config());
    let mut orders: Vec<Order> = (0..5)
        .map(|n| harness.order(n, 2, "2024-05-01 10:00:00"))
        .collect();
    harness.publish(messages(&orders)).await;
    harness.settled().await;
    let (first_id, _) = harness.held(&orders[0].bill.billno).expect("bill 0");
    let (second_id, second_before) = harness.held(&orders[1].bill.billno).expect("bill 1");

    // Order 0 changed in WDT: a new quantity, a later `modified`.
    orders[0] = harness.order(0, 9, "2024-05-01 11:00:00");
    harness.publish(vec![orders[0].message()]).await;
    harness.settled().await;
    let (id, held) = harness.held(&orders[0].bill.billno).expect("bill 0");
    assert_eq!(id, first_id, "the change made a new bill");
    assert_eq!(held.material_entity[0].qty, Decimal::from(9));
    assert_eq!(harness.saves(), 6);
    harness.assert_loaded_once(&orders).await;

    // An older version of order 1 arrives late, from a slow replica say.
    let older = harness.order(1, 7, "2024-05-01 09:00:00");
    harness.publish(vec![older.message()]).await;
    harness.settled().await;
    assert_eq!(harness.saves(), 6, "the older version was posted");
    let (id, held) = harness.held(&orders[1].bill.billno).expect("bill 1");
    assert_eq!((id, held), (second_id, second_before));
    harness.assert_loaded_once(&orders).await;

    let report = loader.stop().await;
    assert_eq!(
        (
            report.loads.created,
            report.loads.modified,
            report.loads.stale
        ),
        (5, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_of_one_order_handled_at_once_take_turns() {
    let harness = Harness::start(19).await;
    // Slow saves keep both versions in flight together.
    harness.sim.state().update_knobs(|k| k.latency_ms = 200);
    let loader = harness.start_loader(harness.loader_config());
    let first = harness.order(0, 2, "2024-05-01 10:00:00");
    let second = harness.order(0, 5, "2024-05-01 10:05:00");

    harness
        .publish(vec![first.message(), second.message()])
        .await;
    harness.settled().await;

    harness.assert_loaded_once(&[second]).await;
    // In turns: a create and a modify, or a create and a stale skip. Both creating at once
    // would cost a rejected create and a modify besides.
    assert!(
        harness.saves() <= 2,
        "{} saves for two versions",
        harness.saves()
    );
    let report = loader.stop().await;
    assert_eq!(report.loads.recovered, 0, "a create met the number taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_overloads_expiring_tokens_and_stalled_saves_still_give_one_bill_per_order() {
    let harness = Harness::start(13).await;
    harness.sim.state().set_knobs(Knobs {
        fraction_429: 0.15,
        fraction_519: 0.15,
        token_expires_after_calls: Some(5),
        fraction_stall: 0.2,
        stall_ms: 1_500,
        ..Knobs::default()
    });
    let mut config = harness.loader_config();
    // Shorter than a stall: a stalled save stores the bill and times out on the client.
    config.xingchen.timeout = Duration::from_millis(400);
    let loader = harness.start_loader(config);
    let orders: Vec<Order> = (0..60)
        .map(|n| harness.order(n, 3, "2024-05-01 10:00:00"))
        .collect();

    harness.publish(messages(&orders)).await;
    harness.settled().await;
    harness.sim.state().set_knobs(Knobs::default());

    harness.assert_loaded_once(&orders).await;
    let log = harness.sim.state().log();
    for status in [429, 519] {
        let seen = log.iter().any(|entry| entry.status == status);
        assert!(
            seen,
            "the simulator never answered {status}; the test tested nothing"
        );
    }
    assert!(log.iter().any(|e| e.code == Some(4011)), "no token expired");
    assert!(
        harness.saves_answered(CLIENT_CLOSED) > 0,
        "no save stalled past the client's timeout"
    );
    assert!(harness.dead_letters().await.is_empty());
    let report = loader.stop().await;
    assert!(report.loads.recovered > 0, "no bill was found by number");
    assert_eq!(report.loads.created, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_saved_before_a_crash_is_recorded_and_not_posted_again() {
    let harness = Harness::start(14).await;
    let direct = xingchen::Client::new(harness.xingchen_config()).expect("client");
    // As if an earlier delivery saved these bills and died before recording them.
    let crashed = harness.order(0, 2, "2024-05-01 10:00:00");
    let taken = harness.order(1, 2, "2024-05-01 10:00:00");
    let older = harness.order(2, 1, "2024-05-01 10:00:00");
    let mut ids = Vec::new();
    for order in [&crashed, &taken, &older] {
        ids.push(direct.save(&order.bill).await.expect("direct save").id);
    }
    assert_eq!(harness.saves_answered(200), 3);

    // The first delivery fails before anything is saved, so the message comes back; the
    // redelivery finds no ledger entry and must look the bill up before posting.
    harness.sim.state().update_knobs(|k| k.fraction_429 = 1.0);
    let mut config = harness.loader_config();
    config.xingchen.retry_attempts = 1;
    // Slow enough that ten deliveries outlast the test's reaction to the first refusal.
    config.pull.backoff = vec![Duration::from_millis(300)];
    let loader = harness.start_loader(config);
    harness.publish(vec![crashed.message()]).await;
    eventually("a refused save", PATIENCE, || async {
        (harness.saves_answered(429) > 0).then_some(())
    })
    .await;
    harness.sim.state().update_knobs(|k| k.fraction_429 = 0.0);
    harness.settled().await;
    assert_eq!(
        harness.saves_answered(200),
        3,
        "the redelivery posted the bill again"
    );

    // A first delivery that meets the number taken, with the same and with older content.
    let newer = harness.order(2, 4, "2024-05-01 10:00:00");
    harness
        .publish(vec![taken.message(), newer.message()])
        .await;
    harness.settled().await;

    let orders = [crashed, taken, newer];
    harness.assert_loaded_once(&orders).await;
    for (order, id) in orders.iter().zip(&ids) {
        let (held_id, _) = harness.held(&order.bill.billno).expect("held");
        assert_eq!(
            &held_id, id,
            "bill {} was replaced by a new one",
            order.bill.billno
        );
    }
    let report = loader.stop().await;
    assert_eq!(report.loads.recovered, 3);
    assert_eq!(report.loads.modified, 1);
    assert_eq!(report.worker.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_xingchen_rejects_ends_as_one_dead_letter_with_kingdees_message() {
    let harness = Harness::start(15).await;
    let loader = harness.start_loader(harness.loader_config());
    let mut rejected = harness.order(0, 2, "2024-05-01 10:00:00");
    rejected.bill.material_entity[0].unit_id = "999".into();
    let mut not_json = harness.order(1, 2, "2024-05-01 10:00:00").message();
    not_json.payload = Bytes::from_static(b"<bill/>");

    harness.publish(vec![rejected.message(), not_json]).await;
    harness.settled().await;

    let letters = harness.dead_letters().await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let target = letters
        .iter()
        .find(|l| l.reason_kind == ReasonKind::TargetRejected)
        .expect("a target_rejected dead letter");
    assert!(
        target.reason.contains("计量单位unit_id[999]不是商品"),
        "Kingdee's message is missing: {}",
        target.reason
    );
    assert_eq!(target.delivered, 1, "the rejected bill was retried");
    assert_eq!(
        target.stockout_no.as_deref(),
        Some(rejected.bill.billno.as_str())
    );
    assert!(
        letters
            .iter()
            .any(|l| l.reason_kind == ReasonKind::MalformedOrder)
    );
    assert_eq!(harness.saves(), 1, "one save, for the rejected bill only");
    assert!(harness.sim.state().bills().is_empty());
    assert_eq!(harness.ledger_len().await, 0);

    let report = loader.stop().await;
    assert_eq!(report.worker.retried, 0);
    assert_eq!(report.worker.dead_lettered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_killed_mid_run_leaves_no_order_unloaded_and_none_doubled() {
    let harness = Harness::start(16).await;
    // Slow saves, some of which are stored a while before they are answered: a kill then
    // lands between a save and its record.
    harness.sim.state().set_knobs(Knobs {
        latency_ms: 40,
        fraction_stall: 0.1,
        stall_ms: 300,
        ..Knobs::default()
    });
    let orders: Vec<Order> = (0..400)
        .map(|n| harness.order(n, 1 + (n % 5) as i64, "2024-05-01 10:00:00"))
        .collect();
    harness.publish(messages(&orders)).await;

    let envs = process_env(&harness);
    let mut first = Process::spawn("loader", Vec::<String>::new(), &envs);
    let saved = || harness.sim.state().stats().bills as usize;
    until(&mut first, "some bills saved", || saved() >= 60).await;
    first.kill();
    assert!(
        saved() < orders.len(),
        "every bill was saved before the kill; the test tested nothing"
    );

    let mut second = Process::spawn("loader", Vec::<String>::new(), &envs);
    let last = stream_last_sequence(&harness.topology.jetstream, "BRIDGE_BILLS").await;
    let consumer = harness.topology.loader.clone();
    let done = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(info) = consumer.get_info().await {
                if info.num_pending == 0
                    && info.num_ack_pending == 0
                    && info.ack_floor.stream_sequence >= last
                {
                    return;
                }
            }
            assert!(
                second.is_running(),
                "the restarted loader exited:\n{}",
                second.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the restarted loader did not finish:\n{}",
        second.log()
    );

    harness.assert_loaded_once(&orders).await;
    assert!(harness.dead_letters().await.is_empty());

    second.terminate();
    let status = second.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must end the loader cleanly:\n{}",
        second.log()
    );
}

/// Waits for `check` while `process` runs, failing with its log if it exits or time runs out.
async fn until(process: &mut Process, what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            process.is_running(),
            "the loader exited waiting for {what}:\n{}",
            process.log()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn process_env(harness: &Harness) -> Vec<(&'static str, String)> {
    let config = harness.xingchen_config();
    [
        ("NATS_URL", harness.nats.url()),
        ("XINGCHEN_API_URL", config.api_url),
        ("XINGCHEN_CLIENT_ID", config.client_id),
        ("XINGCHEN_CLIENT_SECRET", defaults::CLIENT_SECRET.to_owned()),
        ("XINGCHEN_OUTER_INSTANCE_ID", config.outer_instance_id),
        ("XINGCHEN_REQUESTS_PER_MINUTE", "60000".to_owned()),
        ("XINGCHEN_MAX_IN_FLIGHT", "4".to_owned()),
        ("XINGCHEN_RETRY_MIN_DELAY", "10ms".to_owned()),
        ("XINGCHEN_RETRY_MAX_DELAY", "50ms".to_owned()),
        ("BRIDGE_IN_FLIGHT", "4".to_owned()),
        ("BRIDGE_PULL_BATCH", "4".to_owned()),
        ("BRIDGE_PULL_EXPIRES", "2s".to_owned()),
        ("BRIDGE_PULL_HEARTBEAT", "500ms".to_owned()),
        ("BRIDGE_ACK_WAIT", "2s".to_owned()),
        ("BRIDGE_MAX_DELIVER", "10".to_owned()),
        ("BRIDGE_RETRY_BACKOFF", "50ms".to_owned()),
        ("BRIDGE_SHUTDOWN_DEADLINE", "10s".to_owned()),
        ("METRICS_LISTEN", "127.0.0.1:0".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loader_serves_readiness_metrics_and_a_heartbeat() {
    let harness = Harness::start(17).await;
    let mut config = harness.loader_config();
    let addr = free_local_addr();
    config.telemetry.metrics_listen = Some(addr);
    config.instance_id = Some("loader-under-test".to_owned());
    let loader = harness.start_loader(config);
    let orders: Vec<Order> = (0..3)
        .map(|n| harness.order(n, 2, "2024-05-01 10:00:00"))
        .collect();
    harness.publish(messages(&orders)).await;
    harness.settled().await;

    let workers = harness.topology.workers.clone();
    let beat: Value = eventually("a heartbeat counting three bills", PATIENCE, || {
        let workers = workers.clone();
        async move {
            let bytes = workers.get("load.loader-under-test").await.ok()??;
            let beat: Value = serde_json::from_slice(&bytes).ok()?;
            (beat["processed"]["created"] == 3).then_some(beat)
        }
    })
    .await;
    assert_eq!(beat["stage"], "load");
    assert_eq!(beat["pid"], std::process::id());
    assert!(beat["started_at"].is_string() && beat["version"].is_string());

    let (status, body) = http_get(addr, "/readyz").await.expect("readyz answers");
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(addr, "/metrics").await.expect("metrics answer");
    assert_eq!(status, 200);
    for expected in [
        loader::stats::LOAD_LATENCY,
        r#"bridge_bills_loaded_total{outcome="created"}"#,
        r#"endpoint="sal_outbound_save",outcome="ok""#,
        r#"endpoint="push_app_authorize",outcome="ok""#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    loader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_xingchen_while_the_credentials_are_refused() {
    let harness = Harness::start(18).await;
    let mut config = harness.loader_config();
    config.xingchen.client_secret = Secret::new("not-the-secret");
    let addr = free_local_addr();
    config.telemetry.metrics_listen = Some(addr);
    let loader = harness.start_loader(config);

    let (status, body) =
        eventually("readyz to answer", PATIENCE, || http_get(addr, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("xingchen"), "{body}");
    eventually("the authorisation to be tried again", PATIENCE, || async {
        (harness.sim.state().stats().authorize_calls >= 2).then_some(())
    })
    .await;
    let (status, body) = http_get(addr, "/readyz").await.expect("readyz answers");
    assert_eq!(status, 503, "{body}");

    let report = loader.stop().await;
    assert_eq!(
        report,
        LoadReport::default(),
        "nothing is pulled without credentials"
    );
}

fn free_local_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// A plain HTTP/1.0 GET; `None` while nothing listens.
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned());
    Some((status, body.unwrap_or_default()))
}
