//! The bridge on a 3-node NATS cluster: the three workers as processes, logged in with user and
//! password, every stream and bucket with 3 replicas, and one node killed while orders travel.
//!
//! The claim under test is the one the README makes for `deploy/nats-cluster/`: losing any one
//! node loses nothing acknowledged and posts nothing twice. The outcome is judged from the
//! outside: the bills the 星辰 simulator holds (one per order, no number twice), the ledger
//! bucket (one entry per order), the dead-letter stream (empty) and the consumers (drained).
//! The cluster itself is `test_support::cluster`; building the worker binaries first is the
//! runner's job (`scripts/test`).

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use pipeline::Names;
use pipeline::names::{DEFAULT_PREFIX, LOADER_CONSUMER, TRANSFORMER_CONSUMER};
use simulator::orders::{OrderGenConfig, parse_time};
use simulator::wdt::{self, WdtSimConfig, WdtSimulator};
use simulator::world::World;
use simulator::xingchen::{self, SimulatorConfig, XingchenSimulator};
use test_support::cluster::NatsCluster;
use test_support::process::{Process, eventually};

const ORDERS: usize = 300;
const FROM: &str = "2024-06-01 00:00:00";
const TO: &str = "2024-06-03 23:59:59";
/// Generous: the cluster elects new leaders after the kill, and the tests share two cores.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
const EXIT_TIMEOUT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_loses_a_node_mid_run_loses_and_doubles_nothing() {
    let mut cluster = NatsCluster::start(3, "bridge", "cluster-test-password");
    cluster.wait_for_jetstream().await;
    let world = World::generate(7);
    let (from, to) = (parse_time(FROM).unwrap(), parse_time(TO).unwrap());
    let wdt = WdtSimulator::start(WdtSimConfig {
        world: Some(world.clone()),
        orders: Some(OrderGenConfig {
            unshipped_fraction: 0.0,
            ..OrderGenConfig::new(7, ORDERS, from, to)
        }),
        ..WdtSimConfig::new(7)
    })
    .await
    .unwrap();
    let xingchen = XingchenSimulator::start(&world, SimulatorConfig::default())
        .await
        .unwrap();
    // Slow enough that the kill lands while all three stages are busy.
    wdt.state().set_knobs(wdt::Knobs {
        latency_ms: 200,
        ..wdt::Knobs::default()
    });
    xingchen.state().update_knobs(|knobs| knobs.latency_ms = 20);

    // Node 1 is the only URL the workers are given and the node that dies: they must carry on
    // through the servers the cluster told them about.
    let env = worker_env(&cluster, &wdt, &xingchen);
    let mut workers = Workers::default();
    let js = jetstream::new(cluster.connect().await);
    let names = Names::new(DEFAULT_PREFIX).unwrap();
    // One worker creates the topology before the others start: concurrent creates of the same
    // replicated stream each wait out a 10 s request timeout on nats-server 2.14.
    workers.start("transformer", &[], &env);
    let what = "the transformer to create every stream, consumer and bucket";
    eventually(what, SETTLE_TIMEOUT, || async {
        topology_exists(&js, &names).await.then_some(())
    })
    .await;
    workers.start("loader", &[], &env);
    let backfill = ["backfill", "--from", FROM, "--to", TO].map(str::to_owned);
    workers.start("extractor", &backfill, &env);

    let what = "bills being posted before the node is killed";
    eventually(what, SETTLE_TIMEOUT, || async {
        (xingchen.state().stats().bills >= 20).then_some(())
    })
    .await;
    assert!(
        workers.is_running("extractor"),
        "the backfill finished before the node was killed; the test would prove nothing"
    );
    cluster.stop_node(0);

    // The backfill must ride out the failover on its own: its publishes retry while the
    // cluster elects new leaders, and NATS_URL names every node, so nothing asks the operator
    // to run it again.
    let status = workers.wait_exit("extractor", SETTLE_TIMEOUT).await;
    assert!(status.success(), "{}", workers.failure("extractor", status));
    let what = format!("{ORDERS} bills, no dead letter and both consumers drained");
    eventually(&what, SETTLE_TIMEOUT, || async {
        let settled = xingchen.state().stats().bills == ORDERS as u64
            && stream_messages(&js, &names.dlq_stream()).await == 0
            && drained(&js, &names).await;
        settled.then_some(())
    })
    .await;

    let bills = xingchen.state().bills();
    let numbers: HashSet<String> = bills
        .iter()
        .map(|bill| bill["billno"].as_str().unwrap().to_owned())
        .collect();
    let ordered: HashSet<String> = wdt
        .state()
        .orders()
        .iter()
        .map(|order| order["stockout_no"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bills.len(), ORDERS, "one bill per order");
    assert_eq!(numbers.len(), ORDERS, "no bill number twice");
    assert_eq!(numbers, ordered, "every order's number has its bill");
    // Listing keys reads the bucket's stream through a fresh consumer, which can time out while
    // the cluster is still settling its leaders after the failover: ask again until it answers.
    let entries = eventually("the ledger's keys to be listed", SETTLE_TIMEOUT, || {
        ledger_len(&js, &names)
    })
    .await;
    assert_eq!(entries, ORDERS, "one ledger entry per order");
    let raw = js.get_stream(names.raw_orders_stream()).await.unwrap();
    assert_eq!(raw.cached_info().config.num_replicas, 3);

    for name in ["transformer", "loader"] {
        workers.terminate(name);
        let status = workers.wait_exit(name, EXIT_TIMEOUT).await;
        assert!(status.success(), "{}", workers.failure(name, status));
    }
}

/// What every worker needs to reach the cluster (node 1 only, as user and password) and the
/// simulators, with retries tiny enough that a failover costs seconds.
fn worker_env(
    cluster: &NatsCluster,
    wdt: &WdtSimulator,
    xingchen: &XingchenSimulator,
) -> Vec<(&'static str, String)> {
    let fixed = [
        ("NATS_USER", cluster.user()),
        ("NATS_PASSWORD", cluster.password()),
        ("BRIDGE_STREAM_REPLICAS", "3"),
        ("WDT_APP_KEY", wdt::DEFAULT_APP_KEY),
        ("WDT_APP_SECRET", wdt::DEFAULT_APP_SECRET),
        ("WDT_TARGET_APP_KEY", wdt::DEFAULT_TARGET_APP_KEY),
        ("WDT_SID", wdt::DEFAULT_SID),
        ("WDT_PAGE_SIZE", "20"),
        ("WDT_CALLS_PER_MINUTE", "6000"),
        ("WDT_RETRY_MIN_DELAY_MS", "50"),
        ("WDT_RETRY_MAX_DELAY_MS", "500"),
        ("WDT_MAX_RETRIES", "20"),
        ("XINGCHEN_CLIENT_ID", xingchen::defaults::CLIENT_ID),
        ("XINGCHEN_CLIENT_SECRET", xingchen::defaults::CLIENT_SECRET),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            xingchen::defaults::OUTER_INSTANCE_ID,
        ),
        ("XINGCHEN_REQUESTS_PER_MINUTE", "60000"),
        ("XINGCHEN_RETRY_MIN_DELAY", "20ms"),
        ("XINGCHEN_RETRY_MAX_DELAY", "200ms"),
        ("BRIDGE_RETRY_BACKOFF", "100ms,250ms,500ms"),
        ("BRIDGE_ACK_WAIT", "5s"),
        ("BRIDGE_MAX_DELIVER", "50"),
        ("METRICS_LISTEN", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ];
    let mut env = vec![
        ("NATS_URL", cluster.urls()),
        ("WDT_QIMEN_URL", wdt.url()),
        ("XINGCHEN_API_URL", xingchen.url()),
    ];
    env.extend(fixed.map(|(key, value)| (key, value.to_owned())));
    env
}

/// The worker processes, by name; their logs are printed when the test fails.
#[derive(Default)]
struct Workers {
    processes: Vec<(String, Process)>,
}

impl Workers {
    /// Starts the binary `name` (before any `-`: `extractor-again` is `extractor`).
    fn start(&mut self, name: &str, args: &[String], env: &[(&str, String)]) {
        let binary = name.split('-').next().unwrap_or(name);
        let process = Process::spawn(binary, args, env);
        self.processes.push((name.to_owned(), process));
    }

    fn process(&mut self, name: &str) -> &mut Process {
        let found = self.processes.iter_mut().find(|(n, _)| n == name);
        &mut found.expect("a worker of that name was started").1
    }

    fn is_running(&mut self, name: &str) -> bool {
        self.process(name).is_running()
    }

    fn terminate(&mut self, name: &str) {
        self.process(name).terminate();
    }

    /// Polls until the worker exits, without blocking the runtime the simulators run on.
    async fn wait_exit(&mut self, name: &str, timeout: Duration) -> std::process::ExitStatus {
        let process = self.process(name);
        eventually(&format!("{name} to exit"), timeout, || {
            let exited = !process.is_running();
            async move { exited.then_some(()) }
        })
        .await;
        process.wait_exit(Duration::ZERO)
    }

    fn failure(&mut self, name: &str, status: std::process::ExitStatus) -> String {
        format!(
            "{name} exited with {status}; its log:\n{}",
            self.process(name).log()
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (name, process) in &self.processes {
            let log = process.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- last lines of {name} -----\n{}", tail.join("\n"));
        }
    }
}

async fn stream_messages(js: &Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Both consumers with nothing waiting and nothing in flight, read in pipeline order.
async fn drained(js: &Context, names: &Names) -> bool {
    let consumers = [
        (names.raw_orders_stream(), TRANSFORMER_CONSUMER),
        (names.bills_stream(), LOADER_CONSUMER),
    ];
    for (stream, consumer) in consumers {
        let Ok(stream) = js.get_stream(stream).await else {
            return false;
        };
        let Ok(info) = stream.consumer_info(consumer).await else {
            return false;
        };
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return false;
        }
    }
    true
}

/// Whether every stream, consumer and bucket of the topology exists.
async fn topology_exists(js: &Context, names: &Names) -> bool {
    for stream in [
        names.raw_orders_stream(),
        names.bills_stream(),
        names.dlq_stream(),
    ] {
        if js.get_stream(stream).await.is_err() {
            return false;
        }
    }
    for bucket in [
        names.cursor_bucket(),
        names.masterdata_bucket(),
        names.ledger_bucket(),
        names.workers_bucket(),
        names.budget_bucket(),
    ] {
        if js.get_key_value(bucket).await.is_err() {
            return false;
        }
    }
    let consumers = [
        (names.raw_orders_stream(), TRANSFORMER_CONSUMER),
        (names.bills_stream(), LOADER_CONSUMER),
    ];
    for (stream, consumer) in consumers {
        let Ok(stream) = js.get_stream(stream).await else {
            return false;
        };
        if stream.consumer_info(consumer).await.is_err() {
            return false;
        }
    }
    true
}

/// The number of ledger entries, or `None` when the cluster did not answer this time.
async fn ledger_len(js: &Context, names: &Names) -> Option<usize> {
    let store = js.get_key_value(names.ledger_bucket()).await.ok()?;
    let mut keys = store.keys().await.ok()?;
    let mut count = 0;
    while let Some(key) = keys.next().await {
        key.ok()?;
        count += 1;
    }
    Some(count)
}
