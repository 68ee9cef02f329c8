//! The pipeline crate against a real `nats-server -js`: topology, de-duplication, the consumer
//! loop's exits and shutdown, and the KV-backed stores. Each test starts its own server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use pipeline::cursor::{Advance, CursorStore};
use pipeline::dead_letter::{DeadLetter, ReasonKind};
use pipeline::ledger::{Ledger, LedgerEntry};
use pipeline::masterdata::{CacheHit, Lookup, MasterDataCache, Resolved};
use pipeline::message::{self, OrderIdentity, TraceContext, header, parse_modified};
use pipeline::worker::{Delivery, Handler, Outcome, RunReport, Worker};
use pipeline::{NatsConfig, PullConfig, Stage, StoreError, Topology, TopologyConfig};
use test_support::NatsServer;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn topology_config() -> TopologyConfig {
    TopologyConfig {
        max_deliver: 3,
        ack_wait: Duration::from_secs(5),
        ..TopologyConfig::default()
    }
}

fn pull_config() -> PullConfig {
    PullConfig {
        batch: 4,
        in_flight: 4,
        expires: Duration::from_secs(2),
        heartbeat: Duration::from_millis(500),
        backoff: vec![Duration::from_millis(100)],
        shutdown_deadline: Duration::from_secs(10),
        ..PullConfig::default()
    }
}

async fn jetstream_for(server: &NatsServer) -> jetstream::Context {
    let client = pipeline::connect(&NatsConfig::for_url(server.url()))
        .await
        .expect("connect");
    jetstream::new(client)
}

async fn topology(server: &NatsServer) -> Topology {
    let jetstream = jetstream_for(server).await;
    pipeline::ensure_topology(&jetstream, &topology_config())
        .await
        .expect("topology")
}

fn beijing(text: &str) -> DateTime<FixedOffset> {
    parse_modified(text).expect("test time")
}

fn order(stockout_id: &str, body: &str) -> message::OutgoingMessage {
    let identity = OrderIdentity {
        stockout_id: stockout_id.to_owned(),
        stockout_no: format!("CK{stockout_id}"),
        modified: beijing("2024-05-01 12:00:00"),
    };
    let trace = TraceContext {
        traceparent: Some(TRACEPARENT.to_owned()),
        tracestate: None,
    };
    let raw = Bytes::from(format!(
        r#"{{"stockout_id":"{stockout_id}","body":{body}}}"#
    ));
    message::raw_order_message(&pipeline::Names::default(), &identity, raw, &trace)
        .expect("raw order message")
}

async fn stream_messages(jetstream: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = jetstream.get_stream(stream).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// Polls `check` until it holds, failing the test with `what` after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the consumer has nothing pending, unacknowledged or waiting for redelivery.
async fn settled(consumer: &PullConsumer, acked_up_to: u64) {
    eventually("the consumer to acknowledge everything", || async {
        let info = consumer.get_info().await.expect("consumer info");
        info.num_ack_pending == 0
            && info.num_pending == 0
            && info.ack_floor.stream_sequence == acked_up_to
    })
    .await;
}

async fn received<T>(events: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

/// A handler that reports each call and answers what its script says for that delivery.
struct Scripted {
    calls: mpsc::UnboundedSender<Call>,
    answer: fn(&Delivery) -> Outcome,
}

#[derive(Debug)]
struct Call {
    delivered: i64,
    stream_sequence: u64,
    published: Option<DateTime<Utc>>,
    at: Instant,
}

impl Handler for Scripted {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let call = Call {
            delivered: delivery.delivered(),
            stream_sequence: delivery.stream_sequence(),
            published: delivery.published(),
            at: Instant::now(),
        };
        let _ = self.calls.send(call);
        (self.answer)(delivery)
    }
}

fn start_worker<H: Handler>(
    topology: &Topology,
    pull: &PullConfig,
    handler: H,
) -> (CancellationToken, JoinHandle<RunReport>) {
    let spec = topology
        .worker_spec(Stage::Transform, pull)
        .expect("transformer spec");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(Worker::new(spec, handler).run(shutdown.clone()));
    (shutdown, run)
}

async fn stop(shutdown: CancellationToken, run: JoinHandle<RunReport>) -> RunReport {
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("worker stops")
        .expect("worker task")
}

#[tokio::test]
async fn topology_creation_is_idempotent_sequentially_and_concurrently() {
    let server = NatsServer::start();
    let contexts = futures::future::join_all((0..3).map(|_| jetstream_for(&server))).await;

    // Three workers starting at once against an empty server.
    let config = topology_config();
    let created = futures::future::join_all(
        contexts
            .iter()
            .map(|jetstream| pipeline::ensure_topology(jetstream, &config)),
    )
    .await;
    for result in created {
        result.expect("concurrent topology creation succeeds");
    }

    // And again, with a changed setting, which is applied.
    let changed = TopologyConfig {
        ack_wait: Duration::from_secs(7),
        ..topology_config()
    };
    let topology = pipeline::ensure_topology(&contexts[0], &changed)
        .await
        .expect("again");
    let info = topology.loader.get_info().await.expect("loader info");
    assert_eq!(info.config.ack_wait, Duration::from_secs(7));
    assert_eq!(info.config.max_deliver, 3);
    assert_eq!(info.config.durable_name.as_deref(), Some("loader"));

    let mut raw = contexts[0]
        .get_stream("BRIDGE_ORDERS_RAW")
        .await
        .expect("raw stream");
    let raw = raw.info().await.expect("raw info");
    assert_eq!(raw.config.subjects, ["bridge.orders.raw"]);
    assert_eq!(raw.config.duplicate_window, Duration::from_secs(3600));
    let mut dlq = contexts[0]
        .get_stream("BRIDGE_DLQ")
        .await
        .expect("dlq stream");
    assert_eq!(
        dlq.info().await.expect("dlq info").config.subjects,
        ["bridge.dlq.>"]
    );
    for bucket in [
        "bridge_cursor",
        "bridge_masterdata",
        "bridge_ledger",
        "bridge_workers",
    ] {
        contexts[0].get_key_value(bucket).await.expect(bucket);
    }
}

#[tokio::test]
async fn the_same_raw_order_is_stored_once_and_a_changed_one_again() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let publisher = topology.publisher();

    let window: Vec<_> = (1..=20).map(|n| order(&n.to_string(), "1")).collect();
    let first = publisher
        .publish_all(window.clone(), 4)
        .await
        .expect("first window");
    assert_eq!((first.stored, first.duplicates), (20, 0));

    // The next window overlaps: order 1 unchanged, order 2 changed.
    let overlap = vec![order("1", "1"), order("2", "2")];
    let second = publisher
        .publish_all(overlap, 4)
        .await
        .expect("second window");
    assert_eq!((second.stored, second.duplicates), (1, 1));
    assert_eq!(
        stream_messages(&topology.jetstream, "BRIDGE_ORDERS_RAW").await,
        21
    );

    let stream = topology
        .jetstream
        .get_stream("BRIDGE_ORDERS_RAW")
        .await
        .expect("stream");
    let changed = stream
        .get_raw_message(21)
        .await
        .expect("stored changed order");
    assert_eq!(
        changed.payload,
        order("2", "2").payload,
        "payload kept byte for byte"
    );
    let identity = OrderIdentity::from_headers(&changed.headers).expect("identity headers");
    assert_eq!(identity.stockout_no, "CK2");
    assert_eq!(
        changed.headers.get(header::TRACEPARENT).map(|v| v.as_str()),
        Some(TRACEPARENT)
    );
}

#[tokio::test]
async fn a_retried_message_comes_back_after_its_delay_and_an_acked_one_does_not() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (calls, mut events) = mpsc::unbounded_channel();
    let handler = Scripted {
        calls,
        answer: |delivery| match delivery.delivered() {
            1 => Outcome::retry_after(Duration::from_millis(600), "星辰 timed out"),
            _ => Outcome::Ack,
        },
    };
    let (shutdown, run) = start_worker(&topology, &pull_config(), handler);

    topology
        .publisher()
        .publish(order("7", "1"))
        .await
        .expect("publish");
    let first = received(&mut events, "the first delivery").await;
    let second = received(&mut events, "the redelivery").await;
    assert_eq!((first.delivered, second.delivered), (1, 2));
    assert_eq!(second.stream_sequence, first.stream_sequence);
    let waited = second.at - first.at;
    assert!(
        waited >= Duration::from_millis(600),
        "redelivered after only {waited:?}"
    );

    // Both deliveries carry the time the stream stored the message, read from their metadata.
    let stored = topology
        .jetstream
        .get_stream(topology.names.raw_orders_stream())
        .await
        .expect("raw orders stream")
        .get_raw_message(first.stream_sequence)
        .await
        .expect("stored raw order");
    let stored_at = DateTime::<Utc>::from(SystemTime::from(stored.time));
    assert_eq!(first.published, Some(stored_at));
    assert_eq!(second.published, Some(stored_at));

    // Acknowledged: nothing pending and the ack floor past the message, so the server will
    // never deliver it again.
    settled(&topology.transformer, 1).await;
    let report = stop(shutdown, run).await;
    assert!(
        events.try_recv().is_err(),
        "an acknowledged message came back"
    );
    assert_eq!(
        (report.acked, report.retried, report.dead_lettered),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_dead_letter_is_stored_once_with_its_metadata_and_the_original_is_not_redelivered() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (calls, mut events) = mpsc::unbounded_channel();
    let handler = Scripted {
        calls,
        answer: |_| Outcome::dead_letter(ReasonKind::LookupNotFound, "customer 天猫店 not found"),
    };
    let (shutdown, run) = start_worker(&topology, &pull_config(), handler);

    let original = order("9", "{\"qty\": 1.50}");
    topology
        .publisher()
        .publish(original.clone())
        .await
        .expect("publish");
    received(&mut events, "the delivery").await;
    eventually("one dead letter", || async {
        stream_messages(&topology.jetstream, "BRIDGE_DLQ").await == 1
    })
    .await;
    settled(&topology.transformer, 1).await;
    let report = stop(shutdown, run).await;
    assert!(events.try_recv().is_err(), "a terminated message came back");
    assert_eq!((report.dead_lettered, report.acked), (1, 0));

    let dlq = topology
        .jetstream
        .get_stream("BRIDGE_DLQ")
        .await
        .expect("dlq");
    let stored = dlq.get_raw_message(1).await.expect("dead letter");
    assert_eq!(stored.subject.as_str(), "bridge.dlq.transform");
    assert_eq!(
        stored.payload, original.payload,
        "original payload kept byte for byte"
    );
    let dead_letter = DeadLetter::from_message(&stored.headers, stored.payload).expect("parse");
    assert_eq!(dead_letter.stage, Stage::Transform);
    assert_eq!(dead_letter.reason_kind, ReasonKind::LookupNotFound);
    assert_eq!(dead_letter.reason, "customer 天猫店 not found");
    assert_eq!(dead_letter.delivered, 1);
    assert_eq!(
        dead_letter.source_stream.as_deref(),
        Some("BRIDGE_ORDERS_RAW")
    );
    assert_eq!(dead_letter.source_sequence, Some(1));
    assert_eq!(dead_letter.stockout_no.as_deref(), Some("CK9"));
    assert_eq!(dead_letter.trace.traceparent.as_deref(), Some(TRACEPARENT));
    let original_id = dead_letter
        .original_headers
        .get(header::STOCKOUT_ID)
        .map(|v| v.as_str());
    assert_eq!(original_id, Some("9"));
    assert_eq!(
        dead_letter
            .original_headers
            .get(header::MSG_ID)
            .map(|v| v.as_str()),
        original.msg_id()
    );
}

#[tokio::test]
async fn a_message_failing_every_delivery_ends_as_one_dead_letter_with_its_history() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (calls, mut events) = mpsc::unbounded_channel();
    let handler = Scripted {
        calls,
        answer: |_| Outcome::retry("gateway 503"),
    };
    let (shutdown, run) = start_worker(&topology, &pull_config(), handler);

    topology
        .publisher()
        .publish(order("11", "1"))
        .await
        .expect("publish");
    for delivery in 1..=3 {
        let call = received(&mut events, "a delivery").await;
        assert_eq!(call.delivered, delivery);
    }
    eventually("the dead letter", || async {
        stream_messages(&topology.jetstream, "BRIDGE_DLQ").await == 1
    })
    .await;
    settled(&topology.transformer, 1).await;
    let report = stop(shutdown, run).await;
    assert_eq!((report.retried, report.dead_lettered), (2, 1));

    let dlq = topology
        .jetstream
        .get_stream("BRIDGE_DLQ")
        .await
        .expect("dlq");
    let stored = dlq.get_raw_message(1).await.expect("dead letter");
    let dead_letter = DeadLetter::from_message(&stored.headers, stored.payload).expect("parse");
    assert_eq!(dead_letter.reason_kind, ReasonKind::MaxDeliveries);
    assert_eq!(dead_letter.delivered, 3);
    assert_eq!(
        dead_letter.reason,
        "gave up after 3 deliveries: gateway 503"
    );
    let attempts: Vec<_> = dead_letter.attempts.iter().map(|a| a.delivered).collect();
    assert_eq!(attempts, [1, 2]);
}

#[tokio::test]
async fn a_redriven_message_that_fails_again_returns_to_the_dead_letters_with_its_history() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (calls, mut events) = mpsc::unbounded_channel();
    let handler = Scripted {
        calls,
        answer: |_| Outcome::retry("gateway 503"),
    };
    let (shutdown, run) = start_worker(&topology, &pull_config(), handler);
    let dlq = topology
        .jetstream
        .get_stream("BRIDGE_DLQ")
        .await
        .expect("dlq");

    topology
        .publisher()
        .publish(order("12", "1"))
        .await
        .expect("publish");
    eventually("the first dead letter", || async {
        stream_messages(&topology.jetstream, "BRIDGE_DLQ").await == 1
    })
    .await;
    let stored = dlq.get_raw_message(1).await.expect("first dead letter");
    let first = DeadLetter::from_message(&stored.headers, stored.payload).expect("parse");

    // What `bridge dlq redrive` sends: the original headers under a fresh id, the history, and
    // a redrive count of its own.
    let mut headers = first.original_headers.clone();
    headers.insert(header::MSG_ID, "redrive:1:12");
    headers.insert(
        pipeline::dead_letter::dlq_header::ATTEMPTS,
        first.history_header(),
    );
    headers.insert("bridge_redrive_count", "1");
    let redriven = message::OutgoingMessage {
        subject: "bridge.orders.raw".to_owned(),
        headers,
        payload: first.payload.clone(),
    };
    topology
        .publisher()
        .publish(redriven)
        .await
        .expect("redrive");
    eventually("the second dead letter", || async {
        stream_messages(&topology.jetstream, "BRIDGE_DLQ").await == 2
    })
    .await;
    settled(&topology.transformer, 2).await;
    stop(shutdown, run).await;
    while events.try_recv().is_ok() {}

    let stored = dlq.get_raw_message(2).await.expect("second dead letter");
    let second = DeadLetter::from_message(&stored.headers, stored.payload).expect("parse");
    assert_eq!(second.source_sequence, Some(2));
    assert_eq!(second.payload, first.payload);
    let delivered: Vec<i64> = second.attempts.iter().map(|a| a.delivered).collect();
    assert_eq!(
        delivered,
        [1, 2, 3, 1, 2],
        "first life, its dead letter, second life"
    );
    assert_eq!(second.attempts[2].at, first.at);
    assert_eq!(
        second.attempts[2].error,
        "max_deliveries: gave up after 3 deliveries: gateway 503"
    );
    let count = second.original_headers.get("bridge_redrive_count");
    assert_eq!(count.map(|v| v.as_str()), Some("1"));
    let stored_count = stored.headers.get("bridge_redrive_count");
    assert_eq!(stored_count.map(|v| v.as_str()), Some("1"));
}

/// Panics on the first delivery, acknowledges the second.
struct PanicsOnce {
    calls: AtomicUsize,
}

impl Handler for PanicsOnce {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(delivery.delivered() > 1, "handler bug on first delivery");
        Outcome::Ack
    }
}

#[tokio::test]
async fn a_panicking_handler_costs_a_retry_not_the_worker() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (shutdown, run) = start_worker(
        &topology,
        &pull_config(),
        PanicsOnce {
            calls: AtomicUsize::new(0),
        },
    );

    topology
        .publisher()
        .publish(order("13", "1"))
        .await
        .expect("publish");
    settled(&topology.transformer, 1).await;
    let report = stop(shutdown, run).await;
    assert_eq!((report.retried, report.acked), (1, 1));
}

/// Reports that it started, then waits to be released before acknowledging.
struct Blocking {
    started: mpsc::UnboundedSender<u64>,
    release: Arc<Notify>,
}

impl Handler for Blocking {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let _ = self.started.send(delivery.stream_sequence());
        self.release.notified().await;
        Outcome::Ack
    }
}

#[tokio::test]
async fn shutdown_waits_for_the_in_flight_handler_to_finish_then_returns() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (started, mut events) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let handler = Blocking {
        started,
        release: Arc::clone(&release),
    };
    let (shutdown, mut run) = start_worker(&topology, &pull_config(), handler);

    topology
        .publisher()
        .publish(order("21", "1"))
        .await
        .expect("publish");
    received(&mut events, "the handler to start").await;
    shutdown.cancel();
    let early = tokio::time::timeout(Duration::from_millis(300), &mut run).await;
    assert!(
        early.is_err(),
        "the worker returned while its handler was still running"
    );

    release.notify_one();
    let report = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("worker stops")
        .expect("task");
    assert_eq!((report.acked, report.abandoned), (1, 0));
    settled(&topology.transformer, 1).await;

    // Stopped means stopped: a message published now stays pending.
    topology
        .publisher()
        .publish(order("22", "1"))
        .await
        .expect("publish");
    let info = topology
        .transformer
        .get_info()
        .await
        .expect("consumer info");
    assert_eq!(info.num_ack_pending, 0);
    assert!(
        events.try_recv().is_err(),
        "a stopped worker started a handler"
    );
}

#[tokio::test]
async fn shutdown_abandons_a_handler_that_outlives_the_deadline() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let (started, mut events) = mpsc::unbounded_channel();
    let handler = Blocking {
        started,
        release: Arc::new(Notify::new()),
    };
    let pull = PullConfig {
        shutdown_deadline: Duration::from_millis(300),
        ..pull_config()
    };
    let (shutdown, run) = start_worker(&topology, &pull, handler);

    topology
        .publisher()
        .publish(order("23", "1"))
        .await
        .expect("publish");
    received(&mut events, "the handler to start").await;
    let report = stop(shutdown, run).await;
    assert_eq!((report.abandoned, report.acked), (1, 0));
}

#[tokio::test]
async fn the_worker_keeps_consuming_across_a_server_restart() {
    let mut server = NatsServer::start();
    let topology = topology(&server).await;
    let (calls, mut events) = mpsc::unbounded_channel();
    let handler = Scripted {
        calls,
        answer: |_| Outcome::Ack,
    };
    let (shutdown, run) = start_worker(&topology, &pull_config(), handler);

    topology
        .publisher()
        .publish(order("31", "1"))
        .await
        .expect("publish before");
    received(&mut events, "the message published before the restart").await;

    server.restart();
    // Publishing retries until the client has reconnected and JetStream answers again.
    let publisher = topology.publisher();
    let deadline = Instant::now() + PATIENCE;
    while publisher.publish(order("32", "1")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "publishing never worked again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A kill may lose the server's record of the first ack; delivering it again is allowed
    // (at least once), losing the second message is not.
    while received(&mut events, "the message published after the restart")
        .await
        .stream_sequence
        != 2
    {}
    settled(&topology.transformer, 2).await;
    let report = stop(shutdown, run).await;
    assert!(report.acked >= 2, "{report:?}");
}

#[tokio::test]
async fn the_cursor_only_moves_forward_even_when_two_extractors_race() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let cursor = CursorStore::new(topology.cursor.clone(), "stockout");
    assert_eq!(cursor.read().await.expect("read"), None);

    let (t1, t2) = (
        beijing("2024-05-01 10:00:00"),
        beijing("2024-05-01 11:00:00"),
    );
    assert!(matches!(
        cursor.advance(t2).await.expect("advance"),
        Advance::Moved { .. }
    ));
    assert_eq!(
        cursor.advance(t1).await.expect("back"),
        Advance::Refused { current: t2 }
    );
    assert_eq!(
        cursor.advance(t2).await.expect("same"),
        Advance::Refused { current: t2 }
    );

    let other = CursorStore::new(topology.cursor.clone(), "stockout");
    let (t3, t4) = (
        beijing("2024-05-01 12:00:00"),
        beijing("2024-05-01 13:00:00"),
    );
    let (a, b) = tokio::join!(cursor.advance(t4), other.advance(t3));
    a.expect("racing advance");
    b.expect("racing advance");
    let stored = other.read().await.expect("read").expect("cursor set");
    assert_eq!(
        stored.at, t4,
        "the later instant wins whatever the order of writes"
    );
    assert_eq!(stored.at.offset().local_minus_utc(), 8 * 3600);
}

#[tokio::test]
async fn the_ledger_detects_a_concurrent_writer() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let ledger = Ledger::new(topology.ledger.clone());
    let stockout_id = "旺店 10.01/7";
    let entry = |bill_id: &str, hash: &str| LedgerEntry {
        bill_id: bill_id.to_owned(),
        billno: "CK1001".to_owned(),
        content_hash: hash.to_owned(),
        modified: beijing("2024-05-01 12:00:00"),
        loaded_at: Utc::now(),
    };

    assert!(ledger.get(stockout_id).await.expect("get").is_none());
    let first = ledger
        .put(stockout_id, &entry("b1", "h1"), None)
        .await
        .expect("create");
    let rival = ledger.put(stockout_id, &entry("b2", "h1"), None).await;
    assert!(
        matches!(rival, Err(StoreError::Conflict { .. })),
        "{rival:?}"
    );

    let read = ledger.get(stockout_id).await.expect("get").expect("entry");
    assert_eq!((read.revision, read.value.bill_id.as_str()), (first, "b1"));
    ledger
        .put(stockout_id, &entry("b1", "h2"), Some(read.revision))
        .await
        .expect("update");
    let stale = ledger
        .put(stockout_id, &entry("b1", "h3"), Some(read.revision))
        .await;
    let Err(err) = stale else {
        panic!("a write on an old revision succeeded")
    };
    assert!(
        matches!(err, StoreError::Conflict { .. }) && err.is_transient(),
        "{err}"
    );
    let read = ledger.get(stockout_id).await.expect("get").expect("entry");
    assert_eq!(read.value.content_hash, "h2");
}

#[tokio::test]
async fn master_data_misses_expire_while_found_records_stay() {
    let server = NatsServer::start();
    let topology = topology(&server).await;
    let ttl = Duration::from_secs(60);
    let cache = MasterDataCache::new(topology.masterdata.clone(), ttl);
    let shop = Lookup::new("customer", "number", "天猫 旗舰店.01");
    let goods = Lookup::new("material", "number", "SKU/3 红");

    assert_eq!(cache.get(&shop).await.expect("get"), None);
    cache.put_missing(&shop).await.expect("put miss");
    assert!(matches!(
        cache.get(&shop).await.expect("get"),
        Some(CacheHit::Missing { .. })
    ));
    let after_ttl = Utc::now() + chrono::Duration::seconds(61);
    assert_eq!(cache.get_at(&shop, after_ttl).await.expect("get"), None);

    let resolved = Resolved {
        id: "1790001".to_owned(),
        attributes: [("base_unit_id".to_owned(), "88".to_owned())].into(),
    };
    cache.put_found(&goods, &resolved).await.expect("put found");
    let later = Utc::now() + chrono::Duration::days(3);
    assert_eq!(
        cache.get_at(&goods, later).await.expect("get"),
        Some(CacheHit::Found(resolved))
    );
}
