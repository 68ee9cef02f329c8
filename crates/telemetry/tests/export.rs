//! The telemetry crate against real receivers: spans exported over OTLP/HTTP and OTLP/gRPC to the
//! receiver of `test-support`, one trace per order across three workers' providers, log lines,
//! and the health server over HTTP.
//!
//! Each worker is a [`telemetry::dispatch`] scoped to a block with `with_default`, so several
//! "workers" and scenarios live in one process; only one test touches the global subscriber and
//! one the global metrics recorder. The tests run one at a time because one of them counts the
//! exporter threads of the whole process.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use telemetry::health::{HealthServer, Readiness};
use telemetry::metrics::{self as bridge_metrics, ApiEndpoint, ApiOutcome, LoadOutcome};
use telemetry::{LogFormat, OtlpProtocol, TelemetryConfig, TelemetryGuard, propagation};
use test_support::otlp::{Kind, OtlpReceiver, ReceivedSpan, Transport, Value};
use tracing::field::Empty;
use tracing::{Dispatch, dispatcher};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn exporting_to(endpoint: &str, protocol: OtlpProtocol) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: Some(endpoint.to_owned()),
        otlp_protocol: Some(protocol),
        ..TelemetryConfig::default()
    }
}

fn worker(name: &str, config: &TelemetryConfig) -> (Dispatch, TelemetryGuard) {
    telemetry::dispatch(name, config, std::io::sink).expect("telemetry builds")
}

/// Threads the SDK's batch span processor runs on (Linux truncates names to 15 bytes).
fn batch_exporter_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("OpenTelemetry.T"))
        .count()
}

/// Waits until `expected` batch threads run: a thread names itself only once it has started.
fn wait_for_batch_exporter_threads(expected: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while batch_exporter_threads() != expected {
        let seen = batch_exporter_threads();
        assert!(
            std::time::Instant::now() < deadline,
            "{expected} batch threads, saw {seen}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name:?}"))
}

#[tokio::test]
async fn one_order_is_one_trace_across_the_workers_over_http_protobuf() {
    let _serial = SERIAL.lock().await;
    let receiver = OtlpReceiver::start();
    let config = exporting_to(&receiver.http_endpoint(), OtlpProtocol::HttpProtobuf);
    let (extractor, extractor_guard) = worker("extractor", &config);
    let (transformer, transformer_guard) = worker("transformer", &config);
    let (loader, loader_guard) = worker("loader", &config);
    // Each exporting provider runs one batch thread.
    wait_for_batch_exporter_threads(3);

    let mut raw_headers = HeaderMap::new();
    dispatcher::with_default(&extractor, || {
        let page =
            telemetry::client_span!("read page", endpoint = "wdt.stockout.order.query.trade");
        let _in_page = page.enter();
        let publish = telemetry::producer_span!(
            "publish order",
            destination = "bridge.orders.raw",
            message_id = "CK1",
            stockout_no = "CK1",
            billno = Empty
        );
        propagation::start_new_root_linked_to(&publish, &page);
        publish.in_scope(|| propagation::inject(&publish, &mut raw_headers));
    });

    let mut bill_headers = HeaderMap::new();
    dispatcher::with_default(&transformer, || {
        let process = telemetry::consumer_span!(
            "process order",
            destination = "bridge.orders.raw",
            message_id = "CK1",
            consumer = "transformer",
            delivery_count = 2_u64,
            stream_sequence = 7_u64,
            stockout_no = "CK1",
            billno = Empty
        );
        assert!(propagation::set_parent_from_headers(&process, &raw_headers));
        let _in_process = process.enter();
        tracing::warn!(delivered = 2_i64, "Message redelivered");
        telemetry::lookup_span!("lookup", collection = "customer", key = "SHOP1").in_scope(|| {
            tracing::Span::current().record("lookup.cache", "hit");
        });
        let publish = telemetry::producer_span!(
            "publish bill",
            destination = "bridge.bills",
            message_id = "CK1",
            stockout_no = "CK1",
            billno = "XSCK-CK1"
        );
        publish.in_scope(|| propagation::inject(&publish, &mut bill_headers));
    });

    let mut dead_letter_headers = HeaderMap::new();
    dispatcher::with_default(&loader, || {
        let process = telemetry::consumer_span!(
            "process bill",
            destination = "bridge.bills",
            message_id = "CK1",
            consumer = "loader",
            delivery_count = 1_u64,
            stream_sequence = 3_u64,
            stockout_no = "CK1",
            billno = "XSCK-CK1"
        );
        assert!(propagation::set_parent_from_headers(
            &process,
            &bill_headers
        ));
        let _in_process = process.enter();
        telemetry::client_span!("save bill", endpoint = "/jdy/sal/sal_outbound_save")
            .in_scope(|| {});
        let dead_letter = telemetry::producer_span!(
            "publish dead letter",
            destination = "bridge.dlq.load",
            message_id = "CK1",
            stockout_no = "CK1",
            billno = "XSCK-CK1"
        );
        dead_letter.in_scope(|| propagation::inject(&dead_letter, &mut dead_letter_headers));
    });

    for guard in [extractor_guard, transformer_guard, loader_guard] {
        guard
            .shutdown()
            .await
            .expect("spans are flushed on shutdown");
    }
    assert_eq!(
        batch_exporter_threads(),
        0,
        "shutdown stops the batch threads"
    );
    let spans = receiver.wait_for("eight spans", |spans| spans.len() >= 8);

    let page = named(&spans, "read page");
    let publish_order = named(&spans, "publish order");
    let process_order = named(&spans, "process order");
    let publish_bill = named(&spans, "publish bill");
    let process_bill = named(&spans, "process bill");
    let order_trace = &publish_order.trace_id;

    // The page read has a trace of its own; the order's publish is a root linked to it.
    assert_ne!(
        &page.trace_id, order_trace,
        "no trace mixes a page with its orders"
    );
    assert_eq!(publish_order.parent_span_id, None);
    assert_eq!(publish_order.links.len(), 1);
    assert_eq!(publish_order.links[0].trace_id, page.trace_id);
    assert_eq!(publish_order.links[0].span_id, page.span_id);
    assert_eq!(publish_order.kind, Kind::Producer);
    assert_eq!(publish_order.service_name, "extractor");
    assert_eq!(page.kind, Kind::Client);
    assert_eq!(publish_order.transport, Transport::HttpProtobuf);

    // The transformer continues the order's trace from the headers.
    assert_eq!(&process_order.trace_id, order_trace);
    assert_eq!(
        process_order.parent_span_id.as_ref(),
        Some(&publish_order.span_id)
    );
    assert_eq!(process_order.kind, Kind::Consumer);
    assert_eq!(process_order.service_name, "transformer");
    assert_eq!(
        process_order.str_attribute("messaging.system"),
        Some("nats")
    );
    assert_eq!(
        process_order.str_attribute("messaging.destination.name"),
        Some("bridge.orders.raw")
    );
    assert_eq!(
        process_order.str_attribute("messaging.message.id"),
        Some("CK1")
    );
    assert_eq!(
        process_order.str_attribute("messaging.operation.type"),
        Some("process")
    );
    assert_eq!(
        process_order.int_attribute("messaging.nats.message.delivery_count"),
        Some(2)
    );
    assert_eq!(process_order.str_attribute("stockout_no"), Some("CK1"));
    let redelivery = process_order
        .events
        .iter()
        .find(|e| e.name == "Message redelivered");
    let redelivery = redelivery.expect("the redelivery is an event of the process span");
    assert_eq!(redelivery.attributes.get("delivered"), Some(&Value::Int(2)));

    let lookup = named(&spans, "lookup");
    assert_eq!(lookup.parent_span_id.as_ref(), Some(&process_order.span_id));
    assert_eq!(lookup.kind, Kind::Internal);
    assert_eq!(lookup.str_attribute("lookup.cache"), Some("hit"));
    assert_eq!(
        publish_bill.parent_span_id.as_ref(),
        Some(&process_order.span_id)
    );
    assert_eq!(publish_bill.str_attribute("billno"), Some("XSCK-CK1"));

    // The loader's process span, its save and the dead letter all stay in the order's trace.
    assert_eq!(
        process_bill.parent_span_id.as_ref(),
        Some(&publish_bill.span_id)
    );
    assert_eq!(process_bill.service_name, "loader");
    let save = named(&spans, "save bill");
    assert_eq!(save.kind, Kind::Client);
    assert_eq!(save.parent_span_id.as_ref(), Some(&process_bill.span_id));
    let dead_letter = named(&spans, "publish dead letter");
    assert_eq!(
        dead_letter.parent_span_id.as_ref(),
        Some(&process_bill.span_id)
    );
    assert_eq!(
        propagation::trace_id_from_headers(&dead_letter_headers).as_ref(),
        Some(order_trace),
        "a dead letter carries the order's trace id"
    );

    let in_order_trace = spans
        .iter()
        .filter(|span| &span.trace_id == order_trace)
        .count();
    assert_eq!(
        in_order_trace, 7,
        "every span but the page read is in the order's trace"
    );
}

#[tokio::test]
async fn spans_are_exported_over_grpc_with_the_configured_service_name() {
    let _serial = SERIAL.lock().await;
    let receiver = OtlpReceiver::start();
    let config = TelemetryConfig {
        service_name: Some("bridge-under-test".to_owned()),
        ..exporting_to(&receiver.grpc_endpoint(), OtlpProtocol::Grpc)
    };
    let (dispatch, guard) = worker("loader", &config);
    assert_eq!(
        guard.export_target().map(|target| target.protocol),
        Some(OtlpProtocol::Grpc)
    );

    dispatcher::with_default(&dispatch, || {
        telemetry::client_span!("save bill", endpoint = "/jdy/sal/sal_outbound_save").in_scope(
            || {
                tracing::warn!(attempt = 1_i64, "Retrying 星辰 call");
            },
        );
    });
    // Shutting down from this current-thread runtime must not starve the gRPC client.
    guard
        .shutdown()
        .await
        .expect("spans are flushed on shutdown");

    let save = receiver.wait_for_span("save bill");
    assert_eq!(save.transport, Transport::Grpc);
    assert_eq!(save.service_name, "bridge-under-test");
    assert_eq!(save.kind, Kind::Client);
    assert!(
        save.events
            .iter()
            .any(|event| event.name == "Retrying 星辰 call")
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_but_context_still_propagates() {
    let _serial = SERIAL.lock().await;
    let (dispatch, guard) = worker("transformer", &TelemetryConfig::default());
    assert!(!guard.is_exporting());
    assert_eq!(guard.export_target(), None);
    assert_eq!(batch_exporter_threads(), 0, "no exporter, no batch thread");
    assert_eq!(guard.service_name(), "transformer");

    let mut headers = HeaderMap::new();
    let (producer_trace, consumer_trace) = dispatcher::with_default(&dispatch, || {
        let publish = telemetry::producer_span!(
            "publish bill",
            destination = "bridge.bills",
            message_id = "CK1",
            stockout_no = "CK1",
            billno = Empty
        );
        propagation::inject(&publish, &mut headers);
        let process = telemetry::consumer_span!(
            "process bill",
            destination = "bridge.bills",
            message_id = "CK1",
            consumer = "loader",
            delivery_count = 1_u64,
            stream_sequence = 1_u64,
            stockout_no = "CK1",
            billno = Empty
        );
        assert!(propagation::set_parent_from_headers(&process, &headers));
        (
            propagation::trace_id_of(&publish),
            propagation::trace_id_of(&process),
        )
    });

    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_ref()).collect();
    assert_eq!(names, ["traceparent"], "lowercase, and no empty tracestate");
    let traceparent = headers
        .get("traceparent")
        .expect("traceparent")
        .as_str()
        .to_owned();
    let producer_trace = producer_trace.expect("the publish span has a trace id");
    assert_eq!(
        propagation::trace_id_from_headers(&headers).as_ref(),
        Some(&producer_trace)
    );
    assert_eq!(
        consumer_trace,
        Some(producer_trace.clone()),
        "the consumer joins the trace"
    );
    let parent_span_id = traceparent.split('-').nth(2).expect("a span id field");
    assert_eq!(parent_span_id.len(), 16);
    assert_ne!(parent_span_id, "0000000000000000");
    guard.shutdown().await.expect("nothing to flush");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("capture lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8 logs")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(format: LogFormat, log: impl FnOnce() -> Option<String>) -> (Vec<String>, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let config = TelemetryConfig {
        log_format: format,
        ..TelemetryConfig::default()
    };
    let (dispatch, _guard) =
        telemetry::dispatch("loader", &config, move || writer.clone()).expect("telemetry builds");
    let trace_id = dispatcher::with_default(&dispatch, log).expect("the span has a trace id");
    (captured.lines(), trace_id)
}

#[tokio::test]
async fn json_log_lines_carry_trace_and_span_ids_and_fields() {
    let _serial = SERIAL.lock().await;
    let mut span_id = String::new();
    let (lines, trace_id) = log_lines(LogFormat::Json, || {
        tracing::info!("Worker started");
        let process = tracing::info_span!("process bill", stockout_no = "CK1");
        let _entered = process.enter();
        span_id = telemetry::current_ids().expect("inside a span").1;
        tracing::info!(
            billno = "XSCK-CK1",
            elapsed_ms = 12_u64,
            timestamp = "shadowed",
            "Bill saved"
        );
        propagation::trace_id_of(&process)
    });

    let parse = |line: &str| -> serde_json::Value { serde_json::from_str(line).expect("json") };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let outside = parse(&lines[0]);
    assert_eq!(outside["message"], "Worker started");
    assert!(
        outside.get("trace_id").is_none(),
        "no span, no trace id: {outside}"
    );

    let inside = parse(&lines[1]);
    assert_eq!(inside["message"], "Bill saved");
    assert_eq!(inside["level"], "INFO");
    assert_eq!(inside["trace_id"], trace_id.as_str());
    assert_eq!(inside["span_id"], span_id.as_str());
    assert_eq!(inside["billno"], "XSCK-CK1");
    assert_eq!(inside["elapsed_ms"], 12);
    assert_eq!(inside["spans"][0]["name"], "process bill");
    assert_ne!(
        inside["timestamp"], "shadowed",
        "the line's own keys win over event fields"
    );
    assert_eq!(inside["spans"][0]["stockout_no"], "CK1");
}

#[tokio::test]
async fn pretty_log_lines_end_with_trace_and_span_ids() {
    let _serial = SERIAL.lock().await;
    let (lines, trace_id) = log_lines(LogFormat::Pretty, || {
        let span = tracing::info_span!("read page");
        span.in_scope(|| tracing::info!(page_no = 3_u64, "Page read"));
        propagation::trace_id_of(&span)
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("Page read page_no=3"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!(" trace_id={trace_id} span_id=")),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn global_init_installs_once_and_reports_the_second_attempt() {
    let _serial = SERIAL.lock().await;
    let guard = telemetry::init("extractor", &TelemetryConfig::default()).expect("first init");
    let again = telemetry::init("extractor", &TelemetryConfig::default());
    assert!(matches!(
        again,
        Err(telemetry::TelemetryError::SubscriberAlreadySet)
    ));

    let span = tracing::info_span!("read page");
    assert!(
        propagation::trace_id_of(&span).is_some(),
        "the global subscriber traces spans"
    );
    guard.shutdown().await.expect("nothing to flush");
}

#[tokio::test]
async fn health_server_serves_metrics_liveness_and_readiness_that_flips() {
    let _serial = SERIAL.lock().await;
    let metrics = bridge_metrics::install().expect("the process's only recorder");
    let readiness = Readiness::with_checks(["nats", "consumer"]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let address = "127.0.0.1:0".parse().expect("address");
    let server = HealthServer::start(address, Some(metrics), readiness.clone(), async move {
        let _ = stopped.await;
    })
    .await
    .expect("the health server starts");
    let base = format!("http://{}", server.local_addr());
    telemetry::install_tls_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let get = |path: &str| {
        let request = client.get(format!("{base}{path}"));
        async move { request.send().await.expect("the health server answers") }
    };

    bridge_metrics::orders_read(2);
    bridge_metrics::bill_loaded(LoadOutcome::Created);
    bridge_metrics::api_call(
        ApiEndpoint::WdtStockoutQuery,
        ApiOutcome::Ok,
        Duration::from_millis(80),
    );
    let scrape = get("/metrics").await;
    assert_eq!(scrape.status(), 200);
    assert_eq!(
        scrape.headers()["content-type"],
        telemetry::health::PROMETHEUS_CONTENT_TYPE
    );
    let text = scrape.text().await.expect("metrics text");
    assert!(text.contains("# HELP bridge_orders_read_total"), "{text}");
    assert!(text.contains("bridge_orders_read_total 2"), "{text}");
    assert!(
        text.contains(r#"bridge_bills_loaded_total{outcome="created"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"bridge_api_calls_total{endpoint="wdt.stockout.order.query.trade",outcome="ok"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("bridge_api_call_duration_seconds_bucket"),
        "{text}"
    );

    assert_eq!(get("/healthz").await.status(), 200);
    let not_ready = get("/readyz").await;
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.expect("json body");
    assert_eq!(body["failing"], serde_json::json!(["consumer", "nats"]));

    readiness.set("nats", true);
    readiness.set("consumer", true);
    assert_eq!(get("/readyz").await.status(), 200);

    readiness.set("nats", false);
    let lost = get("/readyz").await;
    assert_eq!(lost.status(), 503);
    let body: serde_json::Value = lost.json().await.expect("json body");
    assert_eq!(body["failing"], serde_json::json!(["nats"]));

    let _ = stop.send(());
    server.wait().await.expect("the server stops cleanly");
}
