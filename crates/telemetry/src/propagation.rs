//! Trace context in NATS headers: how one order's trace crosses the workers.
//!
//! The context travels as W3C trace context in the lowercase headers `traceparent` and
//! `tracestate`, whatever the case the propagator asks for. A consumer makes its process span a
//! child of the context it extracts ([`set_parent_from_headers`]); a producer that starts an
//! order's trace makes its span a new root linked to the span it came from
//! ([`start_new_root_linked_to`]), so a page read never mixes orders in one trace; a redrive or
//! a replay continues the order's trace and links to the operator's command
//! ([`add_link_to_span`], [`add_link_from_headers`]). [`trace_id_from_headers`] gives the id
//! `bridge trace` and dead letters show.
//!
//! The propagator is built here rather than taken from the global one, so these functions work
//! the same before, during and after [`crate::init`]. Span creation is left to the workers and
//! [`crate::span`]; without the OpenTelemetry layer in the subscriber these functions do nothing.

use async_nats::HeaderMap;
use async_nats::header::HeaderName;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header carrying the trace id, the parent span id and the sampling flag.
pub const TRACEPARENT: &str = "traceparent";

/// The header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Writes the span's context into `headers` as `traceparent` (and `tracestate` when not empty).
///
/// A span unknown to the OpenTelemetry layer writes nothing.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    inject_context(&span.context(), headers);
}

/// Writes an OpenTelemetry context into `headers`.
pub fn inject_context(context: &opentelemetry::Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(context, &mut HeadersInjector(headers));
}

/// The headers [`inject`] writes for `span`, for callers that hand trace context on as strings
/// (the pipeline's `TraceContext::from_headers` reads them back).
pub fn headers_for(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    inject(span, &mut headers);
    headers
}

/// Reads the context from `headers`; an empty context when they carry none or an invalid one.
pub fn extract(headers: &HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeadersExtractor(headers))
}

/// The remote span context carried by `headers`, when they carry a valid one.
pub fn span_context_from_headers(headers: &HeaderMap) -> Option<SpanContext> {
    let context = extract(headers);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// The trace id carried by `headers` as 32 lowercase hex digits.
pub fn trace_id_from_headers(headers: &HeaderMap) -> Option<String> {
    span_context_from_headers(headers).map(|context| context.trace_id().to_string())
}

/// The span's trace id as 32 lowercase hex digits, when the span is traced.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Makes `span` a child of the context in `headers`; returns whether there was one.
///
/// Call it before the span is first entered: once started, a span keeps its parent. Without a
/// context in the headers the span keeps the parent it had.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) -> bool {
    if span_context_from_headers(headers).is_none() {
        return false;
    }
    span.set_parent(extract(headers)).is_ok()
}

/// Makes `span` the root of a new trace, linked to `origin` (for an order's publish span, the
/// page read it came from). Call it before the span is first entered.
pub fn start_new_root_linked_to(span: &tracing::Span, origin: &tracing::Span) {
    let origin_context = origin.context().span().span_context().clone();
    // An empty parent context makes the tracer draw a new trace id.
    let _ = span.set_parent(opentelemetry::Context::new());
    span.add_link(origin_context);
}

/// Links `span` to `other`, for example a redriven order's span to the redrive command's span.
pub fn add_link_to_span(span: &tracing::Span, other: &tracing::Span) {
    span.add_link(other.context().span().span_context().clone());
}

/// Links `span` to the context in `headers`; returns whether there was one.
pub fn add_link_from_headers(span: &tracing::Span, headers: &HeaderMap) -> bool {
    let Some(remote) = span_context_from_headers(headers) else {
        return false;
    };
    span.add_link(remote);
    true
}

struct HeadersInjector<'a>(&'a mut HeaderMap);

impl Injector for HeadersInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` when there is none; it says nothing.
        if value.is_empty() {
            return;
        }
        let name = if key.eq_ignore_ascii_case(TRACEPARENT) {
            HeaderName::from_static(TRACEPARENT)
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            HeaderName::from_static(TRACESTATE)
        } else {
            // Other propagators' keys are kept, lowercased; an invalid one is skipped, since a
            // message must not fail over a tracing header.
            match HeaderName::try_from(key.to_ascii_lowercase()) {
                Ok(name) => name,
                Err(_) => return,
            }
        };
        self.0.insert(name, value);
    }
}

struct HeadersExtractor<'a>(&'a HeaderMap);

impl Extractor for HeadersExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if let Some(value) = self.0.get(key) {
            return Some(value.as_str());
        }
        // NATS header names are case-sensitive; accept a sender that capitalised them.
        self.0
            .iter()
            .find(|(name, _)| header_name(name).eq_ignore_ascii_case(key))
            .and_then(|(_, values)| values.first())
            .map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| header_name(name)).collect()
    }
}

fn header_name(name: &HeaderName) -> &str {
    name.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn remote_context() -> opentelemetry::Context {
        let span_context = SpanContext::new(
            TraceId::from_hex(TRACE).expect("trace id"),
            SpanId::from_hex(SPAN).expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("bridge", "1")]).expect("trace state"),
        );
        opentelemetry::Context::new().with_remote_span_context(span_context)
    }

    #[test]
    fn injected_headers_are_lowercase_w3c_trace_context() {
        let mut headers = HeaderMap::new();
        inject_context(&remote_context(), &mut headers);

        let traceparent = headers
            .get(TRACEPARENT)
            .expect("traceparent is set")
            .as_str();
        assert_eq!(traceparent, format!("00-{TRACE}-{SPAN}-01"));
        assert_eq!(
            headers.get(TRACESTATE).map(|v| v.as_str()),
            Some("bridge=1")
        );
        let names: Vec<&str> = headers.iter().map(|(name, _)| header_name(name)).collect();
        assert!(
            names.iter().all(|name| *name == name.to_ascii_lowercase()),
            "{names:?}"
        );
    }

    #[test]
    fn extract_reads_back_what_inject_wrote() {
        let mut headers = HeaderMap::new();
        inject_context(&remote_context(), &mut headers);

        let span_context = span_context_from_headers(&headers).expect("a valid context");
        assert_eq!(span_context.trace_id().to_string(), TRACE);
        assert_eq!(span_context.span_id().to_string(), SPAN);
        assert!(span_context.is_remote());
        assert_eq!(trace_id_from_headers(&headers).as_deref(), Some(TRACE));
    }

    #[test]
    fn extract_accepts_capitalised_header_names() {
        let mut headers = HeaderMap::new();
        headers.insert("Traceparent", format!("00-{TRACE}-{SPAN}-01").as_str());
        assert_eq!(trace_id_from_headers(&headers).as_deref(), Some(TRACE));
    }

    #[test]
    fn missing_or_malformed_traceparent_gives_no_trace_id() {
        assert_eq!(trace_id_from_headers(&HeaderMap::new()), None);
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, "00-not-a-trace-01");
        assert_eq!(trace_id_from_headers(&headers), None);
    }

    #[test]
    fn inject_without_the_tracing_layer_writes_nothing() {
        let mut headers = HeaderMap::new();
        inject(&tracing::Span::none(), &mut headers);
        assert!(headers.is_empty());
    }
}
