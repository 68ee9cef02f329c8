//! One WDT order becomes one raw-order message, or a dead letter when it cannot say who it is.
//!
//! The payload is the order's JSON exactly as WDT sent it. The identity headers come from the
//! typed view: `stockout_id`, `stockout_no` (or `order_no`, its older name) and `modified`; an
//! order WDT sent without `modified` is named by its `consign_time`, the only other clock that
//! versions it. The message id, the content hash and the header layout are
//! [`pipeline::message::raw_order_message`]'s, so an unchanged order read twice is dropped by
//! JetStream and a changed one flows. An order without a number or a time, or whose number a
//! NATS header cannot carry, is dead-lettered as `malformed_order` with the WDT window as its
//! source, rather than dropped. Publishing is left to [`crate::extract`].

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::Utc;
use pipeline::dead_letter::{DeadLetter, ReasonKind};
use pipeline::message::{OrderIdentity, OutgoingMessage, TraceContext, header};
use pipeline::{Names, Stage};
use wdt::{StockoutOrder, Window, format_wdt_time};

/// The WDT method the extractor reads, named as the source of its dead letters.
pub const SOURCE_METHOD: &str = "wdt.stockout.order.query.trade";

/// What becomes of one order.
#[derive(Debug)]
pub enum Prepared {
    /// A raw-order message ready to publish.
    Message(OutgoingMessage),
    /// A dead letter ready to publish.
    DeadLetter(Box<DeadLetter>),
}

/// The identity of `order`, or why it has none usable.
pub fn identity(order: &StockoutOrder) -> Result<OrderIdentity, String> {
    let stockout_id = order.stockout_id();
    let stockout_no = order
        .stockout_no()
        .ok_or_else(|| format!("order {stockout_id} has neither stockout_no nor order_no"))?;
    let modified = order
        .modified()
        .or(order.order().consign_time)
        .ok_or_else(|| format!("order {stockout_id} has neither modified nor consign_time"))?;
    Ok(OrderIdentity {
        stockout_id: stockout_id.to_string(),
        stockout_no: stockout_no.to_owned(),
        modified,
    })
}

/// Builds the message for `order`, read in `window`, carrying `trace`.
pub fn prepare(
    names: &Names,
    order: &StockoutOrder,
    window: &Window,
    trace: &TraceContext,
) -> Prepared {
    let payload = Bytes::copy_from_slice(order.raw().get().as_bytes());
    let built = identity(order).and_then(|identity| {
        pipeline::message::raw_order_message(names, &identity, payload.clone(), trace)
            .map_err(|err| format!("order {}: {err}", order.stockout_id()))
    });
    match built {
        Ok(message) => Prepared::Message(message),
        Err(reason) => {
            Prepared::DeadLetter(Box::new(dead_letter(order, window, trace, payload, reason)))
        }
    }
}

fn dead_letter(
    order: &StockoutOrder,
    window: &Window,
    trace: &TraceContext,
    payload: Bytes,
    reason: String,
) -> DeadLetter {
    let mut original_headers = HeaderMap::new();
    original_headers.insert(header::STOCKOUT_ID, order.stockout_id().to_string());
    DeadLetter {
        stage: Stage::Extract,
        reason_kind: ReasonKind::MalformedOrder,
        reason,
        delivered: 0,
        source_stream: Some(SOURCE_METHOD.to_owned()),
        source_sequence: None,
        source_subject: Some(window_text(window)),
        // The dead letter's own code makes the number fit on one line.
        stockout_no: order.stockout_no().map(str::to_owned),
        trace: trace.clone(),
        original_headers,
        payload,
        attempts: Vec::new(),
        at: Utc::now(),
    }
}

/// A window as logs and dead letters show it: `2024-05-01 00:00:00..2024-05-01 23:59:59`.
pub fn window_text(window: &Window) -> String {
    format!(
        "{}..{}",
        format_wdt_time(&window.start),
        format_wdt_time(&window.end)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::message::content_hash;
    use wdt::parse_cli_time;

    fn window() -> Window {
        Window {
            start: parse_cli_time("2024-05-01 00:00:00").expect("time"),
            end: parse_cli_time("2024-05-01 23:59:59").expect("time"),
        }
    }

    fn prepared(json: &str) -> Prepared {
        let order = StockoutOrder::from_json(json).expect("order");
        prepare(
            &Names::default(),
            &order,
            &window(),
            &TraceContext::default(),
        )
    }

    #[test]
    fn the_payload_is_the_order_byte_for_byte_with_its_identity_in_headers() {
        let json = r#"{"stockout_id": 58231, "stockout_no": "CK1",  "modified": "2024-05-01 16:45:10", "x": 1.50}"#;
        let Prepared::Message(message) = prepared(json) else {
            panic!("not a message");
        };
        assert_eq!(message.payload, json.as_bytes());
        let get = |name| message.headers.get(name).map(|v| v.as_str().to_owned());
        assert_eq!(get(header::STOCKOUT_ID).as_deref(), Some("58231"));
        assert_eq!(get(header::STOCKOUT_NO).as_deref(), Some("CK1"));
        assert_eq!(
            get(header::MODIFIED).as_deref(),
            Some("2024-05-01T16:45:10+08:00")
        );
        let msg_id = format!("58231:{}", content_hash(json.as_bytes()));
        assert_eq!(message.msg_id(), Some(msg_id.as_str()));
    }

    #[test]
    fn an_order_without_modified_is_versioned_by_its_consign_time() {
        let json =
            r#"{"stockout_id": 7, "order_no": "CK7", "consign_time": "2024-05-01 10:00:00"}"#;
        let Prepared::Message(message) = prepared(json) else {
            panic!("not a message");
        };
        let modified = message.headers.get(header::MODIFIED).map(|v| v.as_str());
        assert_eq!(modified, Some("2024-05-01T10:00:00+08:00"));
    }

    #[test]
    fn an_order_without_a_number_or_a_time_is_dead_lettered_with_its_window() {
        for json in [
            r#"{"stockout_id": 8, "modified": "2024-05-01 10:00:00"}"#,
            r#"{"stockout_id": 8, "stockout_no": "CK8", "modified": "0000-00-00 00:00:00"}"#,
            r#"{"stockout_id": 8, "stockout_no": "CK 8 ", "modified": "2024-05-01 10:00:00"}"#,
        ] {
            let Prepared::DeadLetter(dead) = prepared(json) else {
                panic!("{json} was not dead-lettered");
            };
            assert_eq!(dead.reason_kind, ReasonKind::MalformedOrder);
            assert_eq!(dead.payload, json.as_bytes());
            assert!(dead.reason.contains("order 8"), "{}", dead.reason);
            assert_eq!(
                dead.source_subject.as_deref(),
                Some("2024-05-01 00:00:00..2024-05-01 23:59:59")
            );
            let message = dead.to_message(&Names::default());
            assert_eq!(message.subject, "bridge.dlq.extract");
        }
    }
}
