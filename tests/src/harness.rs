//! One end-to-end world: a private nats-server, the 旺店通 and 星辰 simulators over the same
//! seeded master data, and the workers as child processes configured to reach them.
//!
//! A test builds a [`Harness`], turns the simulators' knobs, starts `transformer` and `loader`
//! with [`Harness::start_worker`], runs `extractor backfill` with [`Harness::backfill`], and then
//! waits for the pipeline to settle ([`Harness::wait_until_settled`]) before it reads what
//! happened: the bills the 星辰 simulator holds, its request log, the ledger, the dead letters and
//! the consumers' backlog. Everything is read from the outside (simulator state, JetStream), never
//! from the workers' own code. When a test panics, dropping the harness prints the tail of every
//! worker's log, so a failure explains itself. What the bills should look like is left to
//! [`crate::expected`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::{self, Context, kv};
use chrono::{DateTime, FixedOffset};
use futures::StreamExt;
use pipeline::dead_letter::DeadLetter;
use pipeline::ledger::{Ledger, LedgerEntry};
use pipeline::names::{DEFAULT_PREFIX, LOADER_CONSUMER, TRANSFORMER_CONSUMER};
use pipeline::{Names, key};
use serde_json::{Map, Value};
use simulator::orders::{ZERO_TIME, format_time, parse_time};
use simulator::wdt::{self, WdtSimConfig, WdtSimulator};
use simulator::world::World;
use simulator::xingchen::{self, SimulatorConfig, XingchenSimulator};
use test_support::NatsServer;
use test_support::process::{Process, eventually};

use crate::expected::{self, MasterData};

/// How long one `extractor backfill` may take.
const BACKFILL_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a worker gets to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each worker's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// An order as the 旺店通 simulator holds it.
pub type Order = Map<String, Value>;

/// A worker started by the harness, named by its place in the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerId(usize);

struct Worker {
    name: String,
    process: Process,
}

/// The backlog of one durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged (naked ones included).
    pub ack_pending: usize,
}

impl Backlog {
    /// Nothing waiting and nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.ack_pending == 0
    }
}

/// A private nats-server, both simulators and the workers, for one test.
pub struct Harness {
    /// The private nats-server.
    pub nats: NatsServer,
    /// The 旺店通 simulator.
    pub wdt: WdtSimulator,
    /// The 星辰 simulator, over the same world.
    pub xingchen: XingchenSimulator,
    /// The earliest consign time of the generated orders.
    pub from: DateTime<FixedOffset>,
    /// The latest consign time of the generated orders.
    pub to: DateTime<FixedOffset>,
    env: Vec<(&'static str, String)>,
    workers: Vec<Worker>,
    js: Context,
    names: Names,
}

impl Harness {
    /// Starts nats-server and both simulators; the 旺店通 simulator holds `orders` orders of
    /// world `seed` consigned between `from` and `to` (Beijing `YYYY-MM-DD HH:MM:SS`), about 4 %
    /// of them unshipped.
    pub async fn start(seed: u64, orders: usize, from: &str, to: &str) -> Harness {
        let from = parse_time(from).expect("a Beijing time for the start of the orders");
        let to = parse_time(to).expect("a Beijing time for the end of the orders");
        let world = World::generate(seed);
        let nats = NatsServer::start();
        let wdt = WdtSimulator::start(WdtSimConfig {
            world: Some(world.clone()),
            ..WdtSimConfig::new(seed).with_orders(orders, from, to)
        })
        .await
        .expect("start the 旺店通 simulator");
        let xingchen = XingchenSimulator::start(&world, SimulatorConfig::default())
            .await
            .expect("start the 星辰 simulator");
        let js = jetstream::new(nats.connect().await);
        let env = base_env(&nats, &wdt, &xingchen);
        Harness {
            nats,
            wdt,
            xingchen,
            from,
            to,
            env,
            workers: Vec::new(),
            js,
            names: Names::new(DEFAULT_PREFIX).expect("the default prefix is valid"),
        }
    }

    /// Sets (or overrides) one environment variable of every worker started from now on.
    pub fn set_env(&mut self, key: &'static str, value: impl Into<String>) {
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
    }

    /// The environment workers are started with.
    pub fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }

    /// Starts a long-running worker (`transformer` or `loader`) with no arguments.
    pub fn start_worker(&mut self, binary: &str) -> WorkerId {
        self.spawn(binary, &[])
    }

    /// Starts one `transformer` and one `loader`.
    pub fn start_pipeline(&mut self) -> (WorkerId, WorkerId) {
        (
            self.start_worker("transformer"),
            self.start_worker("loader"),
        )
    }

    /// Kills a worker with SIGKILL, as a crash would.
    pub fn kill(&mut self, id: WorkerId) {
        self.workers[id.0].process.kill();
    }

    /// The log a worker has written so far.
    pub fn log(&self, id: WorkerId) -> String {
        self.workers[id.0].process.log()
    }

    /// Sends SIGTERM to every running worker at once and asserts that each exits 0 within
    /// [`EXIT_TIMEOUT`].
    pub async fn stop_workers(&mut self) {
        let mut running: Vec<&mut Worker> = self
            .workers
            .iter_mut()
            .filter_map(|worker| worker.process.is_running().then_some(worker))
            .collect();
        // All at once, as an orchestrator stops a deployment: no worker goes on alone meanwhile.
        for worker in &running {
            worker.process.terminate();
        }
        for worker in &mut running {
            let status = wait_exit(&mut worker.process, &worker.name, EXIT_TIMEOUT).await;
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM",
                worker.name
            );
        }
    }

    /// Runs `extractor backfill` over the whole consign range of the generated orders and
    /// asserts that it succeeds.
    pub async fn backfill(&mut self) {
        let (from, to) = (self.from, self.to);
        self.backfill_range(from, to).await;
    }

    /// Runs `extractor backfill --from from --to to` to its end and asserts that it exits 0.
    pub async fn backfill_range(&mut self, from: DateTime<FixedOffset>, to: DateTime<FixedOffset>) {
        let args = [
            "backfill".to_owned(),
            "--from".to_owned(),
            format_time(&from),
            "--to".to_owned(),
            format_time(&to),
        ];
        let id = self.spawn("extractor", &args);
        let worker = &mut self.workers[id.0];
        let status = wait_exit(&mut worker.process, "extractor backfill", BACKFILL_TIMEOUT).await;
        assert!(
            status.success(),
            "extractor backfill exited with {status}; its log:\n{}",
            worker.process.log()
        );
    }

    /// Starts `extractor backfill` over the whole consign range without waiting for it, so that
    /// a test can act while it runs; [`Harness::wait_exit`] waits for its end.
    pub fn start_backfill(&mut self) -> WorkerId {
        let args = [
            "backfill".to_owned(),
            "--from".to_owned(),
            format_time(&self.from),
            "--to".to_owned(),
            format_time(&self.to),
        ];
        self.spawn("extractor", &args)
    }

    /// Waits up to `timeout` for a worker to exit and returns how it ended.
    pub async fn wait_exit(&mut self, id: WorkerId, timeout: Duration) -> std::process::ExitStatus {
        let worker = &mut self.workers[id.0];
        wait_exit(&mut worker.process, &worker.name, timeout).await
    }

    /// The process id of a worker, as its heartbeat names it.
    pub fn pid(&self, id: WorkerId) -> u32 {
        self.workers[id.0].process.pid()
    }

    fn spawn(&mut self, binary: &str, args: &[String]) -> WorkerId {
        let process = Process::spawn(binary, args, &self.env);
        self.workers.push(Worker {
            name: format!("{binary}#{}", self.workers.len()),
            process,
        });
        WorkerId(self.workers.len() - 1)
    }

    /// Adds shipped orders until the range holds exactly `count`, and returns them.
    pub fn exactly_shipped(&self, count: usize) -> Vec<Order> {
        let shipped = self.shipped_orders().len();
        assert!(shipped <= count, "{shipped} shipped orders already");
        self.wdt
            .state()
            .generate(count - shipped, self.from, self.to);
        let orders = self.shipped_orders();
        assert_eq!(orders.len(), count);
        orders
    }

    /// Gives the first goods line of `count` of `orders`, spread over them, the goods number
    /// `goods_no`, which 星辰 does not know; returns the numbers of the orders changed.
    pub fn give_unknown_goods(
        &self,
        orders: &[Order],
        count: usize,
        goods_no: &str,
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for order in orders.iter().step_by(orders.len() / count).take(count) {
            let id = order["stockout_id"]
                .as_i64()
                .expect("a numeric stockout_id");
            let rec_id = order["details_list"][0]["rec_id"]
                .as_i64()
                .expect("a numeric rec_id");
            let mut line = Map::new();
            line.insert("goods_no".into(), Value::from(goods_no));
            let change = wdt::OrderChange {
                set: Map::new(),
                details: BTreeMap::from([(rec_id, line)]),
            };
            self.wdt
                .state()
                .modify_order(id, &change)
                .expect("modify the order");
            changed.insert(stockout_no(order));
        }
        changed
    }

    /// The orders the default query returns for the generated range: shipped (status 95 or
    /// more) and consigned within it.
    pub fn shipped_orders(&self) -> Vec<Order> {
        self.wdt
            .state()
            .orders()
            .into_iter()
            .filter(|order| is_shipped_within(order, self.from, self.to))
            .collect()
    }

    /// The bills the 星辰 simulator holds, by number.
    pub fn bills(&self) -> HashMap<String, Value> {
        let bills = self.xingchen.state().bills();
        let count = bills.len();
        let by_number: HashMap<String, Value> = bills
            .into_iter()
            .map(|bill| (bill["billno"].as_str().unwrap_or_default().to_owned(), bill))
            .collect();
        assert_eq!(by_number.len(), count, "two bills share a number");
        by_number
    }

    /// How many bills the 星辰 simulator holds.
    pub fn bill_count(&self) -> u64 {
        self.xingchen.state().stats().bills
    }

    /// How many save requests reached the 星辰 simulator, whatever their answer.
    pub fn saves(&self) -> usize {
        self.xingchen
            .state()
            .log()
            .iter()
            .filter(|entry| entry.endpoint == xingchen::SAVE_PATH)
            .count()
    }

    /// The master data the 星辰 simulator holds now.
    pub fn master_data(&self) -> MasterData {
        MasterData::of(self.xingchen.state())
    }

    /// Asserts that every order has exactly one bill and that it equals, field by field, the
    /// bill computed from the order and the simulator's master data.
    pub fn assert_bills_match(&self, orders: &[Order]) {
        let master = self.master_data();
        let bills = self.bills();
        let mut wrong = Vec::new();
        for order in orders {
            let expected = expected::expected_bill(order, &master).unwrap_or_else(|why| {
                panic!("order {:?} has no bill: {why}", order["stockout_no"])
            });
            match bills.get(&expected.billno) {
                None => wrong.push(format!("{}: no bill", expected.billno)),
                Some(bill) => {
                    let found = expected::differences(bill, &expected);
                    if !found.is_empty() {
                        wrong.push(format!("{}: {}", expected.billno, found.join("; ")));
                    }
                }
            }
        }
        let total = wrong.len();
        wrong.truncate(20);
        assert!(
            wrong.is_empty(),
            "{total} of {} bills are missing or wrong, the first:\n{}",
            orders.len(),
            wrong.join("\n")
        );
    }

    /// The backlog of a durable consumer on a stream; `None` while the topology does not exist.
    pub async fn backlog(&self, stream: &str, consumer: &str) -> Option<Backlog> {
        let stream = self.js.get_stream(stream).await.ok()?;
        let info = stream.consumer_info(consumer).await.ok()?;
        Some(Backlog {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending,
        })
    }

    /// Whether both consumers have nothing waiting and nothing in flight.
    pub async fn drained(&self) -> bool {
        let names = &self.names;
        let raw = self
            .backlog(&names.raw_orders_stream(), TRANSFORMER_CONSUMER)
            .await;
        // Read in pipeline order: a transformer that is done has published every bill, so the
        // loader's backlog read afterwards includes them.
        if !raw.is_some_and(|b| b.is_empty()) {
            return false;
        }
        let bills = self.backlog(&names.bills_stream(), LOADER_CONSUMER).await;
        bills.is_some_and(|b| b.is_empty())
    }

    /// Waits until the 星辰 simulator holds `bills` bills, the dead-letter stream holds
    /// `dead_letters` messages and both consumers are drained.
    pub async fn wait_until_settled(&self, bills: u64, dead_letters: u64, timeout: Duration) {
        let what = format!(
            "{bills} bills in 星辰, {dead_letters} dead letters and both consumers drained"
        );
        eventually(&what, timeout, || async {
            let settled = self.bill_count() == bills
                && self.dead_letter_count().await == dead_letters
                && self.drained().await;
            settled.then_some(())
        })
        .await;
    }

    /// Waits until the 星辰 simulator holds at least `bills` bills.
    pub async fn wait_for_bills(&self, bills: u64, timeout: Duration) {
        let what = format!("at least {bills} bills in 星辰");
        eventually(&what, timeout, || async {
            (self.bill_count() >= bills).then_some(())
        })
        .await;
    }

    /// How many messages the dead-letter stream holds (0 before it exists).
    pub async fn dead_letter_count(&self) -> u64 {
        match self.js.get_stream(self.names.dlq_stream()).await {
            Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        }
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let Ok(mut stream) = self.js.get_stream(self.names.dlq_stream()).await else {
            return Vec::new();
        };
        let state = &stream.info().await.expect("dead-letter stream info").state;
        if state.messages == 0 {
            return Vec::new();
        }
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut found = Vec::new();
        for sequence in first..=last {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let letter = DeadLetter::from_message(&message.headers, message.payload)
                .unwrap_or_else(|err| panic!("dead letter {sequence} unreadable: {err}"));
            found.push(letter);
        }
        found
    }

    /// How many messages a stream holds.
    pub async fn stream_messages(&self, stream: &str) -> u64 {
        let mut stream = self.js.get_stream(stream).await.expect("the stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    /// The names of the streams, consumers and buckets the workers use.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// How many orders the ledger knows (0 before the bucket exists).
    pub async fn ledger_len(&self) -> u64 {
        match self.js.get_key_value(self.names.ledger_bucket()).await {
            Ok(store) => ledger_keys(&store).await.len() as u64,
            Err(_) => 0,
        }
    }

    /// Every ledger entry, by `stockout_id`.
    pub async fn ledger_entries(&self) -> HashMap<String, LedgerEntry> {
        let store = self
            .js
            .get_key_value(self.names.ledger_bucket())
            .await
            .expect("the ledger bucket exists");
        let keys = ledger_keys(&store).await;
        let ledger = Ledger::new(store);
        let mut entries = HashMap::new();
        for stored in keys {
            let stockout_id = key::decode(&stored).unwrap_or(stored);
            let entry = ledger
                .get(&stockout_id)
                .await
                .expect("read a ledger entry")
                .expect("a listed key has an entry");
            entries.insert(stockout_id, entry.value);
        }
        entries
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // The test failed: show what every worker said, so the failure explains itself.
        for worker in &self.workers {
            let log = worker.process.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "----- last {} lines of {} -----\n{}",
                tail.len(),
                worker.name,
                tail.join("\n")
            );
        }
    }
}

/// The keys of the ledger bucket, as stored (encoded).
async fn ledger_keys(store: &kv::Store) -> Vec<String> {
    store
        .keys()
        .await
        .expect("list the ledger's keys")
        .filter_map(|k| async move { k.ok() })
        .collect()
        .await
}

/// Whether the default query (`status` 95 or more, by consign time) returns `order` for the
/// range `from`..=`to`.
pub fn is_shipped_within(
    order: &Order,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
) -> bool {
    let status = order.get("status").and_then(Value::as_i64).unwrap_or(0);
    let consigned = order
        .get("consign_time")
        .and_then(Value::as_str)
        .filter(|t| *t != ZERO_TIME)
        .and_then(parse_time);
    status >= 95 && consigned.is_some_and(|at| from <= at && at <= to)
}

/// The environment every worker needs to reach this harness's servers, with tiny retry delays
/// so that faults cost milliseconds, and call limits high enough not to pace a test.
fn base_env(
    nats: &NatsServer,
    wdt: &WdtSimulator,
    xingchen: &XingchenSimulator,
) -> Vec<(&'static str, String)> {
    let owned = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    let mut env = vec![
        ("NATS_URL", nats.url()),
        ("WDT_QIMEN_URL", wdt.url()),
        ("XINGCHEN_API_URL", xingchen.url()),
    ];
    env.extend(owned(&[
        ("WDT_APP_KEY", wdt::DEFAULT_APP_KEY),
        ("WDT_APP_SECRET", wdt::DEFAULT_APP_SECRET),
        ("WDT_TARGET_APP_KEY", wdt::DEFAULT_TARGET_APP_KEY),
        ("WDT_SID", wdt::DEFAULT_SID),
        ("WDT_CALLS_PER_MINUTE", "6000"),
        ("WDT_MAX_RETRIES", "10"),
        ("WDT_RETRY_MIN_DELAY_MS", "20"),
        ("WDT_RETRY_MAX_DELAY_MS", "200"),
        ("XINGCHEN_CLIENT_ID", xingchen::defaults::CLIENT_ID),
        ("XINGCHEN_CLIENT_SECRET", xingchen::defaults::CLIENT_SECRET),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            xingchen::defaults::OUTER_INSTANCE_ID,
        ),
        ("XINGCHEN_REQUESTS_PER_MINUTE", "60000"),
        ("XINGCHEN_RETRY_MIN_DELAY", "20ms"),
        ("XINGCHEN_RETRY_MAX_DELAY", "200ms"),
        ("BRIDGE_RETRY_BACKOFF", "50ms,100ms,200ms"),
        ("BRIDGE_ACK_WAIT", "5s"),
        ("METRICS_LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
        // One JSON object per line: the pretty format writes colour codes even into a file.
        ("LOG_FORMAT", "json"),
        // A host zone far from Beijing: a worker that reads WDT times through the host zone
        // dates orders shipped near midnight on the wrong day, and the bill comparison says so.
        ("TZ", "America/Los_Angeles"),
    ]));
    env
}

/// Polls until `process` exits, without blocking the runtime the simulators run on.
async fn wait_exit(
    process: &mut Process,
    name: &str,
    timeout: Duration,
) -> std::process::ExitStatus {
    let what = format!("{name} to exit");
    eventually(&what, timeout, || {
        let exited = !process.is_running();
        async move { exited.then_some(()) }
    })
    .await;
    process.wait_exit(Duration::ZERO)
}

/// An order's `stockout_no`, empty when it has none.
pub fn stockout_no(order: &Order) -> String {
    order["stockout_no"].as_str().unwrap_or_default().to_owned()
}
