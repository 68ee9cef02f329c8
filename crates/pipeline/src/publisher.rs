//! Publishing to JetStream and waiting for the stream's acknowledgement.
//!
//! A publish counts only once the stream has acknowledged it: that is when the effect is durable
//! and a worker may ack its own input, or the extractor advance its cursor.
//! [`Publisher::publish_all`] sends a window of messages keeping a bounded number of
//! acknowledgements outstanding, and returns only when every one has arrived, or at the first
//! failure. A message JetStream recognises by its `Nats-Msg-Id` as already stored is
//! acknowledged as a duplicate, which is a success. Building the messages is left to
//! [`crate::message`].

use async_nats::jetstream::context::{self, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use futures::{StreamExt, TryStreamExt};

use crate::message::OutgoingMessage;

/// A publish that did not end in the stream's acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The message could not be sent.
    #[error("publish to {subject}: {source}")]
    Send {
        /// Where it was going.
        subject: String,
        /// The client's error.
        source: context::PublishError,
    },
    /// The message was sent but no acknowledgement came back.
    #[error("publish to {subject}: no acknowledgement: {source}")]
    Ack {
        /// Where it was going.
        subject: String,
        /// The client's error.
        source: context::PublishError,
    },
}

impl PublishError {
    /// Only a message too large for the server will fail every time; a missing stream, a
    /// timeout or a lost connection are the operator's or the network's to fix, and retrying is
    /// right.
    pub fn is_transient(&self) -> bool {
        let (PublishError::Send { source, .. } | PublishError::Ack { source, .. }) = self;
        source.kind() != PublishErrorKind::MaxPayloadExceeded
    }
}

/// How a window of publishes ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// Messages the stream stored.
    pub stored: usize,
    /// Messages the stream recognised by their `Nats-Msg-Id` as already stored.
    pub duplicates: usize,
}

/// Publishes to JetStream and waits for acknowledgements.
#[derive(Clone, Debug)]
pub struct Publisher {
    jetstream: async_nats::jetstream::Context,
}

impl Publisher {
    /// A publisher on `jetstream`.
    pub fn new(jetstream: async_nats::jetstream::Context) -> Publisher {
        Publisher { jetstream }
    }

    /// Publishes `message` and returns once the stream has acknowledged it.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck, PublishError> {
        let OutgoingMessage {
            subject,
            headers,
            payload,
        } = message;
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(|source| PublishError::Send {
                subject: subject.clone(),
                source,
            })?;
        ack.await
            .map_err(|source| PublishError::Ack { subject, source })
    }

    /// Publishes every message with at most `max_in_flight` acknowledgements outstanding, and
    /// returns once all are acknowledged, or with the first failure.
    ///
    /// After a failure some messages may have been stored and others not; publishing the whole
    /// window again is safe, since the stored ones come back as duplicates.
    pub async fn publish_all<I>(
        &self,
        messages: I,
        max_in_flight: usize,
    ) -> Result<PublishSummary, PublishError>
    where
        I: IntoIterator<Item = OutgoingMessage>,
    {
        futures::stream::iter(messages)
            .map(|message| self.publish(message))
            .buffer_unordered(max_in_flight.max(1))
            .try_fold(PublishSummary::default(), |mut summary, ack| async move {
                if ack.duplicate {
                    summary.duplicates += 1;
                } else {
                    summary.stored += 1;
                }
                Ok(summary)
            })
            .await
    }
}
