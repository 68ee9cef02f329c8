//! `bridge trace <stockout_no>`: the traces an order left behind, with links to Jaeger.
//!
//! Every message of an order carries the W3C `traceparent` of the span that published it: the
//! raw order the extractor's, the bill the transformer's, a dead letter the original's. The
//! command reads the headers of the raw-order, bill and dead-letter streams, keeps the messages
//! of the order, and gathers their trace ids (the second field of `traceparent`). A replayed or
//! redriven copy keeps the original's `traceparent`, so it continues the same trace; the copy
//! is still listed on its own, with the sequence it replays. Each trace id gets a link
//! `<jaeger ui>/trace/<trace id>`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pipeline::dead_letter::dlq_header;
use pipeline::message::header as pipeline_header;
use serde::Serialize;

use crate::refeed::header;
use crate::scan::{self, Read, Start};
use crate::table::Table;
use crate::time::{self, format_beijing};
use crate::{Ops, OpsError};

/// The Jaeger UI when nothing else is configured (`JAEGER_UI_URL`).
pub const DEFAULT_JAEGER_URL: &str = "http://localhost:16686";

/// Where the order's messages were found.
#[derive(Clone, Debug, Serialize)]
pub struct TraceReport {
    /// The order.
    pub stockout_no: String,
    /// Its messages, raw orders first, then bills, then dead letters, each by sequence.
    pub messages: Vec<TracedMessage>,
    /// The distinct trace ids, in the order first seen, with their links.
    pub traces: Vec<TraceLink>,
}

/// One message of the order.
#[derive(Clone, Debug, Serialize)]
pub struct TracedMessage {
    /// `raw`, `bills` or `dead_letters`.
    pub place: &'static str,
    /// The stream.
    pub stream: String,
    /// Its sequence there.
    pub seq: u64,
    /// When the stream stored it.
    #[serde(serialize_with = "time::beijing")]
    pub stored_at: DateTime<Utc>,
    /// Its `traceparent`.
    pub traceparent: Option<String>,
    /// The trace id in it.
    pub trace_id: Option<String>,
    /// For a dead letter: the stage that gave up.
    pub stage: Option<String>,
    /// For a replayed copy: the sequence it replays.
    pub replay_of: Option<String>,
    /// For a redriven copy: how many times it was redriven.
    pub redrive_count: Option<String>,
}

/// One trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceLink {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// Its page in the Jaeger UI.
    pub link: String,
    /// Where messages of this trace were found.
    pub places: Vec<&'static str>,
}

/// The trace id in a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`); `None` when the
/// value is not one, or names the all-zero id the standard forbids.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.trim().split('-');
    let (version, id, span) = (fields.next()?, fields.next()?, fields.next()?);
    let hex = |text: &str, len| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2) && hex(id, 32) && hex(span, 16) && id.bytes().any(|b| b != b'0');
    valid.then_some(id)
}

/// The Jaeger UI page of `trace_id` under `base`.
pub fn jaeger_link(base: &str, trace_id: &str) -> String {
    format!("{}/trace/{trace_id}", base.trim_end_matches('/'))
}

impl Ops {
    /// The messages of order `stockout_no` and their traces, linked under `jaeger_url`.
    pub async fn trace(
        &self,
        stockout_no: &str,
        jaeger_url: &str,
    ) -> Result<TraceReport, OpsError> {
        let names = self.names();
        let places = [
            ("raw", names.raw_orders_stream()),
            ("bills", names.bills_stream()),
            ("dead_letters", names.dlq_stream()),
        ];
        let mut messages = Vec::new();
        for (place, stream_name) in places {
            let stream = self.stream(&stream_name).await?;
            let read = Read::headers(Start::First);
            let found = scan::scan(&stream, read, |message| {
                message.header(pipeline_header::STOCKOUT_NO) == Some(stockout_no)
            })
            .await?;
            messages.extend(found.into_iter().map(|message| {
                let traceparent = message
                    .header(pipeline_header::TRACEPARENT)
                    .map(str::to_owned);
                TracedMessage {
                    place,
                    stream: stream_name.clone(),
                    seq: message.seq,
                    stored_at: message.stored_at,
                    trace_id: traceparent.as_deref().and_then(trace_id).map(str::to_owned),
                    traceparent,
                    stage: message.header(dlq_header::STAGE).map(str::to_owned),
                    replay_of: message.header(header::REPLAY_OF).map(str::to_owned),
                    redrive_count: message.header(header::REDRIVE_COUNT).map(str::to_owned),
                }
            }));
        }
        Ok(TraceReport {
            stockout_no: stockout_no.to_owned(),
            traces: links(&messages, jaeger_url),
            messages,
        })
    }
}

fn links(messages: &[TracedMessage], jaeger_url: &str) -> Vec<TraceLink> {
    let mut order = Vec::new();
    let mut places: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for message in messages {
        let Some(id) = message.trace_id.as_deref() else {
            continue;
        };
        let seen = places.entry(id).or_insert_with(|| {
            order.push(id);
            Vec::new()
        });
        if !seen.contains(&message.place) {
            seen.push(message.place);
        }
    }
    order
        .into_iter()
        .map(|id| TraceLink {
            trace_id: id.to_owned(),
            link: jaeger_link(jaeger_url, id),
            places: places.remove(id).unwrap_or_default(),
        })
        .collect()
}

impl TraceReport {
    /// The messages as a table, then one line per trace with its link.
    pub fn to_text(&self) -> String {
        if self.messages.is_empty() {
            return format!("no message of order {} in any stream\n", self.stockout_no);
        }
        let mut table = Table::new(["PLACE", "SEQ", "STORED", "TRACE_ID", "NOTE"]);
        for message in &self.messages {
            let note = match (&message.stage, &message.replay_of, &message.redrive_count) {
                (Some(stage), _, _) => format!("dead-lettered by {stage}"),
                (None, Some(seq), _) => format!("replay of {seq}"),
                (None, None, Some(count)) => format!("redrive {count}"),
                _ => String::new(),
            };
            table.row([
                message.place.to_owned(),
                message.seq.to_string(),
                format_beijing(&message.stored_at),
                message.trace_id.clone().unwrap_or_else(|| "-".to_owned()),
                note,
            ]);
        }
        let mut text = table.render();
        text.push('\n');
        if self.traces.is_empty() {
            text.push_str("no trace context on any message\n");
        }
        for trace in &self.traces {
            text.push_str(&format!(
                "{}  {}  ({})\n",
                trace.trace_id,
                trace.link,
                trace.places.join(", ")
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_second_field_of_a_valid_traceparent() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(
            trace_id(traceparent),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
        ] {
            assert_eq!(trace_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn links_join_the_base_and_the_id_with_one_slash() {
        assert_eq!(
            jaeger_link("http://jaeger:16686/", "abc"),
            "http://jaeger:16686/trace/abc"
        );
        assert_eq!(
            jaeger_link(DEFAULT_JAEGER_URL, "abc"),
            "http://localhost:16686/trace/abc"
        );
    }
}
