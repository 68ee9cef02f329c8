//! Reading a stream from a starting point to its end, as it stood when the read began.
//!
//! Commands read streams through an ephemeral ordered consumer: the server sends the messages in
//! sequence, with headers only when the payload is not needed, and forgets the consumer after.
//! The end is the stream's last sequence when the read began, or the point where the server has
//! nothing more pending for the consumer, whichever comes first, so a read ends even while the
//! workers keep publishing. Deciding what to keep is left to the caller's `keep`.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use futures::StreamExt;
use tracing::warn;

use crate::OpsError;
use crate::time;

/// Longest wait for the next message before a read counts as finished; the server sends what
/// is pending at once, so only a stream losing messages mid-read ever waits this long.
const IDLE_WAIT: Duration = Duration::from_secs(5);

/// Where a read starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// At the first message.
    First,
    /// At this sequence.
    Sequence(u64),
    /// At the first message stored at or after this instant.
    Time(DateTime<FixedOffset>),
    /// The last message of every subject (a KV bucket's current values).
    LastPerSubject,
}

/// A read: where it starts and what it brings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Read<'f> {
    /// Where it starts.
    pub start: Start,
    /// Headers only, without payloads.
    pub headers_only: bool,
    /// Only messages on subjects this filter matches; every subject when empty.
    pub filter_subject: &'f str,
}

impl Read<'static> {
    /// The headers of every message from `start` on.
    pub fn headers(start: Start) -> Read<'static> {
        Read {
            start,
            headers_only: true,
            filter_subject: "",
        }
    }
}

/// One message read.
#[derive(Clone, Debug)]
pub(crate) struct Scanned {
    /// Its sequence in the stream.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Its headers (empty when it has none).
    pub headers: HeaderMap,
    /// Its payload; empty on a headers-only read.
    pub payload: Bytes,
    /// When the stream stored it.
    pub stored_at: DateTime<Utc>,
}

impl Scanned {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.as_str())
    }
}

/// Reads `stream` as `read` says and returns the messages `keep` accepts, in sequence order.
pub(crate) async fn scan(
    stream: &Stream,
    read: Read<'_>,
    mut keep: impl FnMut(&Scanned) -> bool,
) -> Result<Vec<Scanned>, OpsError> {
    let name = stream.cached_info().config.name.as_str();
    let last_seq = stream
        .get_info()
        .await
        .map_err(failure(name, "read info"))?
        .state
        .last_sequence;

    let config = pull::OrderedConfig {
        deliver_policy: deliver_policy(read.start),
        headers_only: read.headers_only,
        filter_subject: read.filter_subject.to_owned(),
        ..pull::OrderedConfig::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(failure(name, "create reader"))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(failure(name, "read"))?;

    let mut kept = Vec::new();
    loop {
        let Ok(next) = tokio::time::timeout(IDLE_WAIT, messages.next()).await else {
            warn!(
                stream = name,
                last_seq, "Stream read ended early; messages vanished while reading"
            );
            break;
        };
        let Some(message) = next else { break };
        let message = message.map_err(failure(name, "read"))?;
        let info = message.info().map_err(failure(name, "read metadata"))?;
        let done = info.pending == 0 || info.stream_sequence >= last_seq;
        let scanned = Scanned {
            seq: info.stream_sequence,
            stored_at: time::from_nats(info.published),
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
        };
        if keep(&scanned) {
            kept.push(scanned);
        }
        if done {
            break;
        }
    }
    Ok(kept)
}

fn failure<'s, E>(stream: &'s str, operation: &'static str) -> impl FnOnce(E) -> OpsError + 's
where
    E: Into<async_nats::Error>,
{
    move |err| OpsError::stream(stream, operation, err)
}

fn deliver_policy(start: Start) -> DeliverPolicy {
    match start {
        Start::First => DeliverPolicy::All,
        Start::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        Start::Time(at) => DeliverPolicy::ByStartTime {
            start_time: time::to_nats(at),
        },
        Start::LastPerSubject => DeliverPolicy::LastPerSubject,
    }
}

/// The header that marks a KV deletion or purge.
const KV_OPERATION: &str = "KV-Operation";

/// One key of a KV bucket with its current value.
#[derive(Clone, Debug)]
pub(crate) struct KvValue {
    /// The key as stored (encoded).
    pub key: String,
    /// The stored message: value (empty on a headers-only read) and the time it was written.
    pub message: Scanned,
}

/// Every live key of `store` with its current value (headers only if `headers_only`), in one
/// read of the bucket's stream rather than a request per key.
pub(crate) async fn kv_values(
    store: &async_nats::jetstream::kv::Store,
    headers_only: bool,
) -> Result<Vec<KvValue>, OpsError> {
    // The server serves the last message per subject only under a subject filter.
    let subjects = format!("{}>", store.prefix);
    let read = Read {
        start: Start::LastPerSubject,
        headers_only,
        filter_subject: &subjects,
    };
    let live = |message: &Scanned| {
        message
            .header(KV_OPERATION)
            .is_none_or(|operation| operation == "PUT")
    };
    let values = scan(&store.stream, read, live).await?;
    Ok(values
        .into_iter()
        .filter_map(|message| {
            let key = message.subject.strip_prefix(&store.prefix)?.to_owned();
            Some(KvValue { key, message })
        })
        .collect())
}
