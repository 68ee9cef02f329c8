//! The operator commands against a real `nats-server -js` with the topology the workers create,
//! fed with the pipeline's own message builders (no worker needed), and against the WDT and 星辰
//! simulators in-process for reconcile. Each test starts its own server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use ops::dlq::{DlqFilter, RedriveSelection};
use ops::reconcile::ReconcileRequest;
use ops::replay::{ReplayRequest, Selector, SeqRange};
use ops::status::StatusOptions;
use ops::{Ops, OpsError};
use pipeline::cursor::CursorStore;
use pipeline::dead_letter::{Attempt, DeadLetter, ReasonKind, dlq_header};
use pipeline::ledger::{Ledger, LedgerEntry};
use pipeline::message::{self, OrderIdentity, OutgoingMessage, TraceContext, header};
use pipeline::worker::{Delivery, Handler, Outcome, Worker};
use pipeline::{NatsConfig, PullConfig, Stage, Topology, TopologyConfig};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use simulator::wdt::{
    DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SID, DEFAULT_TARGET_APP_KEY, WdtSimConfig,
    WdtSimulator,
};
use simulator::world::World;
use simulator::xingchen::{SimulatorConfig, XingchenSimulator, defaults};
use test_support::NatsServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wdt::{ReadFilter, WdtClient, WdtConfig, WindowReader, parse_cli_time};
use xingchen::{Bill, BillLine, Client, XingchenConfig};

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

const TRACE_A: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_B: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_C: &str = "00-11111111111111111111111111111111-2222222222222222-01";

async fn start(server: &NatsServer) -> (Topology, Ops) {
    let client = pipeline::connect(&NatsConfig::for_url(server.url()))
        .await
        .expect("connect");
    let jetstream = jetstream::new(client);
    let topology = pipeline::ensure_topology(&jetstream, &TopologyConfig::default())
        .await
        .expect("topology");
    let ops = Ops::new(jetstream, topology.names.clone());
    (topology, ops)
}

fn beijing(text: &str) -> DateTime<FixedOffset> {
    parse_cli_time(text).expect("a test time")
}

fn identity(stockout_id: &str) -> OrderIdentity {
    OrderIdentity {
        stockout_id: stockout_id.to_owned(),
        stockout_no: format!("CK{stockout_id}"),
        modified: beijing("2024-05-01 12:00:00"),
    }
}

fn trace(traceparent: &str) -> TraceContext {
    TraceContext {
        traceparent: Some(traceparent.to_owned()),
        tracestate: None,
    }
}

fn raw_order(stockout_id: &str, version: u32, traceparent: &str) -> OutgoingMessage {
    let raw = Bytes::from(format!(
        r#"{{"stockout_id":{stockout_id},"version":{version}}}"#
    ));
    message::raw_order_message(
        &pipeline::Names::default(),
        &identity(stockout_id),
        raw,
        &trace(traceparent),
    )
    .expect("raw order message")
}

fn bill(stockout_id: &str, traceparent: &str) -> OutgoingMessage {
    let bill = Bytes::from(format!(r#"{{"billno":"CK{stockout_id}"}}"#));
    let published_at = DateTime::parse_from_rfc3339("2024-05-01T04:00:01Z")
        .expect("time")
        .with_timezone(&Utc);
    message::bill_message(
        &pipeline::Names::default(),
        &identity(stockout_id),
        bill,
        &trace(traceparent),
        published_at,
    )
    .expect("bill message")
}

/// A dead letter as a worker of `stage` writes it for the message `original`, which was at
/// `source_seq` of its stream.
fn dead_letter(
    stage: Stage,
    kind: ReasonKind,
    original: &OutgoingMessage,
    source_seq: u64,
) -> DeadLetter {
    let source_stream = match stage {
        Stage::Extract => "wdt.stockout.order.query.trade",
        Stage::Transform => "BRIDGE_ORDERS_RAW",
        Stage::Load => "BRIDGE_BILLS",
    };
    DeadLetter {
        stage,
        reason_kind: kind,
        reason: format!("{kind} in test"),
        delivered: 2,
        source_stream: Some(source_stream.to_owned()),
        source_sequence: (stage != Stage::Extract).then_some(source_seq),
        source_subject: Some(original.subject.clone()),
        stockout_no: original
            .headers
            .get(header::STOCKOUT_NO)
            .map(|v| v.as_str().to_owned()),
        trace: TraceContext::from_headers(Some(&original.headers)),
        original_headers: original.headers.clone(),
        payload: original.payload.clone(),
        attempts: vec![Attempt {
            delivered: 1,
            at: Utc::now(),
            error: "gateway 503".to_owned(),
        }],
        at: Utc::now(),
    }
}

async fn publish(topology: &Topology, messages: impl IntoIterator<Item = OutgoingMessage>) {
    let summary = topology
        .publisher()
        .publish_all(messages, 8)
        .await
        .expect("publish");
    assert_eq!(summary.duplicates, 0, "test messages must all be new");
}

async fn publish_dead_letters(topology: &Topology, dead_letters: &[DeadLetter]) {
    for dead_letter in dead_letters {
        topology
            .dead_letters()
            .publish(dead_letter)
            .await
            .expect("publish dead letter");
    }
}

/// Every message a stream holds, oldest first.
async fn messages(topology: &Topology, name: &str) -> Vec<StreamMessage> {
    let mut stream = topology.jetstream.get_stream(name).await.expect("stream");
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

fn header_of<'m>(message: &'m StreamMessage, name: &str) -> Option<&'m str> {
    message.headers.get(name).map(|value| value.as_str())
}

async fn stored_at(topology: &Topology, stream: &str, seq: u64) -> DateTime<FixedOffset> {
    let stream = topology.jetstream.get_stream(stream).await.expect("stream");
    let stored = stream.get_raw_message(seq).await.expect("stored message");
    DateTime::<Utc>::from(std::time::SystemTime::from(stored.time)).with_timezone(&wdt::beijing())
}

fn ledger_entry(stockout_no: &str, modified: DateTime<FixedOffset>) -> LedgerEntry {
    LedgerEntry {
        bill_id: format!("bill-{stockout_no}"),
        billno: stockout_no.to_owned(),
        content_hash: "0123456789abcdef0123456789abcdef".to_owned(),
        modified,
        loaded_at: Utc::now(),
    }
}

async fn put_heartbeat(topology: &Topology, stage: &str, instance: &str, acked: u64) {
    let value = json!({
        "stage": stage, "instance": instance, "version": "0.1.0", "pid": 4242,
        "host": "test-host", "started_at": "2024-05-01T00:00:00Z",
        "processed": {"acked": acked, "retried": 1}
    });
    let key = format!("{stage}.{}", pipeline::key::encode(instance));
    topology
        .workers
        .put(key, Bytes::from(value.to_string()))
        .await
        .expect("heartbeat");
}

#[tokio::test]
async fn status_counts_what_the_pipeline_holds_and_who_is_alive() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;

    let raw: Vec<_> = ["1", "2", "3"].map(|id| raw_order(id, 1, TRACE_A)).into();
    publish(&topology, raw.clone()).await;
    publish(&topology, [bill("1", TRACE_A), bill("2", TRACE_A)]).await;
    publish_dead_letters(
        &topology,
        &[
            dead_letter(Stage::Transform, ReasonKind::LookupNotFound, &raw[0], 1),
            dead_letter(Stage::Transform, ReasonKind::LookupNotFound, &raw[1], 2),
            dead_letter(Stage::Transform, ReasonKind::MissingField, &raw[2], 3),
            dead_letter(
                Stage::Load,
                ReasonKind::TargetRejected,
                &bill("1", TRACE_A),
                1,
            ),
        ],
    )
    .await;

    let cursor_at = Utc::now().with_timezone(&wdt::beijing()) - chrono::Duration::minutes(5);
    CursorStore::new(topology.cursor.clone(), "stockout")
        .advance(cursor_at)
        .await
        .expect("cursor");
    let ledger = Ledger::new(topology.ledger.clone());
    for id in ["1", "2", "3"] {
        let entry = ledger_entry(&format!("CK{id}"), beijing("2024-05-01 12:00:00"));
        ledger.put(id, &entry, None).await.expect("ledger entry");
    }
    // A deleted entry leaves a marker in the bucket's stream; it must not count.
    topology.ledger.delete("3").await.expect("delete entry");

    put_heartbeat(&topology, "transform", "old.host", 5).await;
    // The first heartbeat must be older than three intervals of 300 ms when status looks.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    put_heartbeat(&topology, "load", "fresh-host", 9).await;

    let options = StatusOptions {
        cursor_name: "stockout".to_owned(),
        heartbeat_interval: Duration::from_millis(300),
    };
    let status = ops.status(&options).await.expect("status");

    let streams: BTreeMap<&str, (u64, u64, u64)> = status
        .streams
        .iter()
        .map(|s| (s.name.as_str(), (s.messages, s.first_seq, s.last_seq)))
        .collect();
    assert_eq!(streams["BRIDGE_ORDERS_RAW"], (3, 1, 3));
    assert_eq!(streams["BRIDGE_BILLS"], (2, 1, 2));
    assert_eq!(streams["BRIDGE_DLQ"], (4, 1, 4));
    let raw_stream = &status.streams[0];
    assert!(raw_stream.bytes > 0);
    assert!(raw_stream.first_time.is_some() && raw_stream.last_time >= raw_stream.first_time);

    let pending: BTreeMap<&str, (u64, u64, u64)> = status
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), (c.pending, c.ack_pending, c.redelivered)))
        .collect();
    assert_eq!(pending["transformer"], (3, 0, 0));
    assert_eq!(pending["loader"], (2, 0, 0));

    assert_eq!(status.dead_letters.total, 4);
    let by_stage = &status.dead_letters.by_stage;
    assert_eq!(by_stage["transform"]["lookup_not_found"], 2);
    assert_eq!(by_stage["transform"]["missing_field"], 1);
    assert_eq!(by_stage["load"]["target_rejected"], 1);
    assert_eq!(by_stage.len(), 2);

    let cursor = status.cursor.as_ref().expect("cursor set");
    assert_eq!(cursor.at, cursor_at);
    assert!(
        (300..=330).contains(&cursor.lag_seconds),
        "lag {}",
        cursor.lag_seconds
    );
    assert_eq!(status.ledger.entries, 2);

    let workers: BTreeMap<&str, (bool, u64)> = status
        .workers
        .iter()
        .map(|w| {
            let acked = w.processed["acked"].as_u64().expect("count");
            (w.instance.as_str(), (w.alive, acked))
        })
        .collect();
    assert_eq!(workers["old.host"], (false, 5));
    assert_eq!(workers["fresh-host"], (true, 9));
    let fresh = status
        .workers
        .iter()
        .find(|w| w.alive)
        .expect("a live worker");
    assert_eq!(
        (fresh.stage.as_str(), fresh.version.as_str(), fresh.pid),
        ("load", "0.1.0", Some(4242))
    );

    let text = status.to_text();
    assert!(text.contains("BRIDGE_ORDERS_RAW"), "{text}");
    assert!(text.contains("lookup_not_found"), "{text}");
    assert!(text.contains("dead"), "{text}");
}

#[tokio::test]
async fn status_of_an_empty_bridge_has_no_cursor_and_no_workers() {
    let server = NatsServer::start();
    let (_topology, ops) = start(&server).await;
    let status = ops.status(&StatusOptions::default()).await.expect("status");
    assert!(
        status
            .streams
            .iter()
            .all(|s| s.messages == 0 && s.first_time.is_none())
    );
    assert!(status.cursor.is_none());
    assert_eq!(status.dead_letters.total, 0);
    assert_eq!(status.ledger.entries, 0);
    assert!(status.workers.is_empty());
}

#[tokio::test]
async fn commands_on_a_bridge_without_topology_say_what_is_missing() {
    let server = NatsServer::start();
    let client = server.connect().await;
    let ops = Ops::new(jetstream::new(client), pipeline::Names::default());
    let error = ops
        .status(&StatusOptions::default())
        .await
        .expect_err("no topology");
    assert!(
        matches!(error, OpsError::MissingStream { ref stream } if stream == "BRIDGE_ORDERS_RAW"),
        "{error}"
    );
    assert!(!error.is_transient());
}

fn replay(stage: Stage, selector: Selector, dry_run: bool) -> ReplayRequest {
    ReplayRequest {
        stage,
        selector,
        dry_run,
    }
}

#[tokio::test]
async fn replay_by_store_time_refeeds_exactly_the_range_with_fresh_ids_and_the_replay_mark() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let originals: Vec<_> = ["1", "2", "3", "4", "5"]
        .map(|id| raw_order(id, 1, TRACE_A))
        .into();
    for original in &originals {
        publish(&topology, [original.clone()]).await;
    }
    let from = stored_at(&topology, "BRIDGE_ORDERS_RAW", 2).await;
    let to = stored_at(&topology, "BRIDGE_ORDERS_RAW", 4).await;

    let dry = ops
        .replay(&replay(
            Stage::Transform,
            Selector::Stored { from, to },
            true,
        ))
        .await
        .expect("dry run");
    let seqs: Vec<u64> = dry.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!((dry.selected, dry.replayed), (3, 0));
    assert!(dry.messages.iter().all(|m| m.msg_id.is_none()));
    assert_eq!(
        messages(&topology, "BRIDGE_ORDERS_RAW").await.len(),
        5,
        "a dry run publishes nothing"
    );

    let report = ops
        .replay(&replay(
            Stage::Transform,
            Selector::Stored { from, to },
            false,
        ))
        .await
        .expect("replay");
    assert_eq!(
        (report.selected, report.replayed, report.duplicates),
        (3, 3, 0)
    );
    assert_eq!(report.subject, "bridge.orders.raw");

    let stored = messages(&topology, "BRIDGE_ORDERS_RAW").await;
    assert_eq!(
        stored.len(),
        8,
        "the copies are stored, not taken for duplicates"
    );
    for (copy, original_seq) in stored[5..].iter().zip([2u64, 3, 4]) {
        let original = &originals[usize::try_from(original_seq - 1).expect("index")];
        assert_eq!(copy.payload, original.payload, "payload byte for byte");
        let msg_id = header_of(copy, header::MSG_ID).expect("msg id");
        assert!(
            msg_id.starts_with("replay:") && msg_id.ends_with(original.msg_id().expect("id")),
            "{msg_id}"
        );
        let original_seq_text = original_seq.to_string();
        assert_eq!(
            header_of(copy, "bridge_replay_of"),
            Some(original_seq_text.as_str())
        );
        assert!(header_of(copy, "bridge_replay").is_some());
        assert_eq!(header_of(copy, header::TRACEPARENT), Some(TRACE_A));
        assert_eq!(
            header_of(copy, header::STOCKOUT_NO),
            header_of(
                &stored[usize::try_from(original_seq - 1).expect("index")],
                header::STOCKOUT_NO
            )
        );
    }
    let reported: Vec<&str> = report
        .messages
        .iter()
        .map(|m| m.msg_id.as_deref().expect("id"))
        .collect();
    let published: Vec<&str> = stored[5..]
        .iter()
        .map(|m| header_of(m, header::MSG_ID).expect("id"))
        .collect();
    assert_eq!(reported, published);

    // The transformer's durable consumer sees the copies.
    let consumer = topology
        .transformer
        .clone()
        .info()
        .await
        .expect("info")
        .num_pending;
    assert_eq!(consumer, 8);
}

#[tokio::test]
async fn replay_by_sequence_or_order_number_selects_exactly_those_and_can_repeat() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    publish(
        &topology,
        [
            raw_order("1", 1, TRACE_A),
            raw_order("2", 1, TRACE_A),
            raw_order("3", 1, TRACE_A),
            raw_order("4", 1, TRACE_A),
            raw_order("2", 2, TRACE_A),
        ],
    )
    .await;

    let by_seq = ops
        .replay(&replay(
            Stage::Transform,
            Selector::Sequences(SeqRange { first: 2, last: 3 }),
            false,
        ))
        .await
        .expect("replay by seq");
    let seqs: Vec<u64> = by_seq.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(by_seq.replayed, 2);

    let orders = Selector::Orders(vec!["CK2".to_owned(), "CK9".to_owned()]);
    let by_order = ops
        .replay(&replay(Stage::Transform, orders.clone(), false))
        .await
        .expect("replay by order");
    // Both versions of CK2 and the copy of seq 2 the first replay made; CK9 is nowhere.
    let seqs: Vec<u64> = by_order.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [2, 5, 6]);
    assert!(
        by_order
            .messages
            .iter()
            .all(|m| m.stockout_no.as_deref() == Some("CK2"))
    );

    let again = ops
        .replay(&replay(Stage::Transform, orders, false))
        .await
        .expect("replay again");
    // Every CK2 message again, the copies the last replay made included.
    assert_eq!(
        (again.selected, again.replayed, again.duplicates),
        (6, 6, 0)
    );
    assert_eq!(
        messages(&topology, "BRIDGE_ORDERS_RAW").await.len(),
        5 + 2 + 3 + 6
    );
}

#[tokio::test]
async fn replaying_bills_feeds_the_loader_with_a_fresh_publication_time() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    publish(&topology, [bill("1", TRACE_A), bill("2", TRACE_B)]).await;
    publish(&topology, [raw_order("1", 1, TRACE_A)]).await;

    let report = ops
        .replay(&replay(
            Stage::Load,
            Selector::Orders(vec!["CK2".to_owned()]),
            false,
        ))
        .await
        .expect("replay bills");
    assert_eq!(
        (report.stream.as_str(), report.replayed),
        ("BRIDGE_BILLS", 1)
    );

    let bills = messages(&topology, "BRIDGE_BILLS").await;
    assert_eq!(bills.len(), 3);
    let copy = &bills[2];
    assert_eq!(copy.subject.as_str(), "bridge.bills");
    assert_eq!(copy.payload, bills[1].payload);
    assert_eq!(header_of(copy, "bridge_replay_of"), Some("2"));
    assert_eq!(header_of(copy, header::TRACEPARENT), Some(TRACE_B));
    let published_at = header_of(copy, header::PUBLISHED_AT).expect("published_at");
    let published_at = DateTime::parse_from_rfc3339(published_at).expect("rfc 3339");
    assert!(published_at.with_timezone(&Utc) > Utc::now() - chrono::Duration::minutes(1));
    assert_eq!(
        messages(&topology, "BRIDGE_ORDERS_RAW").await.len(),
        1,
        "raw orders untouched"
    );

    let extract = ops
        .replay(&replay(
            Stage::Extract,
            Selector::Orders(vec!["CK1".into()]),
            true,
        ))
        .await
        .expect_err("the extractor has no input stream");
    assert!(matches!(extract, OpsError::Selection(_)), "{extract}");
}

/// Four dead letters: transform lookup_not_found (1), load target_rejected (2), transform
/// missing_field (3), extract malformed_order (4).
async fn four_dead_letters(topology: &Topology) -> Vec<OutgoingMessage> {
    let originals = vec![
        raw_order("1", 1, TRACE_A),
        bill("2", TRACE_B),
        raw_order("3", 1, TRACE_C),
        raw_order("4", 1, TRACE_C),
    ];
    publish_dead_letters(
        topology,
        &[
            dead_letter(
                Stage::Transform,
                ReasonKind::LookupNotFound,
                &originals[0],
                11,
            ),
            dead_letter(Stage::Load, ReasonKind::TargetRejected, &originals[1], 12),
            dead_letter(
                Stage::Transform,
                ReasonKind::MissingField,
                &originals[2],
                13,
            ),
            dead_letter(Stage::Extract, ReasonKind::MalformedOrder, &originals[3], 0),
        ],
    )
    .await;
    originals
}

#[tokio::test]
async fn dlq_list_filters_newest_first_and_show_gives_everything() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    four_dead_letters(&topology).await;

    let seqs =
        |list: Vec<ops::dlq::DeadLetterSummary>| list.iter().map(|d| d.seq).collect::<Vec<_>>();
    let all = ops.dlq_list(&DlqFilter::default()).await.expect("list");
    assert_eq!(seqs(all), [4, 3, 2, 1]);
    let transform = DlqFilter {
        stage: Some(Stage::Transform),
        reason: None,
    };
    assert_eq!(seqs(ops.dlq_list(&transform).await.expect("list")), [3, 1]);
    let lookups = DlqFilter {
        stage: None,
        reason: Some(ReasonKind::LookupNotFound),
    };
    let listed = ops.dlq_list(&lookups).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].stockout_no.as_deref(), Some("CK1"));
    assert_eq!(listed[0].source_seq, Some(11));

    let shown = ops.dlq_show(1).await.expect("show");
    assert_eq!(shown.summary.reason_kind, ReasonKind::LookupNotFound);
    assert_eq!(shown.summary.reason, "lookup_not_found in test");
    assert_eq!(shown.payload, json!({"stockout_id": 1, "version": 1}));
    assert_eq!(
        shown.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(
        shown.attempts.len(),
        2,
        "the earlier attempt, then the dead letter's own"
    );
    assert_eq!(shown.attempts[0].error, "gateway 503");
    assert_eq!(
        shown.attempts[1].error,
        "lookup_not_found: lookup_not_found in test"
    );
    assert_eq!(shown.headers["stockout_id"], "1");
    let text = shown.to_text();
    assert!(
        text.contains("gateway 503") && text.contains("payload:"),
        "{text}"
    );

    let missing = ops.dlq_show(99).await.expect_err("no such dead letter");
    assert!(
        matches!(missing, OpsError::NoDeadLetter { seq: 99 }),
        "{missing}"
    );
}

#[tokio::test]
async fn redrive_republishes_to_the_stages_input_and_removes_the_dead_letter() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let originals = four_dead_letters(&topology).await;

    let one = ops
        .dlq_redrive(&RedriveSelection::Sequences(vec![1, 99]))
        .await
        .expect("redrive");
    assert_eq!(one.redriven.len(), 1);
    assert_eq!(one.redriven[0].subject, "bridge.orders.raw");
    assert_eq!(one.redriven[0].redrive_count, 1);
    assert_eq!(one.skipped.len(), 1);
    assert!(one.skipped[0].why.contains("no dead letter at sequence 99"));

    let raw = messages(&topology, "BRIDGE_ORDERS_RAW").await;
    assert_eq!(raw.len(), 1);
    let copy = &raw[0];
    assert_eq!(copy.payload, originals[0].payload);
    assert_eq!(header_of(copy, "bridge_redrive_count"), Some("1"));
    assert!(header_of(copy, "bridge_redriven_at").is_some());
    let msg_id = header_of(copy, header::MSG_ID).expect("msg id");
    assert!(
        msg_id.starts_with("redrive:") && msg_id.ends_with(originals[0].msg_id().expect("id")),
        "{msg_id}"
    );
    assert_eq!(one.redriven[0].msg_id, msg_id);
    for name in [
        header::STOCKOUT_ID,
        header::STOCKOUT_NO,
        header::MODIFIED,
        header::CONTENT_HASH,
    ] {
        assert_eq!(
            header_of(copy, name),
            originals[0].headers.get(name).map(|v| v.as_str()),
            "{name}"
        );
    }
    assert_eq!(header_of(copy, header::TRACEPARENT), Some(TRACE_A));
    let history = header_of(copy, dlq_header::ATTEMPTS).expect("history");
    assert!(history.contains("gateway 503") && history.contains("lookup_not_found"));
    let dlq: Vec<u64> = messages(&topology, "BRIDGE_DLQ")
        .await
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(dlq, [2, 3, 4], "the redriven dead letter is gone");

    let by_reason = ops
        .dlq_redrive(&RedriveSelection::Matching(DlqFilter {
            stage: None,
            reason: Some(ReasonKind::TargetRejected),
        }))
        .await
        .expect("redrive by reason");
    assert_eq!(by_reason.redriven.len(), 1);
    let bills = messages(&topology, "BRIDGE_BILLS").await;
    assert_eq!(bills.len(), 1);
    assert_eq!(bills[0].subject.as_str(), "bridge.bills");
    assert_eq!(bills[0].payload, originals[1].payload);
    assert_eq!(header_of(&bills[0], header::TRACEPARENT), Some(TRACE_B));

    let rest = ops
        .dlq_redrive(&RedriveSelection::Matching(DlqFilter::default()))
        .await
        .expect("redrive all");
    let redriven: Vec<u64> = rest.redriven.iter().map(|r| r.dlq_seq).collect();
    assert_eq!(redriven, [3]);
    let skipped: Vec<u64> = rest.skipped.iter().map(|s| s.dlq_seq).collect();
    assert_eq!(skipped, [4], "the extractor's dead letter stays");
    assert!(rest.skipped[0].why.contains("extractor backfill"));
    let dlq: Vec<u64> = messages(&topology, "BRIDGE_DLQ")
        .await
        .iter()
        .map(|m| m.sequence)
        .collect();
    assert_eq!(dlq, [4]);
    assert_eq!(messages(&topology, "BRIDGE_ORDERS_RAW").await.len(), 2);
}

#[tokio::test]
async fn purge_refuses_without_confirmation_and_empties_the_dead_letters_with_it() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    four_dead_letters(&topology).await;

    let refused = ops.dlq_purge(false).await.expect_err("unconfirmed purge");
    assert!(
        matches!(refused, OpsError::PurgeNotConfirmed { count: 4 }),
        "{refused}"
    );
    assert!(refused.to_string().contains("--yes"));
    assert_eq!(messages(&topology, "BRIDGE_DLQ").await.len(), 4);

    let purged = ops.dlq_purge(true).await.expect("purge");
    assert_eq!(purged.purged, 4);
    assert!(messages(&topology, "BRIDGE_DLQ").await.is_empty());
    assert!(
        ops.dlq_list(&DlqFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
}

/// A stage that gives up on every message it is handed.
struct AlwaysFails;

impl Handler for AlwaysFails {
    async fn handle(&self, _delivery: &Delivery) -> Outcome {
        Outcome::dead_letter(ReasonKind::LookupNotFound, "material G1 not found")
    }
}

async fn eventually_dead_letters(topology: &Topology, count: usize) -> Vec<StreamMessage> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = messages(topology, "BRIDGE_DLQ").await;
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {count} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_redriven_order_that_fails_again_returns_with_its_history_and_count() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let pull = PullConfig {
        expires: Duration::from_secs(2),
        heartbeat: Duration::from_millis(500),
        ..PullConfig::default()
    };
    let spec = topology
        .worker_spec(Stage::Transform, &pull)
        .expect("transformer spec");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(Worker::new(spec, AlwaysFails).run(shutdown.clone()));

    publish(&topology, [raw_order("7", 1, TRACE_A)]).await;
    let first = eventually_dead_letters(&topology, 1).await;
    let first_seq = first[0].sequence;
    ops.dlq_redrive(&RedriveSelection::Sequences(vec![first_seq]))
        .await
        .expect("first redrive");
    let second = eventually_dead_letters(&topology, 1).await;
    assert_ne!(second[0].sequence, first_seq, "a new dead letter");
    let shown = ops.dlq_show(second[0].sequence).await.expect("show");
    assert_eq!(shown.summary.redrive_count, 1);
    assert_eq!(
        shown.attempts.len(),
        2,
        "the first dead letter's failure, then its own"
    );
    for attempt in &shown.attempts {
        assert!(attempt.error.starts_with("lookup_not_found: material G1"));
    }
    assert!(shown.redriven_at.is_some());

    let again = ops
        .dlq_redrive(&RedriveSelection::Sequences(vec![second[0].sequence]))
        .await
        .expect("second redrive");
    assert_eq!(again.redriven[0].redrive_count, 2);
    let third = eventually_dead_letters(&topology, 1).await;
    let shown = ops.dlq_show(third[0].sequence).await.expect("show");
    assert_eq!(shown.summary.redrive_count, 2);
    assert_eq!(
        shown.attempts.len(),
        3,
        "both earlier dead letters, then its own"
    );
    assert_eq!(
        shown.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );

    shutdown.cancel();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("worker stops")
        .expect("worker task");
}

#[tokio::test]
async fn trace_lists_the_orders_messages_and_links_each_trace() {
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let original = raw_order("1", 1, TRACE_A);
    publish(&topology, [original.clone(), raw_order("2", 1, TRACE_C)]).await;
    publish(&topology, [bill("1", TRACE_B), bill("2", TRACE_C)]).await;
    publish_dead_letters(
        &topology,
        &[dead_letter(
            Stage::Load,
            ReasonKind::TargetRejected,
            &bill("1", TRACE_B),
            1,
        )],
    )
    .await;
    ops.replay(&replay(
        Stage::Transform,
        Selector::Orders(vec!["CK1".to_owned()]),
        false,
    ))
    .await
    .expect("replay");

    let report = ops
        .trace("CK1", "http://jaeger.example:16686/")
        .await
        .expect("trace");
    let places: Vec<(&str, u64)> = report.messages.iter().map(|m| (m.place, m.seq)).collect();
    assert_eq!(
        places,
        [("raw", 1), ("raw", 3), ("bills", 1), ("dead_letters", 1)]
    );
    assert_eq!(report.messages[1].replay_of.as_deref(), Some("1"));
    let traces: Vec<(&str, &str, Vec<&str>)> = report
        .traces
        .iter()
        .map(|t| (t.trace_id.as_str(), t.link.as_str(), t.places.clone()))
        .collect();
    assert_eq!(
        traces,
        [
            (
                "0af7651916cd43dd8448eb211c80319c",
                "http://jaeger.example:16686/trace/0af7651916cd43dd8448eb211c80319c",
                vec!["raw"]
            ),
            (
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "http://jaeger.example:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736",
                vec!["bills", "dead_letters"]
            ),
        ]
    );
    let text = report.to_text();
    assert!(text.contains("replay of 1"), "{text}");

    let nothing = ops
        .trace("CK404", ops::trace::DEFAULT_JAEGER_URL)
        .await
        .expect("trace");
    assert!(nothing.messages.is_empty() && nothing.traces.is_empty());
}

// Reconcile.

fn wdt_reader(sim: &WdtSimulator) -> WindowReader {
    let config = WdtConfig {
        page_size: 20,
        calls_per_minute: 60_000,
        max_retries: 1,
        retry_min_delay_ms: 10,
        retry_max_delay_ms: 50,
        timeout_ms: 5_000,
        ..WdtConfig::new(
            sim.url(),
            DEFAULT_APP_KEY,
            wdt::Secret::new(DEFAULT_APP_SECRET),
            DEFAULT_TARGET_APP_KEY,
            DEFAULT_SID,
        )
    };
    WindowReader::new(WdtClient::new(config).expect("wdt client"))
}

fn xingchen_client(sim: &XingchenSimulator) -> Client {
    let mut config = XingchenConfig::new(
        sim.url(),
        defaults::CLIENT_ID,
        xingchen::Secret::new(defaults::CLIENT_SECRET),
        defaults::OUTER_INSTANCE_ID,
    );
    config.retry_min_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(40);
    config.timeout = Duration::from_secs(5);
    Client::new(config).expect("星辰 client")
}

fn target_bill(world: &World, billno: &str) -> Bill {
    let goods = &world.goods[3];
    let mut custom = BTreeMap::new();
    custom.insert(
        "custom_field42obgp309axx5_number".into(),
        world.shops[0].shop_no.clone().into(),
    );
    Bill {
        id: None,
        billdate: NaiveDate::from_ymd_opt(2024, 5, 20).expect("date"),
        billno: billno.to_owned(),
        customerid_id: world.shops[0].customer_id.clone(),
        material_entity: vec![BillLine {
            id: None,
            materialid_id: goods.material_id.clone(),
            stockid_id: world.warehouses[1].store_id.clone(),
            qty: Decimal::new(1, 0),
            unit_id: goods.base_unit_id.clone(),
            taxprice: goods.market_price,
            cess: Decimal::new(13, 0),
            custom: BTreeMap::new(),
        }],
        custom,
    }
}

fn text<'o>(order: &'o Map<String, Value>, field: &str) -> &'o str {
    order[field].as_str().unwrap_or_default()
}

/// The simulator's orders a default query returns (shipped or completed), by id.
fn shipped(sim: &WdtSimulator) -> BTreeMap<String, Map<String, Value>> {
    sim.state()
        .orders()
        .into_iter()
        .filter(|order| order["status"].as_i64().is_some_and(|status| status >= 95))
        .map(|order| (order["stockout_id"].to_string(), order))
        .collect()
}

fn numbers(orders: &[ops::reconcile::OrderRef]) -> BTreeSet<String> {
    orders.iter().map(|o| o.stockout_no.clone()).collect()
}

#[tokio::test]
async fn reconcile_finds_nothing_when_ledger_and_wdt_agree_and_names_every_gap_after() {
    let (from, to) = (
        beijing("2024-04-01 00:00:00"),
        beijing("2024-04-01 06:00:00"),
    );
    let sim = WdtSimulator::start(WdtSimConfig::new(21).with_orders(12, from, to))
        .await
        .expect("wdt simulator");
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let ledger = Ledger::new(topology.ledger.clone());
    let orders = shipped(&sim);
    assert!(orders.len() >= 6, "enough shipped orders to take some away");
    for (id, order) in &orders {
        let entry = ledger_entry(text(order, "stockout_no"), beijing(text(order, "modified")));
        ledger.put(id, &entry, None).await.expect("ledger entry");
    }
    let reader = wdt_reader(&sim);
    let request = ReconcileRequest {
        from,
        to,
        filter: ReadFilter::default(),
    };

    let clean = ops
        .reconcile(&reader, &request, None)
        .await
        .expect("reconcile");
    assert_eq!(clean.orders, orders.len());
    assert!(clean.is_clean(), "{}", clean.to_text());

    // Two entries lost, one order changed in WDT since it was loaded, one order gone from WDT
    // (one whose `modified` lies in the window, so its entry belongs to the window).
    let ids: Vec<&String> = orders.keys().collect();
    let (lost, changed) = ([ids[0], ids[1]], ids[2]);
    for id in lost {
        topology
            .ledger
            .delete(id.as_str())
            .await
            .expect("delete entry");
    }
    let later = beijing(text(&orders[changed], "modified")) + chrono::Duration::hours(1);
    let changed_id = changed.parse().expect("numeric id");
    assert!(sim.state().update_order(changed_id, |order| {
        order.insert("modified".into(), json!(wdt::format_wdt_time(&later)));
    }));
    let inside: Vec<&String> = ids[3..]
        .iter()
        .copied()
        .filter(|id| beijing(text(&orders[*id], "modified")) <= to)
        .collect();
    assert!(inside.len() >= 2, "two orders modified inside the window");
    let (gone, moved) = (inside[0], inside[1]);
    sim.state()
        .remove_order(gone.parse().expect("numeric id"))
        .expect("remove order");
    // Consigned before the window now, changed inside it: its entry lies in the window but the
    // order still exists, so it is no bill without an order.
    let before = wdt::format_wdt_time(&(from - chrono::Duration::days(1)));
    assert!(
        sim.state()
            .update_order(moved.parse().expect("numeric id"), |order| {
                order.insert("consign_time".into(), json!(before));
            })
    );

    let report = ops
        .reconcile(&reader, &request, None)
        .await
        .expect("reconcile");
    let expected_lost: BTreeSet<String> = lost
        .iter()
        .map(|id| text(&orders[*id], "stockout_no").to_owned())
        .collect();
    assert_eq!(numbers(&report.missing_in_ledger), expected_lost);
    let outdated: Vec<&str> = report
        .outdated
        .iter()
        .map(|o| o.order.stockout_no.as_str())
        .collect();
    assert_eq!(outdated, [text(&orders[changed], "stockout_no")]);
    assert_eq!(report.outdated[0].order.modified, later);
    let without: Vec<&str> = report
        .bills_without_order
        .iter()
        .map(|b| b.billno.as_str())
        .collect();
    assert_eq!(without, [text(&orders[gone], "stockout_no")]);
    assert!(report.missing_in_target.is_empty() && !report.checked_target);
    assert_eq!(report.gaps(), 4);
    let text_report = report.to_text();
    for number in &expected_lost {
        assert!(text_report.contains(number.as_str()), "{text_report}");
    }
}

#[tokio::test]
async fn reconcile_with_the_target_names_orders_whose_bill_is_gone_from_xingchen() {
    let (from, to) = (
        beijing("2024-04-02 00:00:00"),
        beijing("2024-04-02 06:00:00"),
    );
    let sim = WdtSimulator::start(WdtSimConfig::new(22).with_orders(6, from, to))
        .await
        .expect("wdt simulator");
    let world = World::generate(22);
    let target = XingchenSimulator::start(&world, SimulatorConfig::default())
        .await
        .expect("星辰 simulator");
    let client = xingchen_client(&target);
    let server = NatsServer::start();
    let (topology, ops) = start(&server).await;
    let ledger = Ledger::new(topology.ledger.clone());
    let orders = shipped(&sim);
    for (id, order) in &orders {
        let number = text(order, "stockout_no");
        client
            .save_bill(&target_bill(&world, number))
            .await
            .expect("bill saved");
        let entry = ledger_entry(number, beijing(text(order, "modified")));
        ledger.put(id, &entry, None).await.expect("ledger entry");
    }
    let reader = wdt_reader(&sim);
    let request = ReconcileRequest {
        from,
        to,
        filter: ReadFilter::default(),
    };

    let clean = ops
        .reconcile(&reader, &request, Some(&client))
        .await
        .expect("reconcile");
    assert!(clean.checked_target);
    assert!(clean.is_clean(), "{}", clean.to_text());

    let deleted = text(orders.values().next().expect("an order"), "stockout_no").to_owned();
    assert!(target.state().delete_bill(&deleted), "bill deleted in 星辰");
    let report = ops
        .reconcile(&reader, &request, Some(&client))
        .await
        .expect("reconcile");
    assert_eq!(
        numbers(&report.missing_in_target),
        BTreeSet::from([deleted])
    );
    assert!(report.missing_in_ledger.is_empty());
    assert_eq!(report.gaps(), 1);
}
