//! `bridge replay`: feed stored raw orders into the transformer again, or stored bill payloads
//! into the loader.
//!
//! The messages are chosen from the stage's input stream (raw orders for `transform`, bills for
//! `load`) by when the stream stored them (`--from/--to`, Beijing time, inclusive; a bound
//! without a fraction of a second covers that whole second), by sequence (`--seq A..B`,
//! inclusive) or by order number (`--stockout-no`, any number of them). Each is published again
//! on the stage's input subject as [`crate::refeed`] describes: a fresh `Nats-Msg-Id`, so the
//! duplicate window lets it in, `bridge_replay` and `bridge_replay_of` to mark it, and every
//! other header kept, `traceparent` included, so the order's trace goes on.
//!
//! A replay is safe because the stages are: the transformer maps the order with today's scheme
//! and master data, and the loader's ledger modifies a bill only when that gives a different
//! bill, and posts nothing otherwise. A dry run selects and reports and publishes nothing.

use std::str::FromStr;

use async_nats::jetstream::stream::Stream;
use chrono::{DateTime, Duration, FixedOffset, Timelike, Utc};
use pipeline::Stage;
use pipeline::message::{OutgoingMessage, header as pipeline_header};
use serde::Serialize;
use tracing::info;

use crate::refeed::{self, Purpose, header};
use crate::scan::{self, Read, Scanned, Start};
use crate::table::Table;
use crate::time::{self, format_beijing};
use crate::{Ops, OpsError};

/// Messages fetched and published per round, which bounds the memory a large replay holds.
const BATCH: usize = 256;
/// Publish acknowledgements awaited at once.
const PUBLISH_IN_FLIGHT: usize = 64;

/// An inclusive range of stream sequences, written `A..B` (or `A` for one message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    /// The first sequence.
    pub first: u64,
    /// The last sequence.
    pub last: u64,
}

impl FromStr for SeqRange {
    type Err = String;

    fn from_str(text: &str) -> Result<SeqRange, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid sequence range {text:?}: expected A..B, e.g. 10..20"))
        };
        let (first, last) = match text.split_once("..") {
            Some((first, last)) => (number(first)?, number(last)?),
            None => {
                let only = number(text)?;
                (only, only)
            }
        };
        if first == 0 || first > last {
            return Err(format!(
                "invalid sequence range {text:?}: sequences start at 1 and A may not exceed B"
            ));
        }
        Ok(SeqRange { first, last })
    }
}

/// Which stored messages to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Those stored from `from` to `to`, inclusive.
    Stored {
        /// The first instant.
        from: DateTime<FixedOffset>,
        /// The last instant; without a fraction of a second, the whole second.
        to: DateTime<FixedOffset>,
    },
    /// Those with these sequences.
    Sequences(SeqRange),
    /// Those of these orders (`stockout_no` header).
    Orders(Vec<String>),
}

/// A replay to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRequest {
    /// The stage fed: `Transform` (raw orders) or `Load` (bills).
    pub stage: Stage,
    /// What to replay.
    pub selector: Selector,
    /// Select and report only.
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// The stage fed.
    pub stage: Stage,
    /// The stream read.
    pub stream: String,
    /// The subject published to.
    pub subject: String,
    /// Whether nothing was published.
    pub dry_run: bool,
    /// When the copies were made.
    #[serde(serialize_with = "time::beijing")]
    pub at: DateTime<Utc>,
    /// Messages selected.
    pub selected: usize,
    /// Copies the stream stored (0 on a dry run).
    pub replayed: usize,
    /// Copies the stream took for duplicates (always 0 unless two replays collide).
    pub duplicates: usize,
    /// The selected messages, in sequence order.
    pub messages: Vec<ReplayedMessage>,
}

/// One selected message.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayedMessage {
    /// Its sequence in the stream.
    pub seq: u64,
    /// The order's number.
    pub stockout_no: Option<String>,
    /// The order's id.
    pub stockout_id: Option<String>,
    /// When the stream stored it.
    #[serde(serialize_with = "time::beijing")]
    pub stored_at: DateTime<Utc>,
    /// The copy's `Nats-Msg-Id`; `None` on a dry run.
    pub msg_id: Option<String>,
}

impl Ops {
    /// Runs `request`; see the module's documentation.
    pub async fn replay(&self, request: &ReplayRequest) -> Result<ReplayReport, OpsError> {
        let names = self.names();
        let (Some(stream_name), Some(subject)) = (
            refeed::input_stream(names, request.stage),
            refeed::input_subject(names, request.stage),
        ) else {
            return Err(OpsError::Selection(
                "the extractor reads WDT, not a stream: use `extractor backfill` to read orders \
                 again"
                    .to_owned(),
            ));
        };
        let stream = self.stream(&stream_name).await?;
        let selected = select(&stream, &request.selector).await?;
        let at = Utc::now();
        let mut report = ReplayReport {
            stage: request.stage,
            stream: stream_name,
            subject,
            dry_run: request.dry_run,
            at,
            selected: selected.len(),
            replayed: 0,
            duplicates: 0,
            messages: Vec::with_capacity(selected.len()),
        };
        for message in &selected {
            let msg_id = (!request.dry_run).then(|| {
                let copy = replay_headers(&report.stream, at, message.seq, &message.headers);
                copy.get(pipeline_header::MSG_ID)
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default()
            });
            report.messages.push(ReplayedMessage {
                seq: message.seq,
                stockout_no: message
                    .header(pipeline_header::STOCKOUT_NO)
                    .map(str::to_owned),
                stockout_id: message
                    .header(pipeline_header::STOCKOUT_ID)
                    .map(str::to_owned),
                stored_at: message.stored_at,
                msg_id,
            });
        }
        if !request.dry_run {
            self.publish_copies(&stream, &selected, &mut report).await?;
        }
        Ok(report)
    }

    async fn publish_copies(
        &self,
        stream: &Stream,
        selected: &[Scanned],
        report: &mut ReplayReport,
    ) -> Result<(), OpsError> {
        for batch in selected.chunks(BATCH) {
            let mut copies = Vec::with_capacity(batch.len());
            for message in batch {
                let stored = stream
                    .get_raw_message(message.seq)
                    .await
                    .map_err(|err| OpsError::stream(&report.stream, "read message", err))?;
                copies.push(OutgoingMessage {
                    subject: report.subject.clone(),
                    headers: replay_headers(
                        &report.stream,
                        report.at,
                        message.seq,
                        &stored.headers,
                    ),
                    payload: stored.payload,
                });
            }
            let summary = self
                .publisher()
                .publish_all(copies, PUBLISH_IN_FLIGHT)
                .await?;
            report.replayed += summary.stored;
            report.duplicates += summary.duplicates;
        }
        info!(
            stage = %report.stage,
            stream = %report.stream,
            selected = report.selected,
            replayed = report.replayed,
            "Messages replayed"
        );
        Ok(())
    }
}

/// The headers of the replayed copy of message `seq` of `stream`.
fn replay_headers(
    stream: &str,
    at: DateTime<Utc>,
    seq: u64,
    original: &async_nats::HeaderMap,
) -> async_nats::HeaderMap {
    let fallback_id = format!("{stream}:{seq}");
    let mut headers = refeed::copy_headers(original, Purpose::Replay, at, &fallback_id);
    headers.insert(header::REPLAY, refeed::stamp(at));
    headers.insert(header::REPLAY_OF, seq.to_string());
    headers
}

/// The messages of `stream` that `selector` names, headers only, in sequence order.
async fn select(stream: &Stream, selector: &Selector) -> Result<Vec<Scanned>, OpsError> {
    match selector {
        Selector::Stored { from, to } => {
            if from > to {
                return Err(OpsError::Selection(format!(
                    "--from {} is after --to {}",
                    wdt::format_wdt_time(from),
                    wdt::format_wdt_time(to)
                )));
            }
            let (start, end) = (from.with_timezone(&Utc), inclusive_end(*to));
            scan::scan(stream, Read::headers(Start::Time(*from)), |message| {
                message.stored_at >= start && message.stored_at <= end
            })
            .await
        }
        Selector::Sequences(range) => {
            let range = *range;
            scan::scan(
                stream,
                Read::headers(Start::Sequence(range.first)),
                |message| (range.first..=range.last).contains(&message.seq),
            )
            .await
        }
        Selector::Orders(numbers) => {
            if numbers.is_empty() {
                return Err(OpsError::Selection("no --stockout-no given".to_owned()));
            }
            scan::scan(stream, Read::headers(Start::First), |message| {
                message
                    .header(pipeline_header::STOCKOUT_NO)
                    .is_some_and(|number| numbers.iter().any(|wanted| wanted == number))
            })
            .await
        }
    }
}

/// The last instant `to` covers: the end of its second when it names a whole second.
fn inclusive_end(to: DateTime<FixedOffset>) -> DateTime<Utc> {
    let to = to.with_timezone(&Utc);
    if to.nanosecond() == 0 {
        to + Duration::seconds(1) - Duration::nanoseconds(1)
    } else {
        to
    }
}

impl ReplayReport {
    /// The selected messages as a table and a closing count.
    pub fn to_text(&self) -> String {
        let mut table = Table::new(["SEQ", "ORDER", "STOCKOUT_ID", "STORED"]);
        for message in &self.messages {
            table.row([
                message.seq.to_string(),
                message.stockout_no.clone().unwrap_or_default(),
                message.stockout_id.clone().unwrap_or_default(),
                format_beijing(&message.stored_at),
            ]);
        }
        let mut text = if table.is_empty() {
            String::new()
        } else {
            table.render()
        };
        if self.dry_run {
            text.push_str(&format!(
                "dry run: {} messages of {} would be replayed to {}\n",
                self.selected, self.stream, self.subject
            ));
        } else {
            text.push_str(&format!(
                "{} of {} selected messages of {} replayed to {}\n",
                self.replayed, self.selected, self.stream, self.subject
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_ranges_read_inclusive_and_refuse_nonsense() {
        assert_eq!("3..7".parse(), Ok(SeqRange { first: 3, last: 7 }));
        assert_eq!("5".parse(), Ok(SeqRange { first: 5, last: 5 }));
        for bad in ["7..3", "0..2", "a..b", "3..", ""] {
            assert!(bad.parse::<SeqRange>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_whole_second_bound_covers_its_second() {
        let to = wdt::parse_cli_time("2024-05-01 12:00:00").expect("time");
        let end = inclusive_end(to);
        assert_eq!(end.to_rfc3339(), "2024-05-01T04:00:00.999999999+00:00");
        let precise = wdt::parse_cli_time("2024-05-01T12:00:00.5+08:00").expect("time");
        assert_eq!(inclusive_end(precise), precise.with_timezone(&Utc));
    }
}
