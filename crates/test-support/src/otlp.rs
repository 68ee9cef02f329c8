//! An OTLP trace receiver for tests: what a collector would see of the spans a worker exports.
//!
//! [`OtlpReceiver::start`] listens on two loopback ports the kernel picks, one for OTLP over
//! HTTP/protobuf (`POST /v1/traces`) and one for OTLP over gRPC (the collector's `TraceService`),
//! and keeps every span it receives as a [`ReceivedSpan`] with ids in lowercase hex, so a test
//! can assert trace ids, parents, links, kinds, attributes, events and the exporting service's
//! name. The servers run on a runtime of their own thread: a test may block its own thread (a
//! tracer provider flushing on drop, say) without starving the receiver it is exporting to.
//!
//! Configuring the exporter is left to the `telemetry` crate; this module only receives.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use tokio::sync::oneshot;

/// How long [`OtlpReceiver::wait_for`] waits unless told otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The transport a span arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP over HTTP with a protobuf body.
    HttpProtobuf,
    /// OTLP over gRPC.
    Grpc,
}

/// The kind of a span, as OTLP encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The exporter did not say.
    Unspecified,
    /// An internal operation.
    Internal,
    /// The server side of a synchronous call.
    Server,
    /// The client side of a synchronous call.
    Client,
    /// The sending side of an asynchronous message.
    Producer,
    /// The receiving side of an asynchronous message.
    Consumer,
}

/// An attribute value, flattened to what the bridge's spans use.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating point number.
    Double(f64),
    /// Anything else (arrays, maps, bytes), in its debug form.
    Other(String),
}

/// A span event, such as a retry or a redelivery.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    /// The event's name (for `tracing` events, the log message).
    pub name: String,
    /// The event's attributes by key.
    pub attributes: BTreeMap<String, Value>,
}

/// A link from a span to another span context.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedLink {
    /// The linked span's trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The linked span's id, 16 lowercase hex digits.
    pub span_id: String,
    /// The link's attributes by key.
    pub attributes: BTreeMap<String, Value>,
}

/// One span as the receiver got it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource the span came with.
    pub service_name: String,
    /// The transport it arrived on.
    pub transport: Transport,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent's span id, `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// The span's kind.
    pub kind: Kind,
    /// The span's attributes by key.
    pub attributes: BTreeMap<String, Value>,
    /// The span's events in the order they were recorded.
    pub events: Vec<ReceivedEvent>,
    /// The span's links.
    pub links: Vec<ReceivedLink>,
}

impl ReceivedSpan {
    /// The attribute's value when it is a string.
    pub fn str_attribute(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Value::Str(text)) => Some(text),
            _ => None,
        }
    }

    /// The attribute's value when it is an integer.
    pub fn int_attribute(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Value::Int(number)) => Some(*number),
            _ => None,
        }
    }
}

impl fmt::Display for ReceivedSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parent = self.parent_span_id.as_deref().unwrap_or("-");
        write!(
            f,
            "{} [{:?}] trace={} span={} parent={} service={}",
            self.name, self.kind, self.trace_id, self.span_id, parent, self.service_name
        )
    }
}

type Store = Arc<Mutex<Vec<ReceivedSpan>>>;

/// A running receiver; dropping it stops both servers.
pub struct OtlpReceiver {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    spans: Store,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts the HTTP and the gRPC receiver on free loopback ports.
    pub fn start() -> OtlpReceiver {
        let spans = Store::default();
        let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let store = spans.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".to_owned())
            .spawn(move || serve(store, addrs_tx, shutdown_rx))
            .expect("spawn the OTLP receiver thread");
        let (http_addr, grpc_addr) = addrs_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the OTLP receiver bound its ports within 10s");
        OtlpReceiver {
            http_addr,
            grpc_addr,
            spans,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `http/protobuf`; the exporter appends
    /// `/v1/traces`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The URL for `OTEL_EXPORTER_OTLP_ENDPOINT` with `grpc`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.spans).clone()
    }

    /// The first received span with this name.
    pub fn span_named(&self, name: &str) -> Option<ReceivedSpan> {
        lock(&self.spans)
            .iter()
            .find(|span| span.name == name)
            .cloned()
    }

    /// Waits until `done` holds for the received spans and returns them; panics after
    /// [`DEFAULT_WAIT`] naming `what` and listing what did arrive.
    pub fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        self.wait_for_within(DEFAULT_WAIT, what, done)
    }

    /// Like [`OtlpReceiver::wait_for`] with a deadline of the caller's.
    pub fn wait_for_within(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = spans.iter().map(ToString::to_string).collect();
                panic!("waited {timeout:?} for {what}; received: {seen:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a span with this name has arrived and returns it.
    pub fn wait_for_span(&self, name: &str) -> ReceivedSpan {
        let what = format!("a span named {name:?}");
        self.wait_for(&what, |spans| spans.iter().any(|span| span.name == name));
        self.span_named(name)
            .expect("the span was there a moment ago")
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(spans: &Store) -> MutexGuard<'_, Vec<ReceivedSpan>> {
    // A test that panicked while holding the lock has already failed; its spans are still good.
    spans
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs both servers until `shutdown` fires, reporting their addresses once bound.
///
/// Stopping drops the runtime instead of shutting the servers down gracefully: a graceful stop
/// waits for clients to hang up, and a test's exporter may sit on a runtime that is blocked in
/// dropping this very receiver.
fn serve(
    spans: Store,
    addrs: std::sync::mpsc::Sender<(SocketAddr, SocketAddr)>,
    shutdown: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("build the OTLP receiver's runtime");
    runtime.block_on(async move {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/HTTP");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP/gRPC");
        let bound = (
            http.local_addr().expect("OTLP/HTTP address"),
            grpc.local_addr().expect("OTLP/gRPC address"),
        );

        let router = Router::new()
            .route("/v1/traces", post(receive_http))
            .with_state(spans.clone());
        tokio::spawn(async move { axum::serve(http, router).await });
        let grpc_server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(GrpcReceiver { spans }))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc));
        tokio::spawn(grpc_server);

        let _ = addrs.send(bound);
        let _ = shutdown.await;
    });
    // Dropping the runtime cancels both servers and closes their sockets and connections.
    drop(runtime);
}

async fn receive_http(State(spans): State<Store>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    store(&spans, request, Transport::HttpProtobuf);
    let response = ExportTraceServiceResponse {
        partial_success: None,
    }
    .encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], response).into_response()
}

struct GrpcReceiver {
    spans: Store,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        store(&self.spans, request.into_inner(), Transport::Grpc);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn store(spans: &Store, request: ExportTraceServiceRequest, transport: Transport) {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource_attributes = resource_spans
            .resource
            .map(|resource| resource.attributes)
            .unwrap_or_default();
        let service_name = match attributes(resource_attributes).remove("service.name") {
            Some(Value::Str(name)) => name,
            _ => String::new(),
        };
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                received.push(convert(span, &service_name, transport));
            }
        }
    }
    lock(spans).extend(received);
}

fn convert(span: Span, service_name: &str, transport: Transport) -> ReceivedSpan {
    let parent_span_id = (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id));
    ReceivedSpan {
        service_name: service_name.to_owned(),
        transport,
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id,
        kind: kind(span.kind),
        attributes: attributes(span.attributes),
        events: span.events.into_iter().map(event).collect(),
        links: span.links.into_iter().map(link).collect(),
        name: span.name,
    }
}

fn event(event: span::Event) -> ReceivedEvent {
    ReceivedEvent {
        name: event.name,
        attributes: attributes(event.attributes),
    }
}

fn link(link: span::Link) -> ReceivedLink {
    ReceivedLink {
        trace_id: hex(&link.trace_id),
        span_id: hex(&link.span_id),
        attributes: attributes(link.attributes),
    }
}

fn kind(code: i32) -> Kind {
    match span::SpanKind::try_from(code) {
        Ok(span::SpanKind::Internal) => Kind::Internal,
        Ok(span::SpanKind::Server) => Kind::Server,
        Ok(span::SpanKind::Client) => Kind::Client,
        Ok(span::SpanKind::Producer) => Kind::Producer,
        Ok(span::SpanKind::Consumer) => Kind::Consumer,
        Ok(span::SpanKind::Unspecified) | Err(_) => Kind::Unspecified,
    }
}

fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, Value> {
    pairs
        .into_iter()
        .map(|pair| (pair.key, value(pair.value)))
        .collect()
}

fn value(value: Option<AnyValue>) -> Value {
    match value.and_then(|any| any.value) {
        Some(any_value::Value::StringValue(text)) => Value::Str(text),
        Some(any_value::Value::BoolValue(flag)) => Value::Bool(flag),
        Some(any_value::Value::IntValue(number)) => Value::Int(number),
        Some(any_value::Value::DoubleValue(number)) => Value::Double(number),
        Some(other) => Value::Other(format!("{other:?}")),
        None => Value::Other(String::new()),
    }
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    fn string_pair(key: &str, text: &str) -> KeyValue {
        let value = any_value::Value::StringValue(text.to_owned());
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request_with(span: Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_pair("service.name", "loader")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn stored_span_has_hex_ids_service_name_kind_and_no_parent_when_root() {
        let spans = Store::default();
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            name: "publish".to_owned(),
            kind: span::SpanKind::Producer as i32,
            attributes: vec![string_pair("messaging.system", "nats")],
            links: vec![span::Link {
                trace_id: vec![0xcd; 16],
                span_id: vec![0x02; 8],
                ..Default::default()
            }],
            ..Default::default()
        };

        store(&spans, request_with(span), Transport::Grpc);

        let stored = lock(&spans)[0].clone();
        assert_eq!(stored.trace_id, "ab".repeat(16));
        assert_eq!(stored.span_id, "01".repeat(8));
        assert_eq!(
            stored.parent_span_id, None,
            "an empty parent id means a root span"
        );
        assert_eq!(stored.service_name, "loader");
        assert_eq!(stored.kind, Kind::Producer);
        assert_eq!(stored.str_attribute("messaging.system"), Some("nats"));
        assert_eq!(stored.links[0].trace_id, "cd".repeat(16));
        assert_eq!(stored.transport, Transport::Grpc);
    }

    #[test]
    fn receiver_stops_when_dropped() {
        let receiver = OtlpReceiver::start();
        let port = receiver.http_addr.port();
        drop(receiver);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the HTTP port is closed once the receiver is dropped"
        );
    }
}
