//! What can go wrong in an operator command, with what the operator needs to act on it.
//!
//! Each variant names the stream, bucket, sequence or order concerned, and answers
//! [`OpsError::is_transient`]: a command that failed on a transient error may simply be run
//! again, one that failed on a permanent one needs the operator to change something first.

use std::time::Duration;

use pipeline::StoreError;
use pipeline::config::ConfigError;
use pipeline::connect::ConnectError;
use pipeline::dead_letter::DeadLetterError;
use pipeline::publisher::PublishError;
use wdt::WdtError;

/// A failed operator command.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// NATS did not answer in time.
    #[error("NATS at {url} did not answer within {waited:?}")]
    Unreachable {
        /// The server, credentials removed.
        url: String,
        /// How long the command waited.
        waited: Duration,
    },
    /// NATS refused the connection.
    #[error("connecting to NATS: {0}")]
    Connect(#[source] ConnectError),
    /// A stream the workers create does not exist.
    #[error(
        "stream {stream} not found: no worker has created the topology yet, or \
         BRIDGE_NATS_PREFIX differs from the workers'"
    )]
    MissingStream {
        /// The stream.
        stream: String,
    },
    /// A bucket the workers create does not exist.
    #[error(
        "bucket {bucket} not found: no worker has created the topology yet, or \
         BRIDGE_NATS_PREFIX differs from the workers'"
    )]
    MissingBucket {
        /// The bucket.
        bucket: String,
    },
    /// A request on a stream failed.
    #[error("stream {stream}: {operation}: {source}")]
    Stream {
        /// The stream.
        stream: String,
        /// What was asked, e.g. `read`, `delete message`.
        operation: &'static str,
        /// The client's error.
        source: async_nats::Error,
    },
    /// A request on a bucket failed.
    #[error("bucket {bucket}: {operation}: {source}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What was asked.
        operation: &'static str,
        /// The client's error.
        source: async_nats::Error,
    },
    /// A KV-backed store (cursor, ledger) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A re-fed message was not stored.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// No dead letter is stored at this sequence.
    #[error("no dead letter at sequence {seq}")]
    NoDeadLetter {
        /// The sequence in the dead-letter stream.
        seq: u64,
    },
    /// A stored dead letter lacks what every dead letter has.
    #[error("dead letter {seq}: {source}")]
    UnreadableDeadLetter {
        /// The sequence in the dead-letter stream.
        seq: u64,
        /// What is wrong with it.
        source: DeadLetterError,
    },
    /// `dlq purge` without `--yes`.
    #[error("refusing to purge {count} dead letters without --yes")]
    PurgeNotConfirmed {
        /// How many dead letters the purge would remove.
        count: u64,
    },
    /// What to select makes no sense (an empty range, a stage without an input stream).
    #[error("invalid selection: {0}")]
    Selection(String),
    /// Reading WDT failed.
    #[error("reading WDT: {0}")]
    Wdt(#[from] WdtError),
    /// Looking a bill up in 星辰 failed.
    #[error("looking up bill {billno} in 星辰: {source}")]
    Target {
        /// The bill number.
        billno: String,
        /// The client's error.
        source: xingchen::Error,
    },
}

impl OpsError {
    pub(crate) fn stream(
        stream: &str,
        operation: &'static str,
        source: impl Into<async_nats::Error>,
    ) -> OpsError {
        OpsError::Stream {
            stream: stream.to_owned(),
            operation,
            source: source.into(),
        }
    }

    pub(crate) fn bucket(
        bucket: &str,
        operation: &'static str,
        source: impl Into<async_nats::Error>,
    ) -> OpsError {
        OpsError::Bucket {
            bucket: bucket.to_owned(),
            operation,
            source: source.into(),
        }
    }

    /// Whether running the command again unchanged may succeed: an unanswered or failed
    /// request may, a missing stream, a bad selection or a refused purge never.
    pub fn is_transient(&self) -> bool {
        match self {
            OpsError::Unreachable { .. } | OpsError::Stream { .. } | OpsError::Bucket { .. } => {
                true
            }
            OpsError::Connect(err) => err.is_transient(),
            OpsError::Store(err) => err.is_transient(),
            OpsError::Publish(err) => err.is_transient(),
            OpsError::Wdt(err) => err.is_transient(),
            OpsError::Target { source, .. } => source.is_transient(),
            OpsError::Config(_)
            | OpsError::MissingStream { .. }
            | OpsError::MissingBucket { .. }
            | OpsError::NoDeadLetter { .. }
            | OpsError::UnreadableDeadLetter { .. }
            | OpsError::PurgeNotConfirmed { .. }
            | OpsError::Selection(_) => false,
        }
    }
}
