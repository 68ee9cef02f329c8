//! The operator commands run as the operator runs them: the real `bridge` binary against a
//! private nats-server holding the topology the workers create, its output parsed as JSON.

use std::process::{Command, Output};

use bytes::Bytes;
use chrono::Utc;
use pipeline::dead_letter::{DeadLetter, ReasonKind};
use pipeline::message::{self, OrderIdentity, TraceContext};
use pipeline::{Names, Stage, Topology, TopologyConfig};
use serde_json::Value;
use test_support::NatsServer;

/// Runs `bridge` with `args` against `server`, with none of the variables that would point it
/// elsewhere.
fn bridge(server: &NatsServer, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge"));
    command.args(args).env("RUST_BACKTRACE", "0");
    let foreign = |name: &str| {
        ["NATS_", "BRIDGE_", "WDT_", "XINGCHEN_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "EXTRACTOR_CURSOR"
    };
    for (name, _) in std::env::vars().filter(|(name, _)| foreign(name)) {
        command.env_remove(name);
    }
    command.env("NATS_URL", server.url());
    command.output().expect("run bridge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn topology(server: &NatsServer) -> Topology {
    let jetstream = async_nats::jetstream::new(server.connect().await);
    pipeline::ensure_topology(&jetstream, &TopologyConfig::default())
        .await
        .expect("topology")
}

fn raw_order(stockout_id: &str) -> message::OutgoingMessage {
    let identity = OrderIdentity {
        stockout_id: stockout_id.to_owned(),
        stockout_no: format!("CK{stockout_id}"),
        modified: wdt::parse_cli_time("2024-05-01 12:00:00").expect("time"),
    };
    let raw = Bytes::from(format!(r#"{{"stockout_id":{stockout_id}}}"#));
    message::raw_order_message(&Names::default(), &identity, raw, &TraceContext::default())
        .expect("raw order")
}

async fn seed(topology: &Topology) {
    let orders = [raw_order("1"), raw_order("2")];
    topology
        .publisher()
        .publish_all(orders.clone(), 4)
        .await
        .expect("publish");
    let dead_letter = DeadLetter {
        stage: Stage::Transform,
        reason_kind: ReasonKind::LookupNotFound,
        reason: "customer TM001 not found".to_owned(),
        delivered: 1,
        source_stream: Some("BRIDGE_ORDERS_RAW".to_owned()),
        source_sequence: Some(1),
        source_subject: Some("bridge.orders.raw".to_owned()),
        stockout_no: Some("CK1".to_owned()),
        trace: TraceContext::default(),
        original_headers: orders[0].headers.clone(),
        payload: orders[0].payload.clone(),
        attempts: Vec::new(),
        at: Utc::now(),
    };
    topology
        .dead_letters()
        .publish(&dead_letter)
        .await
        .expect("dead letter");
}

#[tokio::test]
async fn status_json_reports_the_streams_and_dead_letters_as_published() {
    let server = NatsServer::start();
    seed(&topology(&server).await).await;

    let output = bridge(&server, &["status", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let status: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(status["streams"][0]["name"], "BRIDGE_ORDERS_RAW");
    assert_eq!(status["streams"][0]["messages"], 2);
    assert_eq!(status["streams"][0]["last_seq"], 2);
    assert_eq!(status["streams"][1]["messages"], 0);
    assert!(status["streams"][1]["first_time"].is_null());
    assert_eq!(status["consumers"][0]["name"], "transformer");
    assert_eq!(status["consumers"][0]["pending"], 2);
    assert_eq!(status["dead_letters"]["total"], 1);
    assert_eq!(
        status["dead_letters"]["by_stage"]["transform"]["lookup_not_found"],
        1
    );
    assert!(status["cursor"].is_null());
    assert_eq!(status["ledger"]["entries"], 0);
    assert_eq!(status["workers"], Value::Array(Vec::new()));
    let at = status["at"].as_str().expect("a time");
    assert!(at.ends_with("+08:00"), "times are Beijing time: {at}");

    let table = bridge(&server, &["status"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(
        table.contains("BRIDGE_ORDERS_RAW") && table.contains("lookup_not_found"),
        "{table}"
    );
}

#[tokio::test]
async fn dlq_purge_without_yes_refuses_and_keeps_the_dead_letters() {
    let server = NatsServer::start();
    seed(&topology(&server).await).await;

    let refused = bridge(&server, &["dlq", "purge"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("refusing to purge 1 dead letters without --yes"),
        "{stderr}"
    );

    let listed = bridge(&server, &["dlq", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["seq"], 1);
    assert_eq!(listed[0]["stockout_no"], "CK1");

    let purged = bridge(&server, &["dlq", "purge", "--yes", "--json"]);
    assert!(purged.status.success(), "{}", text(&purged.stderr));
    let purged: Value = serde_json::from_slice(&purged.stdout).expect("json");
    assert_eq!(purged["purged"], 1);
}

#[tokio::test]
async fn replay_dry_run_by_sequence_prints_the_selection_and_publishes_nothing() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    seed(&topology).await;

    let output = bridge(&server, &["replay", "--seq", "2..2", "--dry-run", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["selected"], 1);
    assert_eq!(report["replayed"], 0);
    assert_eq!(report["messages"][0]["stockout_no"], "CK2");
    let mut stream = topology
        .jetstream
        .get_stream("BRIDGE_ORDERS_RAW")
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);

    let neither = bridge(&server, &["replay", "--dry-run"]);
    assert!(!neither.status.success(), "a replay needs a selection");
}

#[test]
fn reconcile_needs_the_xingchen_settings_only_to_check_the_target() {
    let server = NatsServer::start();
    let window = [
        "--from",
        "2024-04-01 00:00:00",
        "--to",
        "2024-04-01 06:00:00",
    ];
    let wdt = [
        "--wdt-qimen-url",
        "http://127.0.0.1:9/router/qm",
        "--wdt-app-key",
        "k",
        "--wdt-app-secret",
        "s",
        "--wdt-target-app-key",
        "t",
        "--wdt-sid",
        "sid",
    ];
    let args: Vec<&str> = ["reconcile"]
        .into_iter()
        .chain(window)
        .chain(wdt)
        .chain(["--check-target"])
        .collect();
    let output = bridge(&server, &args);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--check-target needs the 星辰 settings: XINGCHEN_CLIENT_ID"),
        "{stderr}"
    );
}
