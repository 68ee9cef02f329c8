//! A stored message fed again into a stage: where it goes and what its copy carries.
//!
//! Replays and redrives both publish a copy of a stored message on the input subject of its
//! stage: raw orders on the raw-order subject, which the transformer's durable consumer reads;
//! bill payloads on the bills subject, which the loader's reads. The extractor reads WDT, not a
//! stream, so nothing is fed back to it. The copy keeps the payload byte for byte and every
//! header of the original (the order's identity, `content_hash`, `traceparent` and
//! `tracestate`, so the order's trace goes on), except:
//!
//! | header | on the copy |
//! |---|---|
//! | `Nats-Msg-Id` | fresh, `replay:<unix ms>:<original id>` or `redrive:…`: not a duplicate |
//! | other `Nats-` headers | dropped: they steer JetStream and would misfire |
//! | `published_at` | the copy's time, so the next stage measures latency from the re-feed |
//! | `bridge_replay`, `bridge_replay_of` | replays: when (RFC 3339 UTC), the original's sequence |
//! | `bridge_redriven_at`, `bridge_redrive_count` | redrives: when, and how often so far |
//! | `dlq_attempts` | redrives: the dead letter's history, which a new dead letter keeps |
//!
//! Whether a copy changes anything is the stages' business: the loader's ledger posts a bill
//! only when its content differs from what was posted. Selecting what to copy is left to
//! [`crate::replay`] and [`crate::dlq`].

use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, Utc};
use pipeline::message::header as pipeline_header;
use pipeline::{Names, Stage};

/// The headers replays and redrives add.
pub mod header {
    /// On a replayed copy: when it was replayed, RFC 3339 UTC with milliseconds.
    pub const REPLAY: &str = "bridge_replay";
    /// On a replayed copy: the original's sequence in its stream.
    pub const REPLAY_OF: &str = "bridge_replay_of";
    /// On a redriven copy: when it was redriven, RFC 3339 UTC with milliseconds.
    pub const REDRIVEN_AT: &str = "bridge_redriven_at";
    /// On a redriven copy: how many times the order's message has been redriven, this one
    /// included.
    pub const REDRIVE_COUNT: &str = "bridge_redrive_count";
}

/// The subject a stage consumes from; `None` for the extractor, which reads WDT.
pub fn input_subject(names: &Names, stage: Stage) -> Option<String> {
    match stage {
        Stage::Extract => None,
        Stage::Transform => Some(names.raw_orders_subject()),
        Stage::Load => Some(names.bills_subject()),
    }
}

/// The stream holding a stage's input; `None` for the extractor.
pub fn input_stream(names: &Names, stage: Stage) -> Option<String> {
    names.consumed_by(stage).map(|(stream, _)| stream)
}

/// Why a re-fed copy is made, which names its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Replay,
    Redrive,
}

/// The headers of a copy of a message whose headers were `original`, made at `at`;
/// `fallback_id` names the original when it had no `Nats-Msg-Id`.
pub(crate) fn copy_headers(
    original: &HeaderMap,
    purpose: Purpose,
    at: DateTime<Utc>,
    fallback_id: &str,
) -> HeaderMap {
    let original_id = original
        .get(pipeline_header::MSG_ID)
        .map(|id| id.as_str().to_owned())
        .unwrap_or_else(|| fallback_id.to_owned());
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        if is_nats_header(name.as_ref()) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    let word = match purpose {
        Purpose::Replay => "replay",
        Purpose::Redrive => "redrive",
    };
    let fresh_id = format!("{word}:{}:{original_id}", at.timestamp_millis());
    headers.insert(pipeline_header::MSG_ID, fresh_id);
    if headers.get(pipeline_header::PUBLISHED_AT).is_some() {
        headers.insert(pipeline_header::PUBLISHED_AT, stamp(at));
    }
    headers
}

/// A time as the copy's headers carry it: RFC 3339 UTC with milliseconds.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn is_nats_header(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T04:00:00.250Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_copy_keeps_identity_and_trace_and_gets_a_fresh_id() {
        let mut original = HeaderMap::new();
        original.insert("stockout_id", "7");
        original.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        original.insert("Nats-Msg-Id", "7:abc");
        original.insert("Nats-Expected-Stream", "ELSEWHERE");
        original.insert("published_at", "2024-04-01T00:00:00.000Z");

        let copy = copy_headers(&original, Purpose::Replay, at(), "BRIDGE_BILLS:3");
        let get = |name| copy.get(name).map(|value| value.as_str());
        assert_eq!(get("Nats-Msg-Id"), Some("replay:1714536000250:7:abc"));
        assert_eq!(get("Nats-Expected-Stream"), None);
        assert_eq!(get("stockout_id"), Some("7"));
        assert_eq!(
            get("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(get("published_at"), Some("2024-05-01T04:00:00.250Z"));
    }

    #[test]
    fn a_copy_of_a_message_without_id_is_named_by_its_place() {
        let copy = copy_headers(&HeaderMap::new(), Purpose::Redrive, at(), "BRIDGE_DLQ:9");
        let id = copy.get("Nats-Msg-Id").map(|value| value.as_str());
        assert_eq!(id, Some("redrive:1714536000250:BRIDGE_DLQ:9"));
        assert!(
            copy.get("published_at").is_none(),
            "no stamp where none was"
        );
    }

    #[test]
    fn every_stage_but_the_extractor_has_an_input() {
        let names = Names::default();
        assert_eq!(
            input_subject(&names, Stage::Transform).as_deref(),
            Some("bridge.orders.raw")
        );
        assert_eq!(
            input_subject(&names, Stage::Load).as_deref(),
            Some("bridge.bills")
        );
        assert_eq!(input_subject(&names, Stage::Extract), None);
        assert_eq!(
            input_stream(&names, Stage::Load).as_deref(),
            Some("BRIDGE_BILLS")
        );
    }
}
