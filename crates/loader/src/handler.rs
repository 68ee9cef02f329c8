//! The loader's [`Handler`]: from a bill message to an ack, a nak or a dead letter.
//!
//! It opens the message's process span (a child of the transformer's publish, through the
//! `traceparent` header), reads the order's identity from the headers and the bill from the
//! payload, hands both to [`Loader::load`], and turns the result into the message's exit:
//!
//! * loaded (created, modified, unchanged, stale): ack, once the ledger holds the record;
//! * headers that do not say which order, or a payload that is not JSON: `malformed_order`;
//!   JSON that is not a 星辰 bill: `invalid_value`; neither is ever posted;
//! * 星辰 rejected the bill on its merits: `target_rejected`, with Kingdee's message;
//! * anything transient: retry with the configured backoff. On the consumer's last allowed
//!   delivery the worker dead-letters it as `max_deliveries`, except for a number 星辰 holds
//!   that no look-up finds, which ends as `duplicate_bill`.
//!
//! Deciding and posting are [`crate::load`]'s; the consumer loop is [`pipeline::worker`]'s.

use std::sync::Arc;

use pipeline::dead_letter::ReasonKind;
use pipeline::message::{self, header};
use pipeline::names::LOADER_CONSUMER;
use pipeline::worker::{Delivery, Handler, Outcome};
use serde_json::Value;
use telemetry::metrics::{DeadLetterReason, LoadOutcome};
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, error, info, warn};
use xingchen::Bill;

use crate::load::{Incoming, LoadError, Loaded, Loader};
use crate::stats::{self, LoadStats};

/// The loader's message handler.
#[derive(Debug)]
pub struct LoadHandler {
    loader: Loader,
    stats: Arc<LoadStats>,
    max_deliver: i64,
}

impl LoadHandler {
    /// A handler loading with `loader`, counting into `stats`; `max_deliver` is the consumer's
    /// (below 1: unlimited), so the last delivery's failure is counted as the dead letter it
    /// becomes.
    pub fn new(loader: Loader, stats: Arc<LoadStats>, max_deliver: i64) -> LoadHandler {
        LoadHandler {
            loader,
            stats,
            max_deliver,
        }
    }

    async fn process(&self, delivery: &Delivery) -> Outcome {
        let delivered = delivery.delivered();
        if delivered > 1 {
            info!(delivered, "Bill message redelivered");
        }
        let incoming = match read_incoming(delivery) {
            Ok(incoming) => incoming,
            Err((kind, reason)) => return self.give_up(kind, reason, delivery),
        };
        let span = Span::current();
        span.record("stockout_no", incoming.stockout_no.as_str());
        span.record("billno", incoming.bill.billno.as_str());

        match self.loader.load(&incoming, delivered).await {
            Ok(loaded) => {
                self.finished(&incoming, &loaded);
                Outcome::Ack
            }
            Err(error) => self.failed(&incoming, delivered, error, delivery),
        }
    }

    fn finished(&self, incoming: &Incoming, loaded: &Loaded) {
        self.stats.loaded(loaded.outcome);
        if let (Some(published_at), Some(recorded_at)) = (incoming.published_at, loaded.recorded_at)
        {
            stats::load_latency(published_at, recorded_at);
        }
        let (stockout_no, billno) = (&incoming.stockout_no, &incoming.bill.billno);
        let outcome = loaded.outcome.as_label();
        let bill_id = loaded.bill_id.as_deref().unwrap_or_default();
        match loaded.outcome {
            LoadOutcome::Created | LoadOutcome::Modified => info!(
                stockout_no = %stockout_no,
                billno = %billno,
                bill_id,
                outcome,
                recovered = loaded.recovered,
                "Bill loaded"
            ),
            LoadOutcome::Unchanged | LoadOutcome::Stale => {
                debug!(stockout_no = %stockout_no, billno = %billno, outcome, "Bill not posted")
            }
        }
    }

    fn failed(
        &self,
        incoming: &Incoming,
        delivered: i64,
        error: LoadError,
        delivery: &Delivery,
    ) -> Outcome {
        if !error.is_transient() {
            let kind = match &error {
                LoadError::Save {
                    source: xingchen::Error::Rejected { .. },
                    ..
                } => ReasonKind::TargetRejected,
                LoadError::Save { .. } => ReasonKind::InvalidValue,
                _ => ReasonKind::PoisonMessage,
            };
            return self.give_up(kind, error.to_string(), delivery);
        }
        let last = self.max_deliver > 0 && delivered >= self.max_deliver;
        if last {
            if let LoadError::DuplicateNotFound { .. } = error {
                return self.give_up(ReasonKind::DuplicateBill, error.to_string(), delivery);
            }
            // The worker turns this retry into a `max_deliveries` dead letter.
            self.stats.dead_lettered(DeadLetterReason::MaxDeliveries);
        } else {
            self.stats.retried();
        }
        warn!(
            stockout_no = %incoming.stockout_no,
            billno = %incoming.bill.billno,
            delivered,
            error = %error,
            "Bill not loaded; it will be retried"
        );
        Outcome::retry(error)
    }

    fn give_up(&self, kind: ReasonKind, reason: String, delivery: &Delivery) -> Outcome {
        self.stats
            .dead_lettered(DeadLetterReason::of_kind(kind.as_str()));
        error!(
            stockout_no = delivery.stockout_no().unwrap_or_default(),
            reason_kind = %kind,
            error = %reason,
            "Bill given up on"
        );
        Outcome::dead_letter(kind, reason)
    }
}

impl Handler for LoadHandler {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send {
        let message_id = delivery
            .headers()
            .and_then(|headers| headers.get(header::MSG_ID))
            .map(|value| value.as_str().to_owned())
            .unwrap_or_default();
        let span = telemetry::consumer_span!(
            "load bill",
            destination = delivery.subject(),
            message_id = message_id.as_str(),
            consumer = LOADER_CONSUMER,
            delivery_count = delivery.delivered(),
            stream_sequence = delivery.stream_sequence(),
            stockout_no = Empty,
            billno = Empty
        );
        if let Some(headers) = delivery.headers() {
            telemetry::propagation::set_parent_from_headers(&span, headers);
        }
        self.process(delivery).instrument(span)
    }
}

/// The bill and its order's identity, or the dead letter a message that is neither earns.
fn read_incoming(delivery: &Delivery) -> Result<Incoming, (ReasonKind, String)> {
    let meta = delivery
        .meta()
        .map_err(|error| (ReasonKind::MalformedOrder, format!("bill headers: {error}")))?;
    let payload = delivery.payload();
    let value: Value = serde_json::from_slice(payload).map_err(|error| {
        let reason = format!("bill payload is not JSON: {error}");
        (ReasonKind::MalformedOrder, reason)
    })?;
    let mut bill: Bill = serde_json::from_value(value).map_err(|error| {
        let reason = format!("bill payload is not a 星辰 bill: {error}");
        (ReasonKind::InvalidValue, reason)
    })?;
    // Whether this is a create or a modify is the ledger's to say, never the payload's.
    bill.id = None;
    Ok(Incoming {
        stockout_id: meta.identity.stockout_id,
        stockout_no: meta.identity.stockout_no,
        modified: meta.identity.modified,
        content_hash: message::content_hash(payload),
        published_at: meta.published_at,
        bill,
    })
}
