//! Reading a range of WDT orders and publishing every one of them, page by page.
//!
//! A range is cut into the reader's windows (at most 30 days each). Each window's orders come
//! from the reader as a stream, taken a page at a time: the reader yields a page's orders
//! without waiting and waits only to call WDT, so `ready_chunks` ends each batch where a page
//! ends, and no batch is larger than a page. A batch is published with
//! [`Publisher::publish_all`], a bounded number of acknowledgements in flight, before the next
//! page is read. Memory therefore holds one page and its acknowledgements, whatever the size
//! of the window, and [`Extraction::extract`] returns only when every publish of the range is
//! acknowledged, or with the first failure.
//!
//! Tracing: each page read is a client span of its own trace; each order's publish is a
//! producer span, the root of the order's trace, linked to its page's span, and its context
//! travels in the message's `traceparent`. The cursor and the schedule are [`crate::sync`]'s;
//! building each message is [`crate::order`]'s.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline::Names;
use pipeline::dead_letter::{DeadLetter, DeadLetterPublisher};
use pipeline::message::{OutgoingMessage, TraceContext};
use pipeline::publisher::{PublishError, PublishSummary, Publisher};
use pipeline::retry::Backoff;
use telemetry::metrics::{self, ApiEndpoint, ApiOutcome};
use tokio_util::sync::CancellationToken;
use tracing::field::Empty;
use tracing::{Instrument, Span, debug, info, warn};
use wdt::{ReadFilter, StockoutOrder, WdtError, WdtTime, Window, WindowReader};

use crate::order::{self, Prepared, SOURCE_METHOD, window_text};
use crate::stats::{Stats, Summary};

/// How often a backfill publishes one page of orders before it gives up; with the delays below
/// that spans about half a minute, longer than a cluster takes to elect a new stream leader.
pub const BACKFILL_PUBLISH_ATTEMPTS: u32 = 8;
const PUBLISH_RETRY_FLOOR: Duration = Duration::from_millis(250);
const PUBLISH_RETRY_CEILING: Duration = Duration::from_secs(10);

/// Why a range was not published whole.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// WDT did not give the window's orders, even after the client's retries.
    #[error("read wdt window {window}: {source}")]
    Wdt {
        /// The window, as `start..end` in Beijing time.
        window: String,
        /// The client's error.
        source: Box<WdtError>,
    },
    /// A raw order or a dead letter was not acknowledged by its stream.
    #[error("publish orders of window {window}: {source}")]
    Publish {
        /// The window.
        window: String,
        /// The publisher's error.
        source: Box<PublishError>,
    },
    /// The shutdown signal came before the range was read whole.
    #[error("stopped by the shutdown signal in window {window}")]
    Interrupted {
        /// The window being read.
        window: String,
    },
}

impl ExtractError {
    /// Whether the same range may succeed later: WDT's and the publisher's own answers; an
    /// interrupted range is simply not done.
    pub fn is_transient(&self) -> bool {
        match self {
            ExtractError::Wdt { source, .. } => source.is_transient(),
            ExtractError::Publish { source, .. } => source.is_transient(),
            ExtractError::Interrupted { .. } => false,
        }
    }
}

/// Everything needed to read ranges and publish their orders.
#[derive(Clone, Debug)]
pub struct Extraction {
    reader: WindowReader,
    filter: ReadFilter,
    publisher: Publisher,
    dead_letters: DeadLetterPublisher,
    names: Names,
    page_size: usize,
    in_flight: usize,
    stats: Arc<Stats>,
    publish_attempts: u32,
}

/// Counts one page read as one call to WDT, taking as long as the reader took to hand the page
/// over: the client's retries are inside it, so this is the wait the extractor saw. The outcome
/// is that of the error the page ended with, if any.
fn record_page_call(page: &[Result<StockoutOrder, WdtError>], elapsed: Duration) {
    let outcome = match page.iter().find_map(|item| item.as_ref().err()) {
        None => ApiOutcome::Ok,
        Some(error) if error.is_transient() => ApiOutcome::TransientError,
        Some(_) => ApiOutcome::PermanentError,
    };
    metrics::api_call(ApiEndpoint::WdtStockoutQuery, outcome, elapsed);
}

/// A page's orders, ready to publish, with the spans that wait for their acknowledgements.
#[derive(Default)]
struct Batch {
    messages: Vec<OutgoingMessage>,
    dead_letters: Vec<DeadLetter>,
    spans: Vec<Span>,
    orders_read: u64,
}

impl Extraction {
    /// Reads with `reader` and `filter`, pages of `page_size`, publishing with `in_flight`
    /// acknowledgements outstanding.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is a separate part of the topology"
    )]
    pub fn new(
        reader: WindowReader,
        filter: ReadFilter,
        publisher: Publisher,
        dead_letters: DeadLetterPublisher,
        names: Names,
        page_size: u32,
        in_flight: usize,
        stats: Arc<Stats>,
    ) -> Extraction {
        Extraction {
            reader,
            filter,
            publisher,
            dead_letters,
            names,
            page_size: usize::try_from(page_size).unwrap_or(usize::MAX).max(1),
            in_flight,
            stats,
            publish_attempts: 1,
        }
    }

    /// Publishes each page up to `attempts` times before the window fails. `extractor run`
    /// keeps one: a failed window is read again at the next interval anyway. A backfill has no
    /// next interval, so it rides out a cluster node going away instead of exiting.
    pub fn with_publish_attempts(mut self, attempts: u32) -> Extraction {
        self.publish_attempts = attempts.max(1);
        self
    }

    /// The windows `from..=to` is read in.
    pub fn windows(&self, from: WdtTime, to: WdtTime) -> Result<Vec<Window>, ExtractError> {
        self.reader
            .windows(from, to)
            .map_err(|source| ExtractError::Wdt {
                window: window_text(&Window {
                    start: from,
                    end: to,
                }),
                source: Box::new(source),
            })
    }

    /// Publishes every order of `from..=to` and returns once all are acknowledged. Between two
    /// pages it checks `stop`, and gives up with [`ExtractError::Interrupted`] once cancelled.
    pub async fn extract(
        &self,
        from: WdtTime,
        to: WdtTime,
        stop: &CancellationToken,
    ) -> Result<Summary, ExtractError> {
        let mut total = Summary::default();
        for window in self.windows(from, to)? {
            total += self.extract_window(window, stop).await?;
        }
        Ok(total)
    }

    async fn extract_window(
        &self,
        window: Window,
        stop: &CancellationToken,
    ) -> Result<Summary, ExtractError> {
        let started = Instant::now();
        let text = window_text(&window);
        let orders = self.reader.read_window(window, self.filter.clone());
        let mut pages = pin!(orders.ready_chunks(self.page_size));
        let mut summary = Summary::default();
        loop {
            if stop.is_cancelled() {
                return Err(ExtractError::Interrupted { window: text });
            }
            let page_span = telemetry::client_span!(
                "read wdt page",
                endpoint = SOURCE_METHOD,
                window = %text,
                orders = Empty
            );
            let page_started = Instant::now();
            let Some(page) = pages.next().instrument(page_span.clone()).await else {
                break;
            };
            record_page_call(&page, page_started.elapsed());
            page_span.record("orders", telemetry::span::as_i64(page.len()));
            let (batch, failure) = self.prepare(page, &window, &page_span);
            let published = self
                .publish(batch)
                .await
                .map_err(|source| ExtractError::Publish {
                    window: text.clone(),
                    source: Box::new(source),
                })?;
            self.stats.record_page(&published);
            summary += published;
            if let Some(source) = failure {
                return Err(ExtractError::Wdt {
                    window: text,
                    source: Box::new(source),
                });
            }
        }
        // A window with nothing in it is the usual case of a quiet minute: not worth an INFO.
        let level_info = summary.orders_read > 0;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if level_info {
            info!(
                window = %text,
                orders_read = summary.orders_read,
                stored = summary.stored,
                duplicates = summary.duplicates,
                dead_letters = summary.dead_letters,
                elapsed_ms,
                "Window published"
            );
        } else {
            debug!(window = %text, elapsed_ms, "Window published, empty");
        }
        Ok(summary)
    }

    /// Turns a page into messages and dead letters; the reader's error, which ends its stream,
    /// is handed back after the orders before it.
    fn prepare(
        &self,
        page: Vec<Result<StockoutOrder, WdtError>>,
        window: &Window,
        page_span: &Span,
    ) -> (Batch, Option<WdtError>) {
        let mut batch = Batch::default();
        for item in page {
            let order = match item {
                Ok(order) => order,
                Err(error) => return (batch, Some(error)),
            };
            let span = self.publish_span(&order, page_span);
            let trace =
                TraceContext::from_headers(Some(&telemetry::propagation::headers_for(&span)));
            match order::prepare(&self.names, &order, window, &trace) {
                Prepared::Message(message) => {
                    if let Some(msg_id) = message.msg_id() {
                        span.record("messaging.message.id", msg_id);
                    }
                    batch.messages.push(message);
                }
                Prepared::DeadLetter(dead_letter) => {
                    tracing::warn!(
                        parent: &span,
                        stockout_id = order.stockout_id(),
                        error = %dead_letter.reason,
                        "Order dead-lettered"
                    );
                    batch.dead_letters.push(*dead_letter);
                }
            }
            batch.spans.push(span);
            batch.orders_read += 1;
        }
        (batch, None)
    }

    /// The producer span of one order: the root of its trace, linked to the page it came from.
    fn publish_span(&self, order: &StockoutOrder, page_span: &Span) -> Span {
        let subject = self.names.raw_orders_subject();
        let span = telemetry::producer_span!(
            "publish order",
            destination = subject.as_str(),
            message_id = Empty,
            stockout_no = Empty,
            billno = Empty,
            stockout_id = order.stockout_id()
        );
        if let Some(stockout_no) = order.stockout_no() {
            span.record("stockout_no", stockout_no);
        }
        telemetry::propagation::start_new_root_linked_to(&span, page_span);
        span
    }

    /// Publishes the batch's orders, again after a transient failure such as a cluster node
    /// going away mid-batch. Publishing again is safe: each message's `Nats-Msg-Id` makes the
    /// stream drop what it already stored, so the second try only counts those as duplicates.
    async fn publish_retrying(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<PublishSummary, PublishError> {
        let mut pause = Backoff::new(PUBLISH_RETRY_FLOOR, PUBLISH_RETRY_CEILING);
        let mut attempt = 1;
        loop {
            match self
                .publisher
                .publish_all(messages.clone(), self.in_flight)
                .await
            {
                Err(error) if error.is_transient() && attempt < self.publish_attempts => {
                    let delay = pause.next_delay();
                    warn!(
                        attempt,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "Publishing a page of orders failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Publishes a batch and returns once every message is acknowledged; the spans close then.
    async fn publish(&self, batch: Batch) -> Result<Summary, PublishError> {
        let Batch {
            messages,
            dead_letters,
            spans,
            orders_read,
        } = batch;
        // Overlapping windows read a malformed order again; its dead letter is then a duplicate
        // the stream drops, and is not counted twice.
        let mut new_dead_letters = 0;
        for dead_letter in &dead_letters {
            if !self.dead_letters.publish(dead_letter).await?.duplicate {
                new_dead_letters += 1;
            }
        }
        let published = self.publish_retrying(messages).await?;
        drop(spans);
        Ok(Summary {
            orders_read,
            stored: published.stored as u64,
            duplicates: published.duplicates as u64,
            dead_letters: new_dead_letters,
        })
    }
}
