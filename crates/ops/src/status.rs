//! `bridge status`: what the pipeline holds and who is working on it, at one glance.
//!
//! The report gathers, for each stream (raw orders, bills, dead letters), its messages, bytes,
//! and first and last sequence and store time; for each durable consumer, what is pending,
//! awaiting an ack, and was redelivered; the dead letters counted by stage and reason kind; the
//! extractor's cursor and how far it lags behind now; the ledger's size; and the worker
//! heartbeats found in the workers bucket. A heartbeat older than three heartbeat intervals
//! belongs to a worker taken as dead (the bucket itself forgets it after a minute). Its age is
//! read from the time the server stored it, so a worker's clock does not matter.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use pipeline::cursor::CursorStore;
use pipeline::dead_letter::dlq_header;
use pipeline::{Names, Stage};
use serde::{Deserialize, Serialize};

use crate::scan::{self, Read, Start};
use crate::table::Table;
use crate::time::{self, format_beijing};
use crate::{Ops, OpsError};

/// Heartbeat intervals after which a worker is taken as dead.
pub const MISSED_BEATS: u32 = 3;

/// What to look at besides what every bridge has.
#[derive(Clone, Debug)]
pub struct StatusOptions {
    /// The extractor's cursor name (`EXTRACTOR_CURSOR`, default `stockout`).
    pub cursor_name: String,
    /// The workers' heartbeat interval; a heartbeat older than [`MISSED_BEATS`] of them is dead.
    pub heartbeat_interval: Duration,
}

impl Default for StatusOptions {
    fn default() -> StatusOptions {
        StatusOptions {
            cursor_name: extractor::config::DEFAULT_CURSOR_NAME.to_owned(),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// When it was taken.
    #[serde(serialize_with = "time::beijing")]
    pub at: DateTime<Utc>,
    /// Raw orders, bills and dead letters, in that order.
    pub streams: Vec<StreamStatus>,
    /// The transformer's and the loader's consumers.
    pub consumers: Vec<ConsumerStatus>,
    /// The dead letters by stage and reason kind.
    pub dead_letters: DeadLetterCounts,
    /// The extractor's cursor; `None` before its first advance.
    pub cursor: Option<CursorStatus>,
    /// The ledger of posted bills.
    pub ledger: LedgerStatus,
    /// Every heartbeat in the workers bucket, by key.
    pub workers: Vec<WorkerStatus>,
}

/// One stream.
#[derive(Clone, Debug, Serialize)]
pub struct StreamStatus {
    /// Its name.
    pub name: String,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Sequence of the first message stored (0 when empty).
    pub first_seq: u64,
    /// When the first message was stored; `None` when empty.
    #[serde(serialize_with = "time::beijing_opt")]
    pub first_time: Option<DateTime<Utc>>,
    /// Sequence of the last message stored.
    pub last_seq: u64,
    /// When the last message was stored; `None` when empty.
    #[serde(serialize_with = "time::beijing_opt")]
    pub last_time: Option<DateTime<Utc>>,
}

/// One durable consumer.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerStatus {
    /// The stream it reads.
    pub stream: String,
    /// Its name.
    pub name: String,
    /// Messages not yet delivered.
    pub pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub ack_pending: u64,
    /// Messages delivered more than once and not yet acknowledged.
    pub redelivered: u64,
    /// Pull requests waiting: roughly, workers pulling right now.
    pub waiting: u64,
}

/// Dead letters counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts {
    /// All of them.
    pub total: u64,
    /// By stage, then by reason kind.
    pub by_stage: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The extractor's cursor.
#[derive(Clone, Debug, Serialize)]
pub struct CursorStatus {
    /// Its name.
    pub name: String,
    /// The Beijing-time instant up to which every order has been published.
    pub at: DateTime<FixedOffset>,
    /// How far it stands behind the report's time, in seconds.
    pub lag_seconds: i64,
}

/// The ledger.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerStatus {
    /// Orders with a recorded bill.
    pub entries: u64,
}

/// One heartbeat.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStatus {
    /// Its key, `<stage>.<encoded instance>`.
    pub key: String,
    /// The worker's stage.
    pub stage: String,
    /// The worker's instance name.
    pub instance: String,
    /// The worker's version.
    pub version: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its host.
    pub host: String,
    /// When it started, as it wrote it.
    pub started_at: Option<String>,
    /// When the server stored its latest heartbeat.
    #[serde(serialize_with = "time::beijing")]
    pub last_beat: DateTime<Utc>,
    /// How old that heartbeat is, in milliseconds.
    pub age_ms: i64,
    /// Whether the heartbeat is recent enough for the worker to count as alive.
    pub alive: bool,
    /// What it says it has processed: counts by name.
    pub processed: BTreeMap<String, serde_json::Value>,
}

/// A heartbeat's value as the workers write it; every field optional, so that one worker's
/// older or newer format still shows.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Beat {
    stage: Option<String>,
    instance: Option<String>,
    version: Option<String>,
    pid: Option<u32>,
    host: Option<String>,
    started_at: Option<String>,
    processed: BTreeMap<String, serde_json::Value>,
}

impl Ops {
    /// Takes the status report.
    pub async fn status(&self, options: &StatusOptions) -> Result<Status, OpsError> {
        let names = self.names().clone();
        let mut streams = Vec::new();
        for name in [
            names.raw_orders_stream(),
            names.bills_stream(),
            names.dlq_stream(),
        ] {
            streams.push(self.stream_status(&name).await?);
        }
        let mut consumers = Vec::new();
        for stage in [Stage::Transform, Stage::Load] {
            if let Some((stream, consumer)) = names.consumed_by(stage) {
                consumers.push(self.consumer_status(&stream, consumer).await?);
            }
        }
        let at = Utc::now();
        Ok(Status {
            dead_letters: self.dead_letter_counts().await?,
            cursor: self.cursor_status(&names, &options.cursor_name, at).await?,
            ledger: self.ledger_status(&names).await?,
            workers: self.worker_status(&names, options, at).await?,
            at,
            streams,
            consumers,
        })
    }

    async fn stream_status(&self, name: &str) -> Result<StreamStatus, OpsError> {
        let stream = self.stream(name).await?;
        let info = stream
            .get_info()
            .await
            .map_err(|err| OpsError::stream(name, "read info", err))?;
        let state = &info.state;
        let stored = state.messages > 0;
        Ok(StreamStatus {
            name: name.to_owned(),
            messages: state.messages,
            bytes: state.bytes,
            first_seq: state.first_sequence,
            first_time: stored.then(|| time::from_nats(state.first_timestamp)),
            last_seq: state.last_sequence,
            last_time: stored.then(|| time::from_nats(state.last_timestamp)),
        })
    }

    async fn consumer_status(
        &self,
        stream_name: &str,
        consumer: &str,
    ) -> Result<ConsumerStatus, OpsError> {
        let stream = self.stream(stream_name).await?;
        let info = stream
            .consumer_info(consumer)
            .await
            .map_err(|err| OpsError::stream(stream_name, "read consumer info", err))?;
        Ok(ConsumerStatus {
            stream: stream_name.to_owned(),
            name: consumer.to_owned(),
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            waiting: info.num_waiting as u64,
        })
    }

    /// The dead letters counted by stage and reason kind, from their headers.
    pub async fn dead_letter_counts(&self) -> Result<DeadLetterCounts, OpsError> {
        let stream = self.stream(&self.names().dlq_stream()).await?;
        let read = Read::headers(Start::First);
        let mut counts = DeadLetterCounts::default();
        scan::scan(&stream, read, |message| {
            let stage = message.header(dlq_header::STAGE).unwrap_or("unknown");
            let kind = message.header(dlq_header::REASON_KIND).unwrap_or("unknown");
            counts.total += 1;
            *counts
                .by_stage
                .entry(stage.to_owned())
                .or_default()
                .entry(kind.to_owned())
                .or_default() += 1;
            false
        })
        .await?;
        Ok(counts)
    }

    async fn cursor_status(
        &self,
        names: &Names,
        cursor_name: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<CursorStatus>, OpsError> {
        let bucket = self.bucket(&names.cursor_bucket()).await?;
        let position = CursorStore::new(bucket, cursor_name).read().await?;
        Ok(position.map(|position| CursorStatus {
            name: cursor_name.to_owned(),
            lag_seconds: (at - position.at.with_timezone(&Utc)).num_seconds(),
            at: position.at,
        }))
    }

    async fn ledger_status(&self, names: &Names) -> Result<LedgerStatus, OpsError> {
        let bucket = self.bucket(&names.ledger_bucket()).await?;
        let entries = scan::kv_values(&bucket, true).await?.len() as u64;
        Ok(LedgerStatus { entries })
    }

    async fn worker_status(
        &self,
        names: &Names,
        options: &StatusOptions,
        at: DateTime<Utc>,
    ) -> Result<Vec<WorkerStatus>, OpsError> {
        let bucket = self.bucket(&names.workers_bucket()).await?;
        let dead_after = options.heartbeat_interval * MISSED_BEATS;
        let values = scan::kv_values(&bucket, false).await?;
        Ok(values
            .into_iter()
            .map(|value| worker(&value.key, &value.message, at, dead_after))
            .collect())
    }
}

fn worker(
    key: &str,
    message: &scan::Scanned,
    at: DateTime<Utc>,
    dead_after: Duration,
) -> WorkerStatus {
    // A value that is not a heartbeat still shows, by its key, so nothing hides in the bucket.
    let beat: Beat = serde_json::from_slice(&message.payload).unwrap_or_default();
    let (key_stage, key_instance) = key.split_once('.').unwrap_or((key, ""));
    let instance = beat.instance.unwrap_or_else(|| {
        pipeline::key::decode(key_instance).unwrap_or_else(|_| key_instance.to_owned())
    });
    let age_ms = (at - message.stored_at).num_milliseconds();
    let dead_after_ms = i64::try_from(dead_after.as_millis()).unwrap_or(i64::MAX);
    WorkerStatus {
        key: key.to_owned(),
        stage: beat.stage.unwrap_or_else(|| key_stage.to_owned()),
        instance,
        version: beat.version.unwrap_or_default(),
        pid: beat.pid,
        host: beat.host.unwrap_or_default(),
        started_at: beat.started_at,
        last_beat: message.stored_at,
        age_ms,
        alive: age_ms <= dead_after_ms,
        processed: beat.processed,
    }
}

impl Status {
    /// The report as compact tables.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let mut streams = Table::new([
            "STREAM",
            "MESSAGES",
            "BYTES",
            "FIRST_SEQ",
            "FIRST_STORED",
            "LAST_SEQ",
            "LAST_STORED",
        ]);
        for stream in &self.streams {
            let time =
                |t: &Option<DateTime<Utc>>| t.as_ref().map(format_beijing).unwrap_or_default();
            streams.row([
                stream.name.clone(),
                stream.messages.to_string(),
                stream.bytes.to_string(),
                stream.first_seq.to_string(),
                time(&stream.first_time),
                stream.last_seq.to_string(),
                time(&stream.last_time),
            ]);
        }
        text.push_str(&streams.render());

        let mut consumers = Table::new([
            "CONSUMER",
            "STREAM",
            "PENDING",
            "ACK_PENDING",
            "REDELIVERED",
        ]);
        for consumer in &self.consumers {
            consumers.row([
                consumer.name.clone(),
                consumer.stream.clone(),
                consumer.pending.to_string(),
                consumer.ack_pending.to_string(),
                consumer.redelivered.to_string(),
            ]);
        }
        text.push('\n');
        text.push_str(&consumers.render());

        text.push('\n');
        text.push_str(&dead_letter_table(&self.dead_letters));

        text.push('\n');
        match &self.cursor {
            Some(cursor) => text.push_str(&format!(
                "cursor {}: {} (lag {})\n",
                cursor.name,
                wdt::format_wdt_time(&cursor.at),
                lag_text(cursor.lag_seconds)
            )),
            None => text.push_str("cursor: not set yet\n"),
        }
        text.push_str(&format!("ledger: {} bills recorded\n", self.ledger.entries));

        text.push('\n');
        text.push_str(&worker_table(&self.workers));
        text
    }
}

fn dead_letter_table(counts: &DeadLetterCounts) -> String {
    if counts.total == 0 {
        return "dead letters: none\n".to_owned();
    }
    let mut table = Table::new(["DEAD_LETTERS", "REASON", "COUNT"]);
    for (stage, kinds) in &counts.by_stage {
        for (kind, count) in kinds {
            table.row([stage.clone(), kind.clone(), count.to_string()]);
        }
    }
    table.row(["total".to_owned(), String::new(), counts.total.to_string()]);
    table.render()
}

fn worker_table(workers: &[WorkerStatus]) -> String {
    if workers.is_empty() {
        return "workers: no heartbeat\n".to_owned();
    }
    let mut table = Table::new([
        "WORKER",
        "INSTANCE",
        "STATE",
        "VERSION",
        "PID",
        "HOST",
        "LAST_BEAT",
        "PROCESSED",
    ]);
    for worker in workers {
        let processed: Vec<String> = worker
            .processed
            .iter()
            .map(|(name, count)| format!("{name}={count}"))
            .collect();
        table.row([
            worker.stage.clone(),
            worker.instance.clone(),
            if worker.alive { "alive" } else { "dead" }.to_owned(),
            worker.version.clone(),
            worker.pid.map(|pid| pid.to_string()).unwrap_or_default(),
            worker.host.clone(),
            format_beijing(&worker.last_beat),
            processed.join(" "),
        ]);
    }
    table.render()
}

fn lag_text(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let seconds = seconds.unsigned_abs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match hours {
        0 => format!("{sign}{minutes}m{seconds:02}s"),
        _ => format!("{sign}{hours}h{minutes:02}m{seconds:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(payload: &str, stored_at: DateTime<Utc>) -> scan::Scanned {
        scan::Scanned {
            seq: 1,
            subject: "$KV.bridge_workers.load.host-1".to_owned(),
            headers: async_nats::HeaderMap::new(),
            payload: bytes::Bytes::from(payload.to_owned()),
            stored_at,
        }
    }

    #[test]
    fn a_heartbeat_older_than_three_intervals_is_dead() {
        let now = Utc::now();
        let beat = r#"{"stage":"load","instance":"host-1","version":"0.1.0","pid":7,
            "host":"h","started_at":"2024-05-01T00:00:00Z","processed":{"acked":3}}"#;
        let interval = Duration::from_secs(5);
        let fresh = worker(
            "load.host-1",
            &scanned(beat, now - chrono::Duration::seconds(14)),
            now,
            interval * 3,
        );
        assert!(fresh.alive);
        assert_eq!(fresh.processed["acked"], 3);
        assert_eq!(fresh.pid, Some(7));
        let stale = worker(
            "load.host-1",
            &scanned(beat, now - chrono::Duration::seconds(16)),
            now,
            interval * 3,
        );
        assert!(!stale.alive);
    }

    #[test]
    fn a_value_that_is_not_a_heartbeat_still_shows_by_its_key() {
        let now = Utc::now();
        let odd = worker(
            "transform.a=2Eb",
            &scanned("garbage", now),
            now,
            Duration::from_secs(15),
        );
        assert_eq!(odd.stage, "transform");
        assert_eq!(odd.instance, "a.b");
        assert!(odd.alive);
    }

    #[test]
    fn lag_reads_in_hours_minutes_and_seconds() {
        assert_eq!(lag_text(75), "1m15s");
        assert_eq!(lag_text(3 * 3600 + 5), "3h00m05s");
        assert_eq!(lag_text(-4), "-0m04s");
    }
}
