//! Issue 7's traces, end to end: `extractor backfill`, `transformer` and `loader` as processes
//! exporting over OTLP to a receiver inside the test, and every order's trace checked from the
//! spans that arrive.
//!
//! The workers are configured only by the standard variables: the loader and the extractor export
//! over HTTP/protobuf, the transformer over gRPC, and the batch processor's schedule is a minute,
//! so the spans a worker still holds at its end reach the receiver only through the flush on
//! shutdown. Fifty orders go through; two of them name goods 星辰 does not know and end as dead
//! letters. Starting the servers is [`e2e::Harness`]'s; the receiver is
//! [`test_support::otlp::OtlpReceiver`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use e2e::{Harness, stockout_no};
use serde_json::{Map, Value};
use test_support::otlp::{Kind, OtlpReceiver, ReceivedSpan, Transport};

const FROM: &str = "2024-06-01 00:00:00";
const TO: &str = "2024-06-03 23:59:59";
const ORDERS: usize = 50;
const DEAD_LETTERED: usize = 2;
/// Goods no 星辰 material has; an order with them cannot be mapped.
const UNKNOWN_GOODS: &str = "NO-SUCH-GOODS-7";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the spans may take to arrive once every worker has exited.
const SPANS_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_is_one_trace_through_the_three_workers_and_a_dead_letter_ends_its_trace() {
    let receiver = OtlpReceiver::start();
    let mut h = Harness::start(71, ORDERS, FROM, TO).await;
    let orders = h.exactly_shipped(ORDERS);
    let doomed = h.give_unknown_goods(&orders, DEAD_LETTERED, UNKNOWN_GOODS);

    h.set_env("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    h.set_env("OTEL_BSP_SCHEDULE_DELAY", "60000");
    h.set_env("OTEL_BSP_MAX_QUEUE_SIZE", "8192");
    export_over(&mut h, &receiver, Transport::HttpProtobuf);
    let loader = h.start_worker("loader");
    export_over(&mut h, &receiver, Transport::Grpc);
    let transformer = h.start_worker("transformer");
    export_over(&mut h, &receiver, Transport::HttpProtobuf);
    h.backfill().await;
    let loaded = (ORDERS - DEAD_LETTERED) as u64;
    h.wait_until_settled(loaded, DEAD_LETTERED as u64, SETTLE_TIMEOUT)
        .await;
    h.stop_workers().await;

    let spans = receiver.wait_for_within(SPANS_TIMEOUT, "every worker's spans", |spans| {
        count(spans, "publish order") >= ORDERS
            && count(spans, "load bill") >= ORDERS - DEAD_LETTERED
            && count(spans, "publish dead letter") >= DEAD_LETTERED
    });
    let traces = Traces::new(spans);

    let mut trace_ids = BTreeSet::new();
    for order in &orders {
        let no = stockout_no(order);
        let trace = traces.of_order(&no);
        assert!(trace_ids.insert(trace.id.clone()), "{no} shares a trace");
        trace.assert_extracted(&traces, &no);
        let process = trace.assert_transformed(&no);
        if doomed.contains(&no) {
            trace.assert_dead_lettered(&no, process);
        } else {
            trace.assert_loaded(&no);
        }
    }
    assert_eq!(trace_ids.len(), ORDERS, "one trace per order");

    assert_transports(&traces.all);
    assert_dead_letters_carry_their_span(&h, &traces).await;
    assert_logs_name_the_spans(&h.log(transformer), &h.log(loader), &traces);
}

/// Every span received, indexed by id and by trace.
struct Traces {
    all: Vec<ReceivedSpan>,
    by_trace: HashMap<String, Vec<ReceivedSpan>>,
}

/// The spans of one order's trace.
struct Trace<'a> {
    id: String,
    spans: &'a [ReceivedSpan],
}

impl Traces {
    fn new(all: Vec<ReceivedSpan>) -> Traces {
        let mut by_trace: HashMap<String, Vec<ReceivedSpan>> = HashMap::new();
        for span in &all {
            by_trace
                .entry(span.trace_id.clone())
                .or_default()
                .push(span.clone());
        }
        Traces { all, by_trace }
    }

    /// The trace the order's one publish span starts.
    fn of_order(&self, no: &str) -> Trace<'_> {
        let publishes: Vec<&ReceivedSpan> = self
            .all
            .iter()
            .filter(|s| s.name == "publish order" && s.str_attribute("stockout_no") == Some(no))
            .collect();
        assert_eq!(
            publishes.len(),
            1,
            "{no} was published once: {publishes:#?}"
        );
        let id = publishes[0].trace_id.clone();
        Trace {
            spans: &self.by_trace[&id],
            id,
        }
    }

    fn span(&self, span_id: &str) -> Option<&ReceivedSpan> {
        self.all.iter().find(|s| s.span_id == span_id)
    }
}

impl Trace<'_> {
    fn named(&self, name: &str) -> Vec<&ReceivedSpan> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str, no: &str) -> &ReceivedSpan {
        let found = self.named(name);
        assert_eq!(
            found.len(),
            1,
            "{no}: one {name:?} span in {}",
            self.listing()
        );
        found[0]
    }

    fn children_of(&self, parent: &ReceivedSpan) -> Vec<&ReceivedSpan> {
        self.spans
            .iter()
            .filter(|s| s.parent_span_id.as_deref() == Some(parent.span_id.as_str()))
            .collect()
    }

    fn services(&self) -> BTreeSet<&str> {
        self.spans.iter().map(|s| s.service_name.as_str()).collect()
    }

    fn listing(&self) -> String {
        let lines: Vec<String> = self.spans.iter().map(ToString::to_string).collect();
        format!("trace {}:\n{}", self.id, lines.join("\n"))
    }

    /// The extractor's publish is the trace's root, linked to the page read it came from, which
    /// is a trace of its own holding no order.
    fn assert_extracted(&self, traces: &Traces, no: &str) {
        let publish = self.one("publish order", no);
        assert_eq!(publish.service_name, "extractor");
        assert_eq!(publish.kind, Kind::Producer, "{no}");
        assert_eq!(
            publish.parent_span_id, None,
            "{no}: the publish is the root"
        );
        assert_messaging(publish, "bridge.orders.raw", no);
        assert!(
            self.spans
                .iter()
                .all(|s| s.str_attribute("stockout_no").is_none_or(|n| n == no)),
            "{no}: the trace holds only its own order\n{}",
            self.listing()
        );

        assert_eq!(publish.links.len(), 1, "{no}: the publish links its page");
        let link = &publish.links[0];
        assert_ne!(
            link.trace_id, self.id,
            "{no}: the page read is a trace of its own"
        );
        let page = traces
            .span(&link.span_id)
            .unwrap_or_else(|| panic!("{no}: the linked page span was exported"));
        assert_eq!(page.name, "read wdt page");
        assert_eq!(page.kind, Kind::Client);
        assert_eq!(page.service_name, "extractor");
        assert_eq!(page.trace_id, link.trace_id);
        assert_eq!(
            page.parent_span_id, None,
            "the page read is its trace's root"
        );
        let page_trace = &traces.by_trace[&page.trace_id];
        assert!(
            page_trace
                .iter()
                .all(|s| s.str_attribute("stockout_no").is_none()),
            "no order's span sits in a page's trace: {page_trace:#?}"
        );
    }

    /// The transformer's process span is a consumer child of the publish, with a child per
    /// lookup; returns it.
    fn assert_transformed(&self, no: &str) -> &ReceivedSpan {
        let publish = self.one("publish order", no);
        let processes = self.named("process order");
        assert!(
            !processes.is_empty(),
            "{no}: transformed\n{}",
            self.listing()
        );
        for process in &processes {
            assert_eq!(process.service_name, "transformer");
            assert_eq!(process.kind, Kind::Consumer, "{no}");
            assert_eq!(
                process.parent_span_id.as_deref(),
                Some(publish.span_id.as_str()),
                "{no}: the process span is the publish's child"
            );
            assert_messaging(process, "bridge.orders.raw", no);
            assert_eq!(
                process.str_attribute("messaging.message.id"),
                publish.str_attribute("messaging.message.id"),
                "{no}: the same message"
            );
            assert_eq!(
                process.str_attribute("messaging.consumer.group.name"),
                Some("transformer")
            );
            assert_delivery_count(process, "Order redelivered", no);
        }
        // A redelivered order has a process span per delivery; the last one decided.
        let process = *processes
            .iter()
            .max_by_key(|p| p.int_attribute("messaging.nats.message.delivery_count"))
            .expect("at least one");

        let lookups: Vec<&ReceivedSpan> = self
            .children_of(process)
            .into_iter()
            .filter(|s| s.name == "lookup")
            .collect();
        let collections: BTreeSet<&str> = lookups
            .iter()
            .filter_map(|s| s.str_attribute("lookup.collection"))
            .collect();
        assert_eq!(
            collections,
            BTreeSet::from(["customer", "material", "store"]),
            "{no}: a lookup span per record, children of the process span\n{}",
            self.listing()
        );
        for lookup in &lookups {
            assert_eq!(lookup.service_name, "transformer");
            let cache = lookup.str_attribute("lookup.cache");
            assert!(matches!(cache, Some("hit" | "miss")), "{no}: {lookup:#?}");
            let calls = self.children_of(lookup);
            if cache == Some("miss") {
                assert!(
                    calls
                        .iter()
                        .any(|c| c.name == "xingchen detail" && c.kind == Kind::Client),
                    "{no}: a miss asked 星辰 in a client span: {lookup:#?}"
                );
            }
        }
        process
    }

    /// The bill's publish is the process span's producer child, and the loader's process span
    /// its consumer child, with the save as a client child.
    fn assert_loaded(&self, no: &str) {
        assert_eq!(
            self.services(),
            BTreeSet::from(["extractor", "transformer", "loader"]),
            "{no}"
        );
        let publish = self.one("publish bill", no);
        let process = self.span_by_id(publish.parent_span_id.as_deref(), no);
        assert_eq!(
            process.name, "process order",
            "{no}: the bill's publish parent"
        );
        assert_eq!(publish.kind, Kind::Producer);
        assert_eq!(publish.service_name, "transformer");
        assert_messaging(publish, "bridge.bills", no);
        assert_eq!(publish.str_attribute("billno"), Some(no), "{no}");
        assert_eq!(process.str_attribute("billno"), Some(no), "{no}");

        let loads = self.named("load bill");
        assert!(!loads.is_empty(), "{no}: loaded\n{}", self.listing());
        for load in &loads {
            assert_eq!(load.service_name, "loader");
            assert_eq!(load.kind, Kind::Consumer);
            assert_eq!(
                load.parent_span_id.as_deref(),
                Some(publish.span_id.as_str()),
                "{no}: the load is the bill publish's child"
            );
            assert_messaging(load, "bridge.bills", no);
            assert_eq!(load.str_attribute("billno"), Some(no));
            assert_eq!(
                load.str_attribute("messaging.message.id"),
                publish.str_attribute("messaging.message.id")
            );
            assert_delivery_count(load, "Bill message redelivered", no);
        }
        let saves: Vec<&ReceivedSpan> = loads
            .iter()
            .flat_map(|load| self.children_of(load))
            .filter(|s| s.name == "save bill")
            .collect();
        assert_eq!(
            saves.len(),
            1,
            "{no}: one save, a child of the load\n{}",
            self.listing()
        );
        assert_eq!(saves[0].kind, Kind::Client);
        assert_eq!(saves[0].str_attribute("billno"), Some(no));
        assert!(self.named("publish dead letter").is_empty(), "{no}");
    }

    /// The dead letter's publish is in the order's trace, a producer span of the transformer's,
    /// the child of the message's context, and nothing follows it: no bill, no loader.
    fn assert_dead_lettered(&self, no: &str, process: &ReceivedSpan) {
        assert_eq!(
            self.services(),
            BTreeSet::from(["extractor", "transformer"]),
            "{no}: a dead letter never reaches the loader\n{}",
            self.listing()
        );
        assert!(self.named("publish bill").is_empty(), "{no}: no bill");
        let publish = self.one("publish order", no);
        let letter = self.one("publish dead letter", no);
        assert_eq!(letter.service_name, "transformer");
        assert_eq!(letter.kind, Kind::Producer);
        assert_eq!(
            letter.parent_span_id.as_deref(),
            Some(publish.span_id.as_str()),
            "{no}: the dead letter is published on behalf of the message"
        );
        assert_messaging(letter, "bridge.dlq.transform", no);
        assert_eq!(
            letter.str_attribute("dlq.reason_kind"),
            Some("lookup_not_found")
        );
        assert_eq!(letter.str_attribute("dlq.stage"), Some("transform"));
        assert_eq!(
            letter.int_attribute("messaging.nats.message.delivery_count"),
            process.int_attribute("messaging.nats.message.delivery_count"),
            "{no}: the dead letter follows the delivery that gave up"
        );
        assert!(
            self.children_of(letter).is_empty(),
            "{no}: the trace ends with the dead letter\n{}",
            self.listing()
        );
        let material = self
            .children_of(process)
            .into_iter()
            .find(|s| s.str_attribute("lookup.key") == Some(UNKNOWN_GOODS));
        assert!(material.is_some(), "{no}: the unknown goods were looked up");
    }

    fn span_by_id(&self, span_id: Option<&str>, no: &str) -> &ReceivedSpan {
        let span_id = span_id.unwrap_or_else(|| panic!("{no}: a parent"));
        self.spans
            .iter()
            .find(|s| s.span_id == span_id)
            .unwrap_or_else(|| panic!("{no}: span {span_id} in {}", self.listing()))
    }
}

/// The messaging attributes every publish and process span carries.
fn assert_messaging(span: &ReceivedSpan, destination: &str, no: &str) {
    assert_eq!(
        span.str_attribute("messaging.system"),
        Some("nats"),
        "{span}"
    );
    assert_eq!(
        span.str_attribute("messaging.destination.name"),
        Some(destination),
        "{span}"
    );
    let message_id = span
        .str_attribute("messaging.message.id")
        .unwrap_or_default();
    assert!(!message_id.is_empty(), "{span}: a message id");
    assert_eq!(span.str_attribute("stockout_no"), Some(no), "{span}");
}

/// A delivery count of 1, or a later delivery that says so in an event.
fn assert_delivery_count(span: &ReceivedSpan, redelivered_event: &str, no: &str) {
    let delivered = span
        .int_attribute("messaging.nats.message.delivery_count")
        .unwrap_or_else(|| panic!("{no}: a delivery count: {span:#?}"));
    assert!(delivered >= 1, "{no}: {span:#?}");
    if delivered > 1 {
        assert!(
            span.events.iter().any(|e| e.name == redelivered_event),
            "{no}: a redelivery is an event of its span: {span:#?}"
        );
    }
}

/// Each worker's spans came over the protocol it was configured with.
fn assert_transports(spans: &[ReceivedSpan]) {
    for span in spans {
        let expected = match span.service_name.as_str() {
            "transformer" => Transport::Grpc,
            "extractor" | "loader" => Transport::HttpProtobuf,
            other => panic!("a span from an unexpected service {other:?}: {span}"),
        };
        assert_eq!(span.transport, expected, "{span}");
    }
}

/// The stored dead letters carry the context of their publication's span.
async fn assert_dead_letters_carry_their_span(h: &Harness, traces: &Traces) {
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), DEAD_LETTERED);
    for letter in letters {
        let no = letter.stockout_no.clone().unwrap_or_default();
        let traceparent = letter.trace.traceparent.clone().unwrap_or_default();
        let trace = traces.of_order(&no);
        let span = trace.one("publish dead letter", &no);
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", trace.id, span.span_id),
            "{no}: the dead letter's traceparent names its publication"
        );
    }
}

/// JSON log lines written inside a span carry its `trace_id` and `span_id`.
fn assert_logs_name_the_spans(transformer_log: &str, loader_log: &str, traces: &Traces) {
    let dead_lettered = log_lines(transformer_log, "Message dead-lettered");
    assert_eq!(dead_lettered.len(), DEAD_LETTERED, "{transformer_log}");
    for line in dead_lettered {
        let span = span_of_line(&line, traces);
        assert_eq!(span.name, "publish dead letter", "{line:?}");
        assert_eq!(
            span.str_attribute("stockout_no"),
            line["stockout_no"].as_str()
        );
    }
    let loaded = log_lines(loader_log, "Bill loaded");
    assert_eq!(loaded.len(), ORDERS - DEAD_LETTERED, "{loader_log}");
    for line in loaded {
        let span = span_of_line(&line, traces);
        assert_eq!(span.name, "load bill", "{line:?}");
        assert_eq!(span.str_attribute("billno"), line["billno"].as_str());
    }
}

fn log_lines(log: &str, message: &str) -> Vec<Map<String, Value>> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Map<String, Value>>(line).ok())
        .filter(|line| line.get("message").and_then(Value::as_str) == Some(message))
        .collect()
}

fn span_of_line<'a>(line: &Map<String, Value>, traces: &'a Traces) -> &'a ReceivedSpan {
    let text = |field: &str| line.get(field).and_then(Value::as_str).unwrap_or_default();
    let span = traces
        .span(text("span_id"))
        .unwrap_or_else(|| panic!("the line's span was exported: {line:?}"));
    assert_eq!(span.trace_id, text("trace_id"), "{line:?}");
    span
}

/// Points the workers started next at the receiver over `transport`.
fn export_over(h: &mut Harness, receiver: &OtlpReceiver, transport: Transport) {
    let (endpoint, protocol) = match transport {
        Transport::Grpc => (receiver.grpc_endpoint(), "grpc"),
        Transport::HttpProtobuf => (receiver.http_endpoint(), "http/protobuf"),
    };
    h.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    h.set_env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
}

fn count(spans: &[ReceivedSpan], name: &str) -> usize {
    spans.iter().filter(|s| s.name == name).count()
}
