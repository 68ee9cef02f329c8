//! The extractor against a real `nats-server -js` and the WDT simulator on port 0: backfill
//! stores each shipped order once, byte for byte; a changed order flows again; `run` keeps its
//! cursor behind every window that was not acknowledged whole; the binary in live mode sees
//! every order exactly once across a SIGKILL and stops cleanly on SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use chrono::{DateTime, FixedOffset, SecondsFormat};
use extractor::{BackfillArgs, Extractor, RunArgs, Settings, Stats};
use pipeline::cursor::CursorStore;
use pipeline::message::{content_hash, header, parse_modified};
use pipeline::{NatsConfig, TopologyConfig};
use serde_json::{Map, Value, json};
use simulator::wdt::{
    DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SID, DEFAULT_TARGET_APP_KEY, Knobs, OrderChange,
    WdtSimConfig, WdtSimulator,
};
use telemetry::TelemetryConfig;
use test_support::NatsServer;
use test_support::process::{Process, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wdt::{Secret, WdtConfig, parse_cli_time};

/// How long any single wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

const RAW: &str = "BRIDGE_ORDERS_RAW";
const DLQ: &str = "BRIDGE_DLQ";

fn at(text: &str) -> DateTime<FixedOffset> {
    parse_cli_time(text).expect("a test time")
}

fn now() -> DateTime<FixedOffset> {
    chrono::Utc::now().with_timezone(&wdt::beijing())
}

fn wdt_config(url: &str, secret: &str) -> WdtConfig {
    WdtConfig {
        page_size: 20,
        calls_per_minute: 60_000,
        max_retries: 1,
        retry_min_delay_ms: 10,
        retry_max_delay_ms: 50,
        timeout_ms: 5_000,
        ..WdtConfig::new(
            url,
            DEFAULT_APP_KEY,
            Secret::new(secret),
            DEFAULT_TARGET_APP_KEY,
            DEFAULT_SID,
        )
    }
}

fn settings(nats: &NatsServer, wdt: WdtConfig) -> Settings {
    Settings {
        nats: NatsConfig::for_url(nats.url()),
        topology: TopologyConfig::default(),
        wdt,
        telemetry: TelemetryConfig {
            metrics_listen: Some("127.0.0.1:0".parse().expect("an address")),
            ..TelemetryConfig::default()
        },
        scheme: None,
        cursor_name: "stockout".to_owned(),
        publish_in_flight: 8,
        heartbeat_interval: Duration::from_millis(200),
        instance_id: Some("test-extractor".to_owned()),
    }
}

async fn jetstream_of(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(nats.connect().await)
}

/// Every message a stream holds, oldest first; none when the stream does not exist.
async fn messages(js: &jetstream::Context, name: &str) -> Vec<StreamMessage> {
    let Ok(mut stream) = js.get_stream(name).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut found = Vec::new();
    if state.messages == 0 {
        return found;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            found.push(message);
        }
    }
    found
}

fn header_of<'m>(message: &'m StreamMessage, name: &str) -> &'m str {
    message
        .headers
        .get(name)
        .map(|value| value.as_str())
        .unwrap_or_else(|| panic!("message {} lacks header {name}", message.sequence))
}

fn stockout_ids(messages: &[StreamMessage]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| header_of(m, header::STOCKOUT_ID).to_owned())
        .collect()
}

/// The simulator's orders that a default query returns: shipped or completed.
fn shipped(orders: Vec<Map<String, Value>>) -> BTreeMap<String, Map<String, Value>> {
    orders
        .into_iter()
        .filter(|order| order["status"].as_i64().is_some_and(|status| status >= 95))
        .map(|order| (order["stockout_id"].to_string(), order))
        .collect()
}

fn text<'o>(order: &'o Map<String, Value>, field: &str) -> &'o str {
    order[field].as_str().unwrap_or_default()
}

/// Checks that `message` is `order` byte for byte (as JSON) with its identity in headers.
fn assert_carries(message: &StreamMessage, order: &Map<String, Value>) {
    let payload: Value = serde_json::from_slice(&message.payload).expect("payload is json");
    assert_eq!(
        payload,
        Value::Object(order.clone()),
        "payload of {}",
        message.sequence
    );
    assert_eq!(
        header_of(message, header::STOCKOUT_NO),
        text(order, "stockout_no")
    );
    let modified = parse_modified(header_of(message, header::MODIFIED)).expect("modified");
    assert_eq!(modified, at(text(order, "modified")));
    let hash = content_hash(&message.payload);
    assert_eq!(header_of(message, header::CONTENT_HASH), hash);
    let msg_id = format!("{}:{hash}", header_of(message, header::STOCKOUT_ID));
    assert_eq!(header_of(message, header::MSG_ID), msg_id);
}

#[tokio::test]
async fn backfill_stores_each_shipped_order_once_and_a_changed_order_again() {
    let (from, to) = (at("2024-04-01 00:00:00"), at("2024-05-20 23:59:59"));
    let sim = WdtSimulator::start(WdtSimConfig::new(7).with_orders(120, from, to))
        .await
        .expect("simulator");
    // An order WDT sent without any number: it must reach the dead letters, not vanish.
    let mut nameless = shipped(sim.state().orders())
        .into_values()
        .next()
        .expect("a shipped order");
    nameless.insert("stockout_id".into(), json!(999_999));
    nameless.remove("stockout_no");
    nameless.remove("order_no");
    sim.state()
        .add_orders(vec![nameless.clone()])
        .expect("add an order");
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    let expected: BTreeMap<_, _> = shipped(sim.state().orders())
        .into_iter()
        .filter(|(id, _)| id != "999999")
        .collect();
    let backfill = || async {
        let config = settings(&nats, wdt_config(&sim.url(), DEFAULT_APP_SECRET));
        let args = BackfillArgs { from, to };
        Extractor::new(config)
            .expect("extractor")
            .backfill(args, CancellationToken::new())
            .await
            .expect("backfill")
    };

    let first = backfill().await;
    assert_eq!(first.stored, expected.len() as u64);
    assert_eq!((first.duplicates, first.dead_letters), (0, 1));
    assert_eq!(first.orders_read, expected.len() as u64 + 1);
    let stored = messages(&js, RAW).await;
    assert_eq!(stored.len(), expected.len());
    assert_eq!(stockout_ids(&stored), expected.keys().cloned().collect());
    for message in &stored {
        assert_carries(message, &expected[header_of(message, header::STOCKOUT_ID)]);
    }
    let dead = messages(&js, DLQ).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].subject.as_str(), "bridge.dlq.extract");
    assert_eq!(header_of(&dead[0], "dlq_reason_kind"), "malformed_order");
    let dead_payload: Value = serde_json::from_slice(&dead[0].payload).expect("json");
    assert_eq!(dead_payload, Value::Object(nameless));

    let second = backfill().await;
    assert_eq!((second.stored, second.dead_letters), (0, 0));
    assert_eq!(second.duplicates, expected.len() as u64);
    assert_eq!(messages(&js, RAW).await.len(), expected.len());
    assert_eq!(messages(&js, DLQ).await.len(), 1);

    let (changed_id, order) = expected.iter().next().expect("an order");
    let rec_id = order["details_list"][0]["rec_id"]
        .as_i64()
        .expect("a rec_id");
    let change = OrderChange {
        set: Map::from_iter([("modified".to_owned(), json!("2024-06-01 10:00:00"))]),
        details: BTreeMap::from([(
            rec_id,
            Map::from_iter([("goods_count".to_owned(), json!("97.0000"))]),
        )]),
    };
    let id: i64 = changed_id.parse().expect("a numeric id");
    let changed = sim.state().modify_order(id, &change).expect("modify");

    let third = backfill().await;
    assert_eq!(
        (third.stored, third.duplicates),
        (1, expected.len() as u64 - 1)
    );
    let stored = messages(&js, RAW).await;
    assert_eq!(stored.len(), expected.len() + 1);
    let last = stored.last().expect("the changed order");
    assert_eq!(header_of(last, header::STOCKOUT_ID), changed_id);
    assert_carries(last, &changed);
}

#[tokio::test]
async fn a_refused_signature_stops_run_and_backfill_with_the_cause() {
    let sim = WdtSimulator::start(WdtSimConfig::new(3))
        .await
        .expect("simulator");
    let nats = NatsServer::start();
    let config = settings(&nats, wdt_config(&sim.url(), "not-the-secret"));

    let run = Extractor::new(config.clone())
        .expect("extractor")
        .run(RunArgs::default(), CancellationToken::new());
    let error = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("run stops by itself")
        .expect_err("run fails");
    assert!(format!("{error:#}").contains("signature"), "{error:#}");

    let args = BackfillArgs {
        from: at("2024-05-01 00:00:00"),
        to: at("2024-05-02 00:00:00"),
    };
    let error = Extractor::new(config)
        .expect("extractor")
        .backfill(args, CancellationToken::new())
        .await
        .expect_err("backfill fails");
    assert!(format!("{error:#}").contains("signature"), "{error:#}");
}

struct Running {
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<extractor::Summary>>,
}

fn start_run(config: Settings, args: RunArgs) -> Running {
    let extractor = Extractor::new(config).expect("extractor");
    let stats = extractor.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(extractor.run(args, shutdown.clone()));
    Running {
        stats,
        shutdown,
        task,
    }
}

async fn failed_windows_reach(stats: &Stats, count: u64) {
    let what = format!("{count} failed windows");
    eventually(&what, PATIENCE, || async {
        (stats.counts().failed_windows >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_cursor_stays_behind_every_window_not_acknowledged_whole() {
    let sim = WdtSimulator::start(WdtSimConfig::new(5).with_orders(
        30,
        now() - chrono::Duration::minutes(30),
        now() - chrono::Duration::minutes(10),
    ))
    .await
    .expect("simulator");
    let failing = Knobs {
        server_error_fraction: 1.0,
        ..Knobs::default()
    };
    sim.state().set_knobs(failing);
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    let args = RunArgs {
        start: Some(now() - chrono::Duration::hours(1)),
        lag: Duration::from_secs(1),
        overlap: Duration::from_secs(5),
        interval: Duration::from_millis(200),
    };
    let running = start_run(
        settings(&nats, wdt_config(&sim.url(), DEFAULT_APP_SECRET)),
        args,
    );
    let stats = running.stats.clone();

    // WDT answers 503 past the client's retries: windows fail and the cursor is never set.
    failed_windows_reach(&stats, 2).await;
    let topology = pipeline::ensure_topology(&js, &TopologyConfig::default())
        .await
        .expect("topology");
    let cursor = CursorStore::new(topology.cursor.clone(), "stockout");
    assert_eq!(cursor.read().await.expect("read"), None);
    assert!(messages(&js, RAW).await.is_empty());

    // WDT recovers: every order arrives and the cursor is set.
    sim.state().set_knobs(Knobs::default());
    let expected = shipped(sim.state().orders());
    eventually("every order in the stream", PATIENCE, || async {
        (messages(&js, RAW).await.len() == expected.len()).then_some(())
    })
    .await;
    eventually("the cursor set", PATIENCE, || async {
        cursor.read().await.expect("read")
    })
    .await;
    let heartbeat = topology
        .workers
        .get("extract.test-extractor")
        .await
        .expect("read the heartbeat")
        .expect("a heartbeat");
    let heartbeat: Value = serde_json::from_slice(&heartbeat).expect("json");
    assert_eq!(heartbeat["stage"], "extract");
    assert_eq!(heartbeat["instance"], "test-extractor");
    assert!(
        heartbeat["processed"]["stored"].as_u64().is_some(),
        "{heartbeat}"
    );

    // The raw stream disappears: publishes fail, and the cursor must not move past them.
    js.delete_stream(RAW).await.expect("delete the raw stream");
    let new_ids = sim.state().generate(3, now(), now());
    let failed = stats.counts().failed_windows;
    failed_windows_reach(&stats, failed + 1).await;
    let stuck = cursor.read().await.expect("read").expect("a cursor");
    failed_windows_reach(&stats, failed + 4).await;
    let still = cursor.read().await.expect("read").expect("a cursor");
    assert_eq!(still, stuck, "the cursor moved past unacknowledged windows");

    // The stream is back: the windows the cursor held back are published after all.
    pipeline::ensure_topology(&js, &TopologyConfig::default())
        .await
        .expect("topology again");
    let new_ids: BTreeSet<String> = new_ids.iter().map(i64::to_string).collect();
    eventually("the new orders in the stream", PATIENCE, || async {
        let ids = stockout_ids(&messages(&js, RAW).await);
        new_ids.is_subset(&ids).then_some(())
    })
    .await;
    eventually("the cursor moved again", PATIENCE, || async {
        let moved = cursor.read().await.expect("read")?;
        (moved.at > stuck.at).then_some(())
    })
    .await;

    running.shutdown.cancel();
    let summary = tokio::time::timeout(PATIENCE, running.task)
        .await
        .expect("run stops on the signal")
        .expect("the task")
        .expect("run ends well");
    assert!(summary.stored >= expected.len() as u64 + 3);
}

fn process_env(nats: &NatsServer, sim: &WdtSimulator) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url()),
        ("WDT_QIMEN_URL", sim.url()),
        ("WDT_APP_KEY", DEFAULT_APP_KEY.to_owned()),
        ("WDT_APP_SECRET", DEFAULT_APP_SECRET.to_owned()),
        ("WDT_TARGET_APP_KEY", DEFAULT_TARGET_APP_KEY.to_owned()),
        ("WDT_SID", DEFAULT_SID.to_owned()),
        ("WDT_CALLS_PER_MINUTE", "6000".to_owned()),
        ("WDT_RETRY_MIN_DELAY_MS", "50".to_owned()),
        ("WDT_RETRY_MAX_DELAY_MS", "200".to_owned()),
        ("METRICS_LISTEN", "127.0.0.1:0".to_owned()),
        ("BRIDGE_HEARTBEAT_INTERVAL", "1s".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
}

fn spawn_run(env: &[(&str, String)], start: DateTime<FixedOffset>) -> Process {
    let start = start.to_rfc3339_opts(SecondsFormat::Secs, false);
    let args = [
        "run",
        "--start",
        &start,
        "--lag",
        "2s",
        "--overlap",
        "10s",
        "--interval",
        "1s",
    ];
    Process::spawn_path(
        Path::new(env!("CARGO_BIN_EXE_extractor")),
        "extractor",
        args,
        env,
    )
}

async fn wait_exit(mut process: Process) -> (std::process::ExitStatus, String) {
    // The wait blocks its thread; the simulator keeps answering on the runtime's other one.
    tokio::task::spawn_blocking(move || {
        let status = process.wait_exit(PATIENCE);
        (status, process.log())
    })
    .await
    .expect("the waiting thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sees_every_live_order_once_across_a_crash_and_stops_on_sigterm() {
    // Orders ship over the next half minute and WDT shows each up to 4 s late; the lag (2 s)
    // is shorter than that, so only the overlap (10 s) catches the late ones.
    let knobs = Knobs {
        live: true,
        live_delay_max_secs: 4,
        ..Knobs::default()
    };
    let consign_from = now() + chrono::Duration::seconds(3);
    let consign_to = now() + chrono::Duration::seconds(33);
    let sim = WdtSimulator::start(WdtSimConfig {
        knobs,
        ..WdtSimConfig::new(11).with_orders(40, consign_from, consign_to)
    })
    .await
    .expect("simulator");
    let expected = shipped(sim.state().orders());
    let nats = NatsServer::start();
    let js = jetstream_of(&nats).await;
    let env = process_env(&nats, &sim);

    let mut first = spawn_run(&env, now() - chrono::Duration::seconds(30));
    let third = expected.len() / 3;
    eventually(
        "a third of the orders before the crash",
        Duration::from_secs(60),
        || async { (messages(&js, RAW).await.len() >= third).then_some(()) },
    )
    .await;
    first.kill();
    assert!(first.log().contains("Serving /metrics"), "{}", first.log());

    // A start a day ahead would read nothing: only the stored cursor lets it resume.
    let second = spawn_run(&env, now() + chrono::Duration::days(1));
    let all = eventually(
        "every order in the stream",
        Duration::from_secs(90),
        || async {
            let stored = messages(&js, RAW).await;
            (stockout_ids(&stored).len() >= expected.len()).then_some(stored)
        },
    )
    .await;
    assert_eq!(stockout_ids(&all), expected.keys().cloned().collect());
    assert_eq!(all.len(), expected.len(), "an order was stored twice");
    for message in &all {
        assert_carries(message, &expected[header_of(message, header::STOCKOUT_ID)]);
    }
    let trace_ids: BTreeSet<_> = all
        .iter()
        .map(|m| {
            header_of(m, header::TRACEPARENT)
                .split('-')
                .nth(1)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        trace_ids.len(),
        all.len(),
        "each order starts its own trace"
    );

    second.terminate();
    let (status, log) = wait_exit(second).await;
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("Sync stopped"), "{log}");
    assert_eq!(messages(&js, RAW).await.len(), expected.len());
}
