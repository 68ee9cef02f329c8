//! The two messages the pipeline carries, raw orders and bill payloads, and their headers.
//!
//! A raw-order message's payload is the order exactly as WDT sent it; a bill message's payload is
//! the bill exactly as the loader will post it. Both carry the order's identity in headers
//! (`stockout_id`, `stockout_no`, `modified`), the MD5 of the payload (`content_hash`), the W3C
//! trace context (`traceparent`, `tracestate`) when the caller has one, and `Nats-Msg-Id` set to
//! `<stockout_id>:<content_hash>`: JetStream drops an unchanged order read twice within its
//! duplicate window, while a changed order has a new hash and flows. A bill message also carries
//! `published_at`, so the loader can measure the latency between stages.
//!
//! `modified` is written as RFC 3339 in Beijing time (`2024-05-01T12:00:00+08:00`); reading also
//! accepts WDT's own `2024-05-01 12:00:00`, taken as Beijing time. Producing trace context is
//! left to the telemetry crate, which hands it in as strings; publishing is left to
//! [`crate::publisher`].

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};

use crate::names::Names;

/// The names of the headers the bridge sets.
pub mod header {
    /// WDT's id of the order; the ledger's key.
    pub const STOCKOUT_ID: &str = "stockout_id";
    /// WDT's number of the order; the bill's `billno`.
    pub const STOCKOUT_NO: &str = "stockout_no";
    /// When WDT last changed the order, RFC 3339 in Beijing time.
    pub const MODIFIED: &str = "modified";
    /// MD5 of the payload, lower-case hex.
    pub const CONTENT_HASH: &str = "content_hash";
    /// When the transformer published the bill, RFC 3339 in UTC with milliseconds.
    pub const PUBLISHED_AT: &str = "published_at";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// JetStream's de-duplication id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
}

/// Beijing time, UTC+8, in which WDT writes every time.
pub fn beijing() -> FixedOffset {
    // 8 hours is well inside the ±24 h FixedOffset accepts.
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// A message ready to publish: subject, headers and payload.
#[derive(Clone, Debug)]
pub struct OutgoingMessage {
    /// Where it goes.
    pub subject: String,
    /// Its headers, `Nats-Msg-Id` included.
    pub headers: HeaderMap,
    /// Its payload, byte for byte.
    pub payload: Bytes,
}

impl OutgoingMessage {
    /// The `Nats-Msg-Id` header, if set.
    pub fn msg_id(&self) -> Option<&str> {
        self.headers.get(header::MSG_ID).map(|value| value.as_str())
    }
}

/// Who an order is, as every stage's headers and logs name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderIdentity {
    /// WDT's id of the order.
    pub stockout_id: String,
    /// WDT's number of the order.
    pub stockout_no: String,
    /// When WDT last changed the order.
    pub modified: DateTime<FixedOffset>,
}

/// W3C trace context carried from stage to stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: Option<String>,
    /// The `tracestate` header value.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Reads the trace context from headers; absent headers give an empty context.
    pub fn from_headers(headers: Option<&HeaderMap>) -> TraceContext {
        let read = |name| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        TraceContext {
            traceparent: read(header::TRACEPARENT),
            tracestate: read(header::TRACESTATE),
        }
    }
}

/// What a received raw-order or bill message says about itself in its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageMeta {
    /// The order's identity.
    pub identity: OrderIdentity,
    /// MD5 of the payload as the publisher computed it.
    pub content_hash: String,
    /// When the bill was published; `None` on raw orders.
    pub published_at: Option<DateTime<Utc>>,
    /// The trace context, possibly empty.
    pub trace: TraceContext,
}

/// A header value that cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Empty, or containing a line break or surrounding space that NATS would lose.
    #[error("header {header} cannot carry {value:?}: empty, line break or surrounding space")]
    UnsafeHeaderValue {
        /// The header's name.
        header: &'static str,
        /// The refused value.
        value: String,
    },
}

impl MessageError {
    /// The order's data is what it is: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// A received message whose headers do not say who it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The message has no headers at all.
    #[error("message has no headers")]
    NoHeaders,
    /// A required header is absent.
    #[error("header {header} is missing")]
    Missing {
        /// The header's name.
        header: &'static str,
    },
    /// A header is present but cannot be read.
    #[error("header {header} has invalid value {value:?}: {problem}")]
    Invalid {
        /// The header's name.
        header: &'static str,
        /// The value found.
        value: String,
        /// Why it cannot be read.
        problem: String,
    },
}

impl HeaderError {
    /// A message's headers never change on redelivery: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// MD5 of `content`, lower-case hex.
pub fn content_hash(content: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Md5::digest(content))
}

/// The `Nats-Msg-Id` of a message: `<stockout_id>:<content_hash>`.
pub fn msg_id(stockout_id: &str, content_hash: &str) -> String {
    format!("{stockout_id}:{content_hash}")
}

/// Builds the raw-order message: `raw` is the order's JSON exactly as WDT sent it.
pub fn raw_order_message(
    names: &Names,
    identity: &OrderIdentity,
    raw: Bytes,
    trace: &TraceContext,
) -> Result<OutgoingMessage, MessageError> {
    let headers = identity_headers(identity, &raw, trace)?;
    Ok(OutgoingMessage {
        subject: names.raw_orders_subject(),
        headers,
        payload: raw,
    })
}

/// Builds the bill message: `bill` is the payload the loader will post.
pub fn bill_message(
    names: &Names,
    identity: &OrderIdentity,
    bill: Bytes,
    trace: &TraceContext,
    published_at: DateTime<Utc>,
) -> Result<OutgoingMessage, MessageError> {
    let mut headers = identity_headers(identity, &bill, trace)?;
    headers.insert(
        header::PUBLISHED_AT,
        published_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    Ok(OutgoingMessage {
        subject: names.bills_subject(),
        headers,
        payload: bill,
    })
}

fn identity_headers(
    identity: &OrderIdentity,
    payload: &[u8],
    trace: &TraceContext,
) -> Result<HeaderMap, MessageError> {
    let hash = content_hash(payload);
    let modified = identity.modified.with_timezone(&beijing());
    let mut headers = HeaderMap::new();
    insert_safe(&mut headers, header::STOCKOUT_ID, &identity.stockout_id)?;
    insert_safe(&mut headers, header::STOCKOUT_NO, &identity.stockout_no)?;
    headers.insert(
        header::MODIFIED,
        modified.to_rfc3339_opts(SecondsFormat::Secs, false),
    );
    headers.insert(header::MSG_ID, msg_id(&identity.stockout_id, &hash));
    headers.insert(header::CONTENT_HASH, hash);
    if let Some(traceparent) = &trace.traceparent {
        insert_safe(&mut headers, header::TRACEPARENT, traceparent)?;
    }
    if let Some(tracestate) = &trace.tracestate {
        insert_safe(&mut headers, header::TRACESTATE, tracestate)?;
    }
    Ok(headers)
}

/// Inserts a header whose value survives the trip: NATS trims values and ends them at a line
/// break, so such values are refused rather than silently changed.
fn insert_safe(
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
) -> Result<(), MessageError> {
    if value.is_empty() || value.trim() != value || value.contains(['\r', '\n']) {
        return Err(MessageError::UnsafeHeaderValue {
            header: name,
            value: value.to_owned(),
        });
    }
    headers.insert(name, value);
    Ok(())
}

impl MessageMeta {
    /// Reads identity, content hash, publication time and trace context from headers.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Result<MessageMeta, HeaderError> {
        let headers = headers.ok_or(HeaderError::NoHeaders)?;
        let identity = OrderIdentity::from_headers(headers)?;
        let content_hash = required(headers, header::CONTENT_HASH)?.to_owned();
        let published_at = match headers.get(header::PUBLISHED_AT) {
            Some(value) => Some(parse_published_at(value.as_str())?),
            None => None,
        };
        let trace = TraceContext::from_headers(Some(headers));
        Ok(MessageMeta {
            identity,
            content_hash,
            published_at,
            trace,
        })
    }
}

impl OrderIdentity {
    /// Reads the order's identity from headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<OrderIdentity, HeaderError> {
        Ok(OrderIdentity {
            stockout_id: required(headers, header::STOCKOUT_ID)?.to_owned(),
            stockout_no: required(headers, header::STOCKOUT_NO)?.to_owned(),
            modified: parse_modified(required(headers, header::MODIFIED)?)?,
        })
    }
}

fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, HeaderError> {
    match headers.get(name).map(|value| value.as_str()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(HeaderError::Missing { header: name }),
    }
}

/// Reads a `modified` time: RFC 3339, or WDT's `YYYY-MM-DD HH:MM:SS` taken as Beijing time.
pub fn parse_modified(text: &str) -> Result<DateTime<FixedOffset>, HeaderError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time);
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|naive| naive.and_local_timezone(beijing()).single())
        .ok_or_else(|| HeaderError::Invalid {
            header: header::MODIFIED,
            value: text.to_owned(),
            problem: "expected RFC 3339 or YYYY-MM-DD HH:MM:SS".to_owned(),
        })
}

fn parse_published_at(text: &str) -> Result<DateTime<Utc>, HeaderError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| HeaderError::Invalid {
            header: header::PUBLISHED_AT,
            value: text.to_owned(),
            problem: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn identity() -> OrderIdentity {
        OrderIdentity {
            stockout_id: "100234".to_owned(),
            stockout_no: "CK2024050100012".to_owned(),
            modified: beijing()
                .with_ymd_and_hms(2024, 5, 1, 12, 30, 5)
                .single()
                .expect("time"),
        }
    }

    fn trace() -> TraceContext {
        TraceContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: Some("vendor=1".into()),
        }
    }

    #[test]
    fn raw_order_keeps_the_bytes_and_names_itself_by_id_and_hash() {
        let raw = Bytes::from_static(br#"{"stockout_id": 100234, "x": "1.10"}"#);
        let message = raw_order_message(&Names::default(), &identity(), raw.clone(), &trace())
            .expect("build");
        assert_eq!(message.subject, "bridge.orders.raw");
        assert_eq!(message.payload, raw);
        let hash = content_hash(&raw);
        assert_eq!(hash.len(), 32);
        assert_eq!(message.msg_id(), Some(format!("100234:{hash}").as_str()));
        let modified = message.headers.get(header::MODIFIED).map(|v| v.as_str());
        assert_eq!(modified, Some("2024-05-01T12:30:05+08:00"));
    }

    #[test]
    fn md5_matches_a_known_vector() {
        assert_eq!(content_hash(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn a_changed_order_gets_a_new_msg_id() {
        let names = Names::default();
        let first = raw_order_message(&names, &identity(), Bytes::from("{\"a\":1}"), &trace());
        let second = raw_order_message(&names, &identity(), Bytes::from("{\"a\":2}"), &trace());
        let (first, second) = (first.expect("first"), second.expect("second"));
        assert_ne!(first.msg_id(), second.msg_id());
    }

    #[test]
    fn bill_headers_parse_back_to_what_was_written() {
        let published_at = Utc
            .with_ymd_and_hms(2024, 5, 1, 4, 31, 0)
            .single()
            .expect("time");
        let bill = Bytes::from_static(b"{\"billno\":\"CK2024050100012\"}");
        let message = bill_message(
            &Names::default(),
            &identity(),
            bill.clone(),
            &trace(),
            published_at,
        )
        .expect("build");
        assert_eq!(message.subject, "bridge.bills");
        let meta = MessageMeta::from_headers(Some(&message.headers)).expect("parse");
        assert_eq!(meta.identity, identity());
        assert_eq!(meta.content_hash, content_hash(&bill));
        assert_eq!(meta.published_at, Some(published_at));
        assert_eq!(meta.trace, trace());
    }

    #[test]
    fn missing_or_unreadable_headers_are_named() {
        assert_eq!(MessageMeta::from_headers(None), Err(HeaderError::NoHeaders));

        let mut headers = HeaderMap::new();
        headers.insert(header::STOCKOUT_ID, "1");
        assert_eq!(
            OrderIdentity::from_headers(&headers),
            Err(HeaderError::Missing {
                header: header::STOCKOUT_NO
            })
        );

        headers.insert(header::STOCKOUT_NO, "CK1");
        headers.insert(header::MODIFIED, "yesterday");
        let err = OrderIdentity::from_headers(&headers).expect_err("bad time");
        assert!(
            matches!(
                err,
                HeaderError::Invalid {
                    header: header::MODIFIED,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn wdt_times_are_read_as_beijing_time() {
        let time = parse_modified("2024-05-01 12:30:05").expect("parse");
        assert_eq!(time, identity().modified);
        assert_eq!(
            time.with_timezone(&Utc).to_rfc3339(),
            "2024-05-01T04:30:05+00:00"
        );
    }

    #[test]
    fn values_nats_would_alter_are_refused() {
        for bad in ["", " CK1", "CK1 ", "CK\n1"] {
            let identity = OrderIdentity {
                stockout_no: bad.to_owned(),
                ..identity()
            };
            let built = raw_order_message(&Names::default(), &identity, Bytes::new(), &trace());
            assert!(
                matches!(
                    built,
                    Err(MessageError::UnsafeHeaderValue {
                        header: "stockout_no",
                        ..
                    })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
