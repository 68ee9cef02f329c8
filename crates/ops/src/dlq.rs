//! `bridge dlq`: list, show, redrive and purge dead letters.
//!
//! Dead letters are read back with [`DeadLetter::from_message`], so what the commands show is
//! what the workers wrote. `list` filters by stage and reason kind and puts the newest first;
//! `show` adds the payload, the original headers, the delivery history and the trace id.
//!
//! `redrive` publishes a copy of each chosen dead letter's original message on its stage's
//! input subject (see [`crate::refeed`] for the headers: a fresh id, `bridge_redriven_at`,
//! `bridge_redrive_count`, and the history in `dlq_attempts`), waits for the stream's
//! acknowledgement, and only then deletes the dead letter: a redrive that fails half-way leaves
//! the dead letter in place. If the copy fails again, the worker dead-letters it with the
//! history it carried. Dead letters of the extractor are skipped: it reads WDT, not a stream,
//! so the way back for them is `extractor backfill` once the order is fixed in WDT.
//!
//! `purge` removes every dead letter, and refuses unless the caller confirmed it.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pipeline::dead_letter::{Attempt, DeadLetter, ReasonKind, dlq_header};
use pipeline::message::OutgoingMessage;
use pipeline::{Names, Stage};
use serde::Serialize;
use tracing::{info, warn};

use crate::refeed::{self, Purpose, header};
use crate::scan::{self, Read, Start};
use crate::table::Table;
use crate::time::{self, format_beijing};
use crate::trace::trace_id;
use crate::{Ops, OpsError};

/// Which dead letters to list or redrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlqFilter {
    /// Only this stage's.
    pub stage: Option<Stage>,
    /// Only this reason kind.
    pub reason: Option<ReasonKind>,
}

impl DlqFilter {
    fn accepts(&self, dead_letter: &DeadLetter) -> bool {
        self.stage.is_none_or(|stage| stage == dead_letter.stage)
            && self
                .reason
                .is_none_or(|reason| reason == dead_letter.reason_kind)
    }
}

/// A dead letter in a list.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterSummary {
    /// Its sequence in the dead-letter stream: what `show` and `redrive` take.
    pub seq: u64,
    /// The stage that gave up.
    pub stage: Stage,
    /// Why, as a kind.
    pub reason_kind: ReasonKind,
    /// Why, in words.
    pub reason: String,
    /// The order's number, when known.
    pub stockout_no: Option<String>,
    /// Deliveries before the stage gave up.
    pub delivered: i64,
    /// When it was dead-lettered.
    #[serde(serialize_with = "time::beijing")]
    pub at: DateTime<Utc>,
    /// The stream the original came from.
    pub source_stream: Option<String>,
    /// Its sequence there.
    pub source_seq: Option<u64>,
    /// How many times the order's message had been redriven before this dead letter.
    pub redrive_count: u32,
}

/// One dead letter in full.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterDetail {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: DeadLetterSummary,
    /// The original's subject.
    pub source_subject: Option<String>,
    /// The trace id from its `traceparent`.
    pub trace_id: Option<String>,
    /// Its `traceparent`.
    pub traceparent: Option<String>,
    /// Every failed attempt, oldest first: those of earlier dead letters, then this one's own.
    pub attempts: Vec<Attempt>,
    /// When it was last redriven before this dead letter, as the copy said.
    pub redriven_at: Option<String>,
    /// The original's headers.
    pub headers: BTreeMap<String, String>,
    /// The payload: as JSON when it is JSON, else as text.
    pub payload: serde_json::Value,
}

/// What to redrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedriveSelection {
    /// These dead letters, by sequence.
    Sequences(Vec<u64>),
    /// Every dead letter the filter accepts (`--reason KIND`, `--all`).
    Matching(DlqFilter),
}

/// What a redrive did.
#[derive(Clone, Debug, Serialize)]
pub struct RedriveReport {
    /// When the copies were made.
    #[serde(serialize_with = "time::beijing")]
    pub at: DateTime<Utc>,
    /// The dead letters redriven (and deleted).
    pub redriven: Vec<Redriven>,
    /// The dead letters left alone, with why.
    pub skipped: Vec<Skipped>,
}

/// One redriven dead letter.
#[derive(Clone, Debug, Serialize)]
pub struct Redriven {
    /// Its sequence in the dead-letter stream, now deleted.
    pub dlq_seq: u64,
    /// The stage it goes back to.
    pub stage: Stage,
    /// The order's number.
    pub stockout_no: Option<String>,
    /// Where the copy was published.
    pub subject: String,
    /// The copy's sequence in the input stream.
    pub stream_seq: u64,
    /// The copy's `Nats-Msg-Id`.
    pub msg_id: String,
    /// How many times the order's message has now been redriven.
    pub redrive_count: u32,
}

/// A dead letter a redrive left alone.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// Its sequence in the dead-letter stream.
    pub dlq_seq: u64,
    /// Why it was skipped.
    pub why: String,
}

/// What a purge did.
#[derive(Clone, Debug, Serialize)]
pub struct PurgeReport {
    /// Dead letters removed.
    pub purged: u64,
}

impl Ops {
    /// The dead letters `filter` accepts, newest first.
    pub async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<DeadLetterSummary>, OpsError> {
        let stream = self.stream(&self.names().dlq_stream()).await?;
        let read = Read::headers(Start::First);
        let mut found = Vec::new();
        scan::scan(&stream, read, |message| {
            match DeadLetter::from_message(&message.headers, Bytes::new()) {
                Ok(dead_letter) if filter.accepts(&dead_letter) => {
                    found.push(summary(message.seq, &dead_letter));
                }
                Ok(_) => {}
                Err(error) => warn!(seq = message.seq, error = %error, "Dead letter unreadable"),
            }
            false
        })
        .await?;
        found.reverse();
        Ok(found)
    }

    /// The dead letter at `seq`, in full.
    pub async fn dlq_show(&self, seq: u64) -> Result<DeadLetterDetail, OpsError> {
        let dead_letter = self.dead_letter(seq).await?;
        Ok(detail(seq, &dead_letter))
    }

    /// Redrives the dead letters `selection` names; see the module's documentation.
    pub async fn dlq_redrive(
        &self,
        selection: &RedriveSelection,
    ) -> Result<RedriveReport, OpsError> {
        let at = Utc::now();
        let mut report = RedriveReport {
            at,
            redriven: Vec::new(),
            skipped: Vec::new(),
        };
        let sequences = match selection {
            RedriveSelection::Sequences(sequences) => sequences.clone(),
            RedriveSelection::Matching(filter) => {
                // Oldest first, so the stages see the orders in the order they failed.
                let mut listed: Vec<u64> =
                    self.dlq_list(filter).await?.iter().map(|s| s.seq).collect();
                listed.reverse();
                listed
            }
        };
        let stream = self.stream(&self.names().dlq_stream()).await?;
        for seq in sequences {
            let dead_letter = match self.dead_letter(seq).await {
                Ok(dead_letter) => dead_letter,
                Err(
                    error @ (OpsError::NoDeadLetter { .. } | OpsError::UnreadableDeadLetter { .. }),
                ) => {
                    report.skipped.push(Skipped {
                        dlq_seq: seq,
                        why: error.to_string(),
                    });
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Some(copy) = redrive_copy(self.names(), seq, &dead_letter, at) else {
                report.skipped.push(Skipped {
                    dlq_seq: seq,
                    why: "dead-lettered by the extractor, which reads no stream: fix the order \
                          in WDT and read it again with `extractor backfill`"
                        .to_owned(),
                });
                continue;
            };
            let redriven = self
                .publish_redrive(&stream, seq, &dead_letter, copy)
                .await?;
            report.redriven.push(redriven);
        }
        Ok(report)
    }

    /// Removes every dead letter; refuses with [`OpsError::PurgeNotConfirmed`] unless
    /// `confirmed`.
    pub async fn dlq_purge(&self, confirmed: bool) -> Result<PurgeReport, OpsError> {
        let name = self.names().dlq_stream();
        let stream = self.stream(&name).await?;
        if !confirmed {
            let info = stream
                .get_info()
                .await
                .map_err(|err| OpsError::stream(&name, "read info", err))?;
            return Err(OpsError::PurgeNotConfirmed {
                count: info.state.messages,
            });
        }
        let purged = stream
            .purge()
            .await
            .map_err(|err| OpsError::stream(&name, "purge", err))?
            .purged;
        info!(stream = %name, purged, "Dead letters purged");
        Ok(PurgeReport { purged })
    }

    async fn dead_letter(&self, seq: u64) -> Result<DeadLetter, OpsError> {
        let name = self.names().dlq_stream();
        let stream = self.stream(&name).await?;
        let stored = match stream.get_raw_message(seq).await {
            Ok(stored) => stored,
            Err(err)
                if err.kind()
                    == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
            {
                return Err(OpsError::NoDeadLetter { seq });
            }
            Err(err) => return Err(OpsError::stream(&name, "read message", err)),
        };
        DeadLetter::from_message(&stored.headers, stored.payload)
            .map_err(|source| OpsError::UnreadableDeadLetter { seq, source })
    }

    async fn publish_redrive(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        seq: u64,
        dead_letter: &DeadLetter,
        copy: OutgoingMessage,
    ) -> Result<Redriven, OpsError> {
        let subject = copy.subject.clone();
        let msg_id = copy.msg_id().unwrap_or_default().to_owned();
        let redrive_count = redrive_count(dead_letter) + 1;
        let ack = self.publisher().publish(copy).await?;
        // Deleted only once the copy is stored: a failure here leaves both, and the ledger
        // keeps a second redrive of the same order from posting twice.
        let name = self.names().dlq_stream();
        stream
            .delete_message(seq)
            .await
            .map_err(|err| OpsError::stream(&name, "delete message", err))?;
        info!(
            dlq_seq = seq,
            stage = %dead_letter.stage,
            stockout_no = dead_letter.stockout_no.as_deref().unwrap_or_default(),
            stream_seq = ack.sequence,
            redrive_count,
            "Dead letter redriven"
        );
        Ok(Redriven {
            dlq_seq: seq,
            stage: dead_letter.stage,
            stockout_no: dead_letter.stockout_no.clone(),
            subject,
            stream_seq: ack.sequence,
            msg_id,
            redrive_count,
        })
    }
}

/// The copy that redrives `dead_letter`; `None` for the extractor's, which have no input.
fn redrive_copy(
    names: &Names,
    seq: u64,
    dead_letter: &DeadLetter,
    at: DateTime<Utc>,
) -> Option<OutgoingMessage> {
    let subject = refeed::input_subject(names, dead_letter.stage)?;
    let fallback_id = format!("{}:{seq}", names.dlq_stream());
    let mut headers = refeed::copy_headers(
        &dead_letter.original_headers,
        Purpose::Redrive,
        at,
        &fallback_id,
    );
    headers.insert(header::REDRIVEN_AT, refeed::stamp(at));
    headers.insert(
        header::REDRIVE_COUNT,
        (redrive_count(dead_letter) + 1).to_string(),
    );
    headers.insert(dlq_header::ATTEMPTS, dead_letter.history_header());
    Some(OutgoingMessage {
        subject,
        headers,
        payload: dead_letter.payload.clone(),
    })
}

fn redrive_count(dead_letter: &DeadLetter) -> u32 {
    dead_letter
        .original_headers
        .get(header::REDRIVE_COUNT)
        .and_then(|count| count.as_str().parse().ok())
        .unwrap_or(0)
}

fn summary(seq: u64, dead_letter: &DeadLetter) -> DeadLetterSummary {
    DeadLetterSummary {
        seq,
        stage: dead_letter.stage,
        reason_kind: dead_letter.reason_kind,
        reason: dead_letter.reason.clone(),
        stockout_no: dead_letter.stockout_no.clone(),
        delivered: dead_letter.delivered,
        at: dead_letter.at,
        source_stream: dead_letter.source_stream.clone(),
        source_seq: dead_letter.source_sequence,
        redrive_count: redrive_count(dead_letter),
    }
}

fn detail(seq: u64, dead_letter: &DeadLetter) -> DeadLetterDetail {
    let traceparent = dead_letter.trace.traceparent.clone();
    let headers = dead_letter
        .original_headers
        .iter()
        .map(|(name, values)| {
            let values: Vec<&str> = values.iter().map(|value| value.as_str()).collect();
            (name.to_string(), values.join(", "))
        })
        .collect();
    let payload = serde_json::from_slice(&dead_letter.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&dead_letter.payload).into_owned())
    });
    DeadLetterDetail {
        summary: summary(seq, dead_letter),
        source_subject: dead_letter.source_subject.clone(),
        trace_id: traceparent.as_deref().and_then(trace_id).map(str::to_owned),
        traceparent,
        attempts: dead_letter.history(),
        redriven_at: dead_letter
            .original_headers
            .get(header::REDRIVEN_AT)
            .map(|at| at.as_str().to_owned()),
        headers,
        payload,
    }
}

/// A list of dead letters as a table.
pub fn list_text(dead_letters: &[DeadLetterSummary]) -> String {
    if dead_letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let mut table = Table::new([
        "SEQ",
        "STAGE",
        "REASON",
        "ORDER",
        "DELIVERED",
        "REDRIVES",
        "AT",
        "WHY",
    ]);
    for dead_letter in dead_letters {
        table.row([
            dead_letter.seq.to_string(),
            dead_letter.stage.to_string(),
            dead_letter.reason_kind.to_string(),
            dead_letter.stockout_no.clone().unwrap_or_default(),
            dead_letter.delivered.to_string(),
            dead_letter.redrive_count.to_string(),
            format_beijing(&dead_letter.at),
            shorten(&dead_letter.reason, 60),
        ]);
    }
    table.render()
}

impl DeadLetterDetail {
    /// The dead letter as labelled lines, its history as a table, and its payload.
    pub fn to_text(&self) -> String {
        let summary = &self.summary;
        let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_owned());
        let source = match (&summary.source_stream, summary.source_seq) {
            (Some(stream), Some(seq)) => format!("{stream} seq {seq}"),
            (Some(stream), None) => stream.clone(),
            _ => "-".to_owned(),
        };
        let mut text = format!(
            "seq:          {}\nstage:        {}\nreason:       {}: {}\norder:        {}\n\
             delivered:    {}\ndead-lettered {}\nsource:       {} ({})\ntrace id:     {}\n\
             redrives:     {}\n",
            summary.seq,
            summary.stage,
            summary.reason_kind,
            summary.reason,
            optional(&summary.stockout_no),
            summary.delivered,
            format_beijing(&summary.at),
            source,
            optional(&self.source_subject),
            optional(&self.trace_id),
            summary.redrive_count,
        );
        if !self.attempts.is_empty() {
            let mut history = Table::new(["ATTEMPT", "AT", "ERROR"]);
            for attempt in &self.attempts {
                history.row([
                    attempt.delivered.to_string(),
                    format_beijing(&attempt.at),
                    attempt.error.clone(),
                ]);
            }
            text.push('\n');
            text.push_str(&history.render());
        }
        text.push_str("\nheaders:\n");
        for (name, value) in &self.headers {
            text.push_str(&format!("  {name}: {value}\n"));
        }
        let payload = serde_json::to_string_pretty(&self.payload).unwrap_or_default();
        text.push_str(&format!("\npayload:\n{payload}\n"));
        text
    }
}

impl RedriveReport {
    /// What was redriven and skipped, as a table and lines.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        if !self.redriven.is_empty() {
            let mut table = Table::new([
                "DLQ_SEQ",
                "STAGE",
                "ORDER",
                "SUBJECT",
                "STREAM_SEQ",
                "REDRIVES",
            ]);
            for redriven in &self.redriven {
                table.row([
                    redriven.dlq_seq.to_string(),
                    redriven.stage.to_string(),
                    redriven.stockout_no.clone().unwrap_or_default(),
                    redriven.subject.clone(),
                    redriven.stream_seq.to_string(),
                    redriven.redrive_count.to_string(),
                ]);
            }
            text.push_str(&table.render());
        }
        for skipped in &self.skipped {
            text.push_str(&format!("skipped {}: {}\n", skipped.dlq_seq, skipped.why));
        }
        text.push_str(&format!(
            "{} redriven, {} skipped\n",
            self.redriven.len(),
            self.skipped.len()
        ));
        text
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::HeaderMap;
    use pipeline::message::{TraceContext, header as pipeline_header};

    fn dead_letter(stage: Stage, redrives: Option<&str>) -> DeadLetter {
        let mut original_headers = HeaderMap::new();
        original_headers.insert(pipeline_header::STOCKOUT_ID, "5");
        original_headers.insert(pipeline_header::MSG_ID, "5:abc");
        if let Some(count) = redrives {
            original_headers.insert(header::REDRIVE_COUNT, count);
        }
        DeadLetter {
            stage,
            reason_kind: ReasonKind::LookupNotFound,
            reason: "material G1 not found".to_owned(),
            delivered: 1,
            source_stream: Some("BRIDGE_ORDERS_RAW".to_owned()),
            source_sequence: Some(4),
            source_subject: Some("bridge.orders.raw".to_owned()),
            stockout_no: Some("CK5".to_owned()),
            trace: TraceContext::default(),
            original_headers,
            payload: Bytes::from_static(b"{}"),
            attempts: Vec::new(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_redrive_counts_on_from_the_count_the_dead_letter_carried() {
        let at = Utc::now();
        let names = Names::default();
        let copy = redrive_copy(&names, 9, &dead_letter(Stage::Transform, Some("2")), at)
            .expect("a transform dead letter has an input");
        assert_eq!(copy.subject, "bridge.orders.raw");
        let get = |name| copy.headers.get(name).map(|value| value.as_str());
        assert_eq!(get(header::REDRIVE_COUNT), Some("3"));
        assert_eq!(get(header::REDRIVEN_AT), Some(refeed::stamp(at).as_str()));
        let id = format!("redrive:{}:5:abc", at.timestamp_millis());
        assert_eq!(get(pipeline_header::MSG_ID), Some(id.as_str()));
        assert!(get(dlq_header::ATTEMPTS).is_some_and(|json| json.contains("lookup_not_found")));

        let first = redrive_copy(&names, 9, &dead_letter(Stage::Load, None), at).expect("copy");
        assert_eq!(first.subject, "bridge.bills");
        assert_eq!(
            first.headers.get(header::REDRIVE_COUNT).map(|v| v.as_str()),
            Some("1")
        );
    }

    #[test]
    fn the_extractors_dead_letters_cannot_be_redriven() {
        let extract = dead_letter(Stage::Extract, None);
        assert!(redrive_copy(&Names::default(), 1, &extract, Utc::now()).is_none());
    }

    #[test]
    fn filters_combine_stage_and_reason() {
        let letter = dead_letter(Stage::Transform, None);
        let accepts = |stage, reason| DlqFilter { stage, reason }.accepts(&letter);
        assert!(accepts(None, None));
        assert!(accepts(
            Some(Stage::Transform),
            Some(ReasonKind::LookupNotFound)
        ));
        assert!(!accepts(Some(Stage::Load), None));
        assert!(!accepts(None, Some(ReasonKind::MalformedOrder)));
    }
}
