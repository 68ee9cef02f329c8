//! Dead letters: messages the pipeline has given up on, kept with the reason why.
//!
//! A dead letter is published on `bridge.dlq.<stage>` into the `BRIDGE_DLQ` stream. Its payload
//! is the original payload, byte for byte, so it can be inspected or replayed as it was. Its
//! headers are the original headers (minus the `Nats-` ones, which steer JetStream and would
//! misfire on the dead-letter stream) plus:
//!
//! | header | value |
//! |---|---|
//! | `dlq_stage` | `extract`, `transform` or `load` |
//! | `dlq_reason_kind` | one of [`ReasonKind`], e.g. `lookup_not_found` |
//! | `dlq_reason` | the error text, on one line, at most 1024 characters |
//! | `dlq_delivered` | how many times the message had been delivered |
//! | `dlq_source_stream`, `dlq_source_seq`, `dlq_source_subject` | where it came from |
//! | `dlq_original_msg_id` | its `Nats-Msg-Id`, if it had one |
//! | `dlq_attempts` | JSON list of earlier failures `{delivered, at, error}`, the latest 10 |
//! | `dlq_at` | when it was dead-lettered, RFC 3339 UTC |
//! | `stockout_no`, `traceparent`, `tracestate` | as on the original, or as the caller gives them |
//!
//! `Nats-Msg-Id` is `dlq:<source stream>:<sequence>`, so a dead letter published twice (the
//! original's termination failed and it came back) is stored once. Terminating the original only
//! after this publish is acknowledged is the job of [`crate::worker`]. The reason text is the
//! handler's error message: handlers must keep secrets out of their errors.
//!
//! A redriven message carries its past in `dlq_attempts` too ([`DeadLetter::history_header`]:
//! the earlier attempts, then the dead letter's own failure), and the worker puts
//! [`carried_attempts`] before its own, so a message that fails again returns to the dead letters
//! with its whole history. Headers of the operator's tools that are neither `Nats-` nor `dlq_`
//! ones, such as a redrive count, stay among the original headers and come back with it.

use async_nats::HeaderMap;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::message::{OutgoingMessage, TraceContext, header};
use crate::names::{Names, Stage};
use crate::publisher::{PublishError, Publisher};

/// Longest reason text kept in a header, in characters.
const MAX_REASON_CHARS: usize = 1024;
/// Most earlier attempts listed in a dead letter, the latest ones.
const MAX_ATTEMPTS_LISTED: usize = 10;
/// Longest error text kept per listed attempt, in characters.
const MAX_ATTEMPT_ERROR_CHARS: usize = 200;

/// The names of the headers a dead letter adds.
pub mod dlq_header {
    /// The stage that gave up.
    pub const STAGE: &str = "dlq_stage";
    /// The [`super::ReasonKind`].
    pub const REASON_KIND: &str = "dlq_reason_kind";
    /// The error text.
    pub const REASON: &str = "dlq_reason";
    /// Deliveries so far.
    pub const DELIVERED: &str = "dlq_delivered";
    /// The stream the original came from.
    pub const SOURCE_STREAM: &str = "dlq_source_stream";
    /// The original's sequence in that stream.
    pub const SOURCE_SEQ: &str = "dlq_source_seq";
    /// The original's subject.
    pub const SOURCE_SUBJECT: &str = "dlq_source_subject";
    /// The original's `Nats-Msg-Id`.
    pub const ORIGINAL_MSG_ID: &str = "dlq_original_msg_id";
    /// Earlier failed attempts, JSON.
    pub const ATTEMPTS: &str = "dlq_attempts";
    /// When the message was dead-lettered.
    pub const AT: &str = "dlq_at";
}

/// Why a message was given up on; a fixed set, so alerts and dashboards can count by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// The payload is not an order (not JSON, or not the shape WDT sends).
    MalformedOrder,
    /// A field the mapping needs is absent.
    MissingField,
    /// A field is present but its value cannot be used (a bad date, amount or quantity).
    InvalidValue,
    /// A master-data number has no record in 星辰.
    LookupNotFound,
    /// 星辰 refused the bill for a reason that will not change on retry.
    TargetRejected,
    /// 星辰 says the bill number exists, and the bill could not be found to record it.
    DuplicateBill,
    /// Handling the message failed in a way no retry fixes, e.g. it crashes the handler.
    PoisonMessage,
    /// Every allowed delivery failed with a transient error.
    MaxDeliveries,
}

impl ReasonKind {
    /// Every kind.
    pub const ALL: [ReasonKind; 8] = [
        ReasonKind::MalformedOrder,
        ReasonKind::MissingField,
        ReasonKind::InvalidValue,
        ReasonKind::LookupNotFound,
        ReasonKind::TargetRejected,
        ReasonKind::DuplicateBill,
        ReasonKind::PoisonMessage,
        ReasonKind::MaxDeliveries,
    ];

    /// The kind's word in headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::MalformedOrder => "malformed_order",
            ReasonKind::MissingField => "missing_field",
            ReasonKind::InvalidValue => "invalid_value",
            ReasonKind::LookupNotFound => "lookup_not_found",
            ReasonKind::TargetRejected => "target_rejected",
            ReasonKind::DuplicateBill => "duplicate_bill",
            ReasonKind::PoisonMessage => "poison_message",
            ReasonKind::MaxDeliveries => "max_deliveries",
        }
    }
}

impl std::fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReasonKind {
    type Err = DeadLetterError;

    fn from_str(text: &str) -> Result<ReasonKind, DeadLetterError> {
        ReasonKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| DeadLetterError::Invalid {
                header: dlq_header::REASON_KIND,
                value: text.to_owned(),
            })
    }
}

/// One earlier delivery that failed with a transient error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Which delivery it was (1-based).
    pub delivered: i64,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// The error text.
    pub error: String,
}

/// A message given up on, with everything an operator needs to understand and replay it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The stage that gave up.
    pub stage: Stage,
    /// Why, as a kind.
    pub reason_kind: ReasonKind,
    /// Why, in words.
    pub reason: String,
    /// How many times the message had been delivered (0 when it never was, at the extractor).
    pub delivered: i64,
    /// The stream it came from.
    pub source_stream: Option<String>,
    /// Its sequence in that stream.
    pub source_sequence: Option<u64>,
    /// Its subject.
    pub source_subject: Option<String>,
    /// The order's number, when known.
    pub stockout_no: Option<String>,
    /// The trace context it carried.
    pub trace: TraceContext,
    /// Its headers, `Nats-` ones excluded.
    pub original_headers: HeaderMap,
    /// Its payload, byte for byte.
    pub payload: Bytes,
    /// Earlier failed attempts known to this worker, oldest first.
    pub attempts: Vec<Attempt>,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
}

/// A dead letter that cannot be read back from a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    /// A header every dead letter has is absent.
    #[error("dead letter lacks header {0}")]
    Missing(&'static str),
    /// A header has a value this version does not write.
    #[error("dead letter header {header} has invalid value {value:?}")]
    Invalid {
        /// The header's name.
        header: &'static str,
        /// The value found.
        value: String,
    },
}

impl DeadLetterError {
    /// A stored message is what it is: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl DeadLetter {
    /// The message to publish for this dead letter.
    pub fn to_message(&self, names: &Names) -> OutgoingMessage {
        let mut headers = HeaderMap::new();
        for (name, values) in self.original_headers.iter() {
            if is_nats_header(name.as_ref()) || is_dlq_header(name.as_ref()) {
                continue;
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(dlq_header::STAGE, self.stage.as_str());
        headers.insert(dlq_header::REASON_KIND, self.reason_kind.as_str());
        headers.insert(dlq_header::REASON, one_line(&self.reason, MAX_REASON_CHARS));
        headers.insert(dlq_header::DELIVERED, self.delivered.to_string());
        headers.insert(
            dlq_header::AT,
            self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        let optional = [
            (dlq_header::SOURCE_STREAM, &self.source_stream),
            (dlq_header::SOURCE_SUBJECT, &self.source_subject),
            (header::STOCKOUT_NO, &self.stockout_no),
            (header::TRACEPARENT, &self.trace.traceparent),
            (header::TRACESTATE, &self.trace.tracestate),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                headers.insert(name, one_line(value, MAX_REASON_CHARS));
            }
        }
        if let Some(sequence) = self.source_sequence {
            headers.insert(dlq_header::SOURCE_SEQ, sequence.to_string());
        }
        if let Some(original) = self.original_headers.get(header::MSG_ID) {
            headers.insert(dlq_header::ORIGINAL_MSG_ID, original.as_str());
        }
        if !self.attempts.is_empty() {
            headers.insert(dlq_header::ATTEMPTS, attempts_json(&self.attempts));
        }
        headers.insert(header::MSG_ID, self.msg_id());
        OutgoingMessage {
            subject: names.dlq_subject(self.stage),
            headers,
            payload: self.payload.clone(),
        }
    }

    /// Reads a dead letter back from the headers and payload of a stored DLQ message.
    pub fn from_message(
        headers: &HeaderMap,
        payload: Bytes,
    ) -> Result<DeadLetter, DeadLetterError> {
        let text = |name| headers.get(name).map(|value| value.as_str().to_owned());
        let required = |name| text(name).ok_or(DeadLetterError::Missing(name));
        let invalid = |header, value: String| DeadLetterError::Invalid { header, value };

        let stage = required(dlq_header::STAGE)?;
        let stage = stage
            .parse()
            .map_err(|_| invalid(dlq_header::STAGE, stage))?;
        let delivered = required(dlq_header::DELIVERED)?;
        let delivered = delivered
            .parse()
            .map_err(|_| invalid(dlq_header::DELIVERED, delivered))?;
        let at = required(dlq_header::AT)?;
        let at = DateTime::parse_from_rfc3339(&at)
            .map_err(|_| invalid(dlq_header::AT, at.clone()))?
            .with_timezone(&Utc);
        let source_sequence = match text(dlq_header::SOURCE_SEQ) {
            Some(seq) => Some(
                seq.parse()
                    .map_err(|_| invalid(dlq_header::SOURCE_SEQ, seq))?,
            ),
            None => None,
        };
        let attempts = match text(dlq_header::ATTEMPTS) {
            Some(json) => {
                serde_json::from_str(&json).map_err(|_| invalid(dlq_header::ATTEMPTS, json))?
            }
            None => Vec::new(),
        };

        let mut original_headers = HeaderMap::new();
        for (name, values) in headers.iter() {
            if is_dlq_header(name.as_ref()) || is_nats_header(name.as_ref()) {
                continue;
            }
            for value in values {
                original_headers.append(name.clone(), value.clone());
            }
        }
        if let Some(original) = text(dlq_header::ORIGINAL_MSG_ID) {
            original_headers.insert(header::MSG_ID, original);
        }

        Ok(DeadLetter {
            stage,
            reason_kind: required(dlq_header::REASON_KIND)?.parse()?,
            reason: required(dlq_header::REASON)?,
            delivered,
            source_stream: text(dlq_header::SOURCE_STREAM),
            source_sequence,
            source_subject: text(dlq_header::SOURCE_SUBJECT),
            stockout_no: text(header::STOCKOUT_NO),
            trace: TraceContext::from_headers(Some(headers)),
            original_headers,
            payload,
            attempts,
            at,
        })
    }

    /// The `dlq_attempts` value a redriven copy of this message carries: the earlier attempts,
    /// then this dead letter's own failure as `<reason kind>: <reason>`.
    pub fn history_header(&self) -> String {
        attempts_json(&self.history())
    }

    /// Every failed attempt of the order's message, oldest first: the earlier ones (those of
    /// earlier dead letters included), then the failure that made this dead letter.
    pub fn history(&self) -> Vec<Attempt> {
        let mut history = self.attempts.clone();
        history.push(Attempt {
            delivered: self.delivered,
            at: self.at,
            error: format!("{}: {}", self.reason_kind, self.reason),
        });
        history
    }

    fn msg_id(&self) -> String {
        match (&self.source_stream, self.source_sequence) {
            (Some(stream), Some(sequence)) => format!("dlq:{stream}:{sequence}"),
            // Not from a stream (the extractor's own dead letters): the content names it.
            _ => format!(
                "dlq:{}:{}",
                self.stage,
                crate::message::content_hash(&self.payload)
            ),
        }
    }
}

/// Publishes dead letters on the dead-letter stream.
#[derive(Clone, Debug)]
pub struct DeadLetterPublisher {
    publisher: Publisher,
    names: Names,
}

impl DeadLetterPublisher {
    /// Publishes through `publisher` on the subjects `names` gives.
    pub fn new(publisher: Publisher, names: Names) -> DeadLetterPublisher {
        DeadLetterPublisher { publisher, names }
    }

    /// Publishes `dead_letter` and returns once the dead-letter stream has acknowledged it.
    pub async fn publish(&self, dead_letter: &DeadLetter) -> Result<PublishAck, PublishError> {
        self.publisher
            .publish(dead_letter.to_message(&self.names))
            .await
    }

    /// The names its subjects come from.
    pub fn names(&self) -> &Names {
        &self.names
    }
}

/// The failed attempts a message carries from an earlier dead letter (a redriven message does, in
/// `dlq_attempts`), oldest first. A list that cannot be read counts as none: a lost history must
/// never keep a message from its dead letter.
pub fn carried_attempts(headers: Option<&HeaderMap>) -> Vec<Attempt> {
    headers
        .and_then(|headers| headers.get(dlq_header::ATTEMPTS))
        .and_then(|json| serde_json::from_str(json.as_str()).ok())
        .unwrap_or_default()
}

fn is_nats_header(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-")
}

fn is_dlq_header(name: &str) -> bool {
    name.starts_with("dlq_")
}

/// Makes `text` fit in a header: one line, no surrounding space, at most `max_chars`.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = flat.trim();
    match trimmed.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

fn attempts_json(attempts: &[Attempt]) -> String {
    let latest = &attempts[attempts.len().saturating_sub(MAX_ATTEMPTS_LISTED)..];
    let shortened: Vec<Attempt> = latest
        .iter()
        .map(|attempt| Attempt {
            error: one_line(&attempt.error, MAX_ATTEMPT_ERROR_CHARS),
            ..attempt.clone()
        })
        .collect();
    // A list of plain structs serialises; JSON escapes line breaks, so it fits on one line.
    serde_json::to_string(&shortened).expect("attempts serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter() -> DeadLetter {
        let mut original_headers = HeaderMap::new();
        original_headers.insert(header::STOCKOUT_ID, "100234");
        original_headers.insert(header::STOCKOUT_NO, "CK001");
        original_headers.insert(header::MSG_ID, "100234:abc");
        original_headers.insert(header::TRACEPARENT, "00-aa-bb-01");
        DeadLetter {
            stage: Stage::Transform,
            reason_kind: ReasonKind::LookupNotFound,
            reason: "customer number \"天猫\" not found\nin 星辰".to_owned(),
            delivered: 3,
            source_stream: Some("BRIDGE_ORDERS_RAW".to_owned()),
            source_sequence: Some(17),
            source_subject: Some("bridge.orders.raw".to_owned()),
            stockout_no: Some("CK001".to_owned()),
            trace: TraceContext {
                traceparent: Some("00-aa-bb-01".to_owned()),
                tracestate: None,
            },
            original_headers,
            payload: Bytes::from_static(b"{\"raw\": true}\n"),
            attempts: vec![Attempt {
                delivered: 1,
                at: DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc),
                error: "timeout\nafter 10s".to_owned(),
            }],
            at: DateTime::parse_from_rfc3339("2024-05-01T00:01:00.250Z")
                .expect("time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_dead_letter_reads_back_from_its_message() {
        let names = Names::default();
        let message = dead_letter().to_message(&names);
        assert_eq!(message.subject, "bridge.dlq.transform");
        assert_eq!(message.msg_id(), Some("dlq:BRIDGE_ORDERS_RAW:17"));
        assert_eq!(message.payload, dead_letter().payload);

        let back = DeadLetter::from_message(&message.headers, message.payload).expect("parse");
        let expected = DeadLetter {
            reason: "customer number \"天猫\" not found in 星辰".to_owned(),
            attempts: vec![Attempt {
                error: "timeout after 10s".to_owned(),
                ..dead_letter().attempts[0].clone()
            }],
            ..dead_letter()
        };
        assert_eq!(back, expected);
    }

    #[test]
    fn nats_headers_of_the_original_are_not_replayed_on_the_dead_letter_stream() {
        let mut original = dead_letter();
        original
            .original_headers
            .insert("Nats-Expected-Stream", "ELSEWHERE");
        let message = original.to_message(&Names::default());
        assert!(message.headers.get("Nats-Expected-Stream").is_none());
        let original_id = message
            .headers
            .get(dlq_header::ORIGINAL_MSG_ID)
            .map(|v| v.as_str());
        assert_eq!(original_id, Some("100234:abc"));
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "错".repeat(MAX_REASON_CHARS + 10);
        let cut = one_line(&long, MAX_REASON_CHARS);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn only_the_latest_attempts_are_listed() {
        let attempt = |delivered| Attempt {
            delivered,
            at: Utc::now(),
            error: "e".to_owned(),
        };
        let attempts: Vec<_> = (1..=15).map(attempt).collect();
        let listed: Vec<Attempt> = serde_json::from_str(&attempts_json(&attempts)).expect("json");
        assert_eq!(listed.len(), MAX_ATTEMPTS_LISTED);
        assert_eq!(listed[0].delivered, 6);
    }

    #[test]
    fn a_redriven_copy_carries_the_attempts_and_the_dead_letters_own_failure() {
        let dead_letter = dead_letter();
        let mut headers = HeaderMap::new();
        headers.insert(dlq_header::ATTEMPTS, dead_letter.history_header());
        let carried = carried_attempts(Some(&headers));
        let delivered: Vec<i64> = carried.iter().map(|attempt| attempt.delivered).collect();
        assert_eq!(delivered, [1, 3]);
        assert_eq!(carried[1].at, dead_letter.at);
        assert!(
            carried[1]
                .error
                .starts_with("lookup_not_found: customer number"),
            "{:?}",
            carried[1].error
        );

        headers.insert(dlq_header::ATTEMPTS, "not json");
        assert!(carried_attempts(Some(&headers)).is_empty());
        assert!(carried_attempts(None).is_empty());
    }

    #[test]
    fn reason_kinds_round_trip_through_their_words() {
        for kind in ReasonKind::ALL {
            assert_eq!(kind.as_str().parse::<ReasonKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).expect("json"),
                format!("\"{kind}\"")
            );
        }
    }
}
