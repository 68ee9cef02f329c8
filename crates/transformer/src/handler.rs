//! One raw order in, one bill payload out: the transformer's [`Handler`].
//!
//! For each message the handler reads the order's identity from the headers and the order from
//! the payload, asks the scheme which master data it needs, resolves it ([`crate::resolve`]),
//! evaluates the scheme and publishes the bill on the bills subject. Its exits:
//!
//! * `Ack` once the bills stream has acknowledged the publish (a duplicate counts: the same bill
//!   is already stored);
//! * a dead letter when the payload is not JSON or has no identity (`malformed_order`), or when
//!   the scheme cannot map the order (every problem named, see [`crate::problems`]);
//! * `Retry` when a lookup could not be answered or the publish was not acknowledged.
//!
//! The bill message's payload is [`scheme::BillDraft::canonical_json`], so an unchanged order
//! gives byte-identical bills and the same `Nats-Msg-Id`. Its `published_at` header carries the
//! time the *raw order* was published (the raw message's own `published_at` header when the
//! extractor sets one, else the time JetStream stored the raw message, else now), so the
//! latency the loader measures runs from the extractor's publish to the bill being recorded.
//! Pulling, acking and publishing dead letters are the [`pipeline::worker::Worker`]'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use pipeline::dead_letter::ReasonKind;
use pipeline::message::{self, OrderIdentity, TraceContext, header};
use pipeline::names::TRANSFORMER_CONSUMER;
use pipeline::publisher::Publisher;
use pipeline::worker::{Delivery, Handler, Outcome};
use pipeline::{Names, Stage};
use scheme::{BillDraft, Scheme};
use serde_json::Value;
use telemetry::metrics::{self, DeadLetterReason};
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, error, info, warn};

use crate::problems;
use crate::resolve::{LookupError, Resolver};

/// Counts of what the handler did, for heartbeats.
#[derive(Debug, Default)]
pub struct HandlerCounts {
    bills_published: AtomicU64,
}

impl HandlerCounts {
    /// Bills published and acknowledged by the bills stream.
    pub fn bills_published(&self) -> u64 {
        self.bills_published.load(Ordering::Relaxed)
    }
}

/// Turns raw orders into bill payloads.
pub struct TransformHandler {
    scheme: Arc<Scheme>,
    resolver: Resolver,
    publisher: Publisher,
    names: Names,
    max_deliver: i64,
    counts: Arc<HandlerCounts>,
}

impl TransformHandler {
    /// A handler mapping with `scheme`, resolving with `resolver`, publishing through
    /// `jetstream` on `names`' bills subject; `max_deliver` is the consumer's, to count the
    /// retries the worker turns into dead letters.
    pub fn new(
        scheme: Arc<Scheme>,
        resolver: Resolver,
        jetstream: jetstream::Context,
        names: Names,
        max_deliver: i64,
    ) -> TransformHandler {
        TransformHandler {
            scheme,
            resolver,
            publisher: Publisher::new(jetstream),
            names,
            max_deliver,
            counts: Arc::default(),
        }
    }

    /// The handler's live counts.
    pub fn counts(&self) -> Arc<HandlerCounts> {
        Arc::clone(&self.counts)
    }

    async fn process(&self, delivery: &Delivery) -> Outcome {
        let identity = match delivery.headers().map(OrderIdentity::from_headers) {
            Some(Ok(identity)) => identity,
            Some(Err(error)) => return malformed(format!("raw order message: {error}")),
            None => return malformed("raw order message has no headers".to_owned()),
        };
        Span::current().record("stockout_no", identity.stockout_no.as_str());
        let order: Value = match serde_json::from_slice(delivery.payload()) {
            Ok(order) => order,
            Err(error) => return malformed(format!("raw order is not JSON: {error}")),
        };

        let keys = self.scheme.lookups(&order);
        let answers = match self.resolver.resolve(&keys).await {
            Ok(answers) => answers,
            Err(error) => return lookup_failed(&identity, error),
        };
        let bill = match self.scheme.evaluate(&order, &answers) {
            Ok(bill) => bill,
            Err(found) => {
                let kind = problems::reason_kind(&found);
                return Outcome::dead_letter(kind, problems::reason_text(&found));
            }
        };
        Span::current().record("billno", bill.billno());

        let published_at = raw_published_at(delivery);
        self.publish(delivery, &identity, &bill, published_at).await
    }

    async fn publish(
        &self,
        delivery: &Delivery,
        identity: &OrderIdentity,
        bill: &BillDraft,
        published_at: DateTime<Utc>,
    ) -> Outcome {
        let payload = Bytes::from(bill.canonical_json());
        let subject = self.names.bills_subject();
        let msg_id = message::msg_id(&identity.stockout_id, &message::content_hash(&payload));
        let span = telemetry::producer_span!(
            "publish bill",
            destination = subject.as_str(),
            message_id = msg_id.as_str(),
            stockout_no = identity.stockout_no.as_str(),
            billno = bill.billno()
        );
        let trace = trace_of(&span, delivery);
        let outgoing =
            match message::bill_message(&self.names, identity, payload, &trace, published_at) {
                Ok(outgoing) => outgoing,
                Err(error) => return malformed(format!("bill message: {error}")),
            };

        match self.publisher.publish(outgoing).instrument(span).await {
            Ok(ack) => {
                self.counts.bills_published.fetch_add(1, Ordering::Relaxed);
                metrics::bill_published();
                debug!(
                    stockout_no = identity.stockout_no.as_str(),
                    billno = bill.billno(),
                    stream_seq = ack.sequence,
                    duplicate = ack.duplicate,
                    "Bill published"
                );
                Outcome::Ack
            }
            // Nothing about the order is wrong: whatever kept the stream from storing the bill
            // (no connection, a full stream) is for a later delivery to overcome.
            Err(error) => Outcome::retry(format!("publish bill: {error}")),
        }
    }

    /// Counts dead letters by kind, the worker's `max_deliveries` ones included. A dead letter
    /// the worker then fails to publish (it naks instead) is counted all the same.
    fn count(&self, outcome: &Outcome, delivered: i64) {
        let kind = match outcome {
            Outcome::DeadLetter { kind, .. } => *kind,
            Outcome::Retry { .. } if self.max_deliver > 0 && delivered >= self.max_deliver => {
                ReasonKind::MaxDeliveries
            }
            _ => return,
        };
        metrics::dead_letter(
            metrics::Stage::Transform,
            DeadLetterReason::of_kind(kind.as_str()),
        );
    }
}

impl Handler for TransformHandler {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let msg_id = delivery
            .headers()
            .and_then(|headers| headers.get(header::MSG_ID))
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        let span = telemetry::consumer_span!(
            "process order",
            destination = delivery.subject(),
            message_id = msg_id.as_str(),
            consumer = TRANSFORMER_CONSUMER,
            delivery_count = delivery.delivered(),
            stream_sequence = delivery.stream_sequence(),
            stockout_no = Empty,
            billno = Empty
        );
        if let Some(headers) = delivery.headers() {
            telemetry::propagation::set_parent_from_headers(&span, headers);
        }
        if delivery.delivered() > 1 {
            // An event inside the process span, so the trace shows the redelivery too.
            span.in_scope(|| {
                info!(delivered = delivery.delivered(), "Order redelivered");
            });
        }

        let outcome = self.process(delivery).instrument(span.clone()).await;
        if let Outcome::Retry { error, .. } = &outcome {
            // The worker naks it; the event keeps the retry in the order's trace as well.
            span.in_scope(|| {
                warn!(
                    error = error.as_str(),
                    "Order not transformed; it will be retried"
                )
            });
        }
        self.count(&outcome, delivery.delivered());
        outcome
    }
}

impl std::fmt::Debug for TransformHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformHandler")
            .field("scheme", &self.scheme.origin())
            .field("stage", &Stage::Transform)
            .finish_non_exhaustive()
    }
}

fn malformed(reason: String) -> Outcome {
    Outcome::dead_letter(ReasonKind::MalformedOrder, reason)
}

/// A lookup that found neither a record nor a miss: always a retry.
///
/// A transient failure passes by itself. A permanent one (refused credentials, a 星辰 account
/// without the master-data permission) is no fault of this order: every order would fail alike,
/// so dead-lettering them one by one would empty the stream into the dead letters over an
/// account problem. The message is retried with the backoff instead, and logged at ERROR for an
/// operator; if nobody acts, it ends as `max_deliveries` after the consumer's last delivery.
fn lookup_failed(identity: &OrderIdentity, error: LookupError) -> Outcome {
    if !error.is_transient() {
        error!(
            stockout_no = identity.stockout_no.as_str(),
            error = %error,
            "星辰 refused a master-data lookup; the order is retried until it is fixed"
        );
    }
    // The worker logs the retry itself, with its delay.
    Outcome::retry(error)
}

/// The trace context the bill carries: the publish span's, or, when spans are not recorded
/// (no OpenTelemetry layer), the raw order's, so the order's trace is never cut.
/// When the raw order was published: its own `published_at` header, else the time JetStream
/// stored it (from the delivery's metadata, no request to the server), else now.
fn raw_published_at(delivery: &Delivery) -> DateTime<Utc> {
    let stamped = delivery
        .headers()
        .and_then(|headers| headers.get(header::PUBLISHED_AT))
        .and_then(|value| DateTime::parse_from_rfc3339(value.as_str()).ok());
    stamped
        .map(|at| at.with_timezone(&Utc))
        .or_else(|| delivery.published())
        .unwrap_or_else(Utc::now)
}

fn trace_of(span: &Span, delivery: &Delivery) -> TraceContext {
    let headers = telemetry::propagation::headers_for(span);
    let trace = TraceContext::from_headers(Some(&headers));
    if trace.traceparent.is_some() {
        trace
    } else {
        delivery.trace()
    }
}
