//! The consumer loop the transformer and the loader share.
//!
//! [`Worker::run`] binds the stage's durable pull consumer, pulls with the configured batch,
//! expiry and heartbeat, and runs the stage's [`Handler`] on at most `in_flight` messages at a
//! time. Every message then takes exactly one explicit exit, confirmed by the server:
//!
//! * [`Outcome::Ack`]: the handler returns it only once its effect is durable (the next stream
//!   acknowledged its publish, or the bill is saved and recorded), and the message is acked;
//! * [`Outcome::Retry`]: the message is nakked with a delay, the handler's or the configured
//!   backoff's for that delivery; on the consumer's last allowed delivery it is dead-lettered as
//!   `max_deliveries` instead, since a nak then would leave it stuck unseen;
//! * [`Outcome::DeadLetter`]: a dead letter is published and, once the dead-letter stream has
//!   acknowledged it, the message is terminated so it is never redelivered.
//!
//! While a handler runs, the message's `ack_wait` is extended with progress acks; a handler that
//! exceeds `handler_timeout` is dropped and its message retried; a handler that panics has its
//! message retried, and dead-lettered as `poison_message` on the last delivery. A dead letter
//! lists the failed attempts this worker saw, after those a redriven message carried.
//!
//! A pull error (a missed heartbeat, a lost connection, a deleted consumer) is logged and
//! counted, and the loop pauses with a growing backoff and goes on: it never ends by itself.
//! It ends when the shutdown token is cancelled: it stops pulling, naks the messages already
//! delivered to it but not started so another worker takes them at once, and waits for the
//! in-flight handlers up to `shutdown_deadline`; any still running then are abandoned, and the
//! server redelivers their messages after `ack_wait`.
//!
//! What a handler does is left to the stage; building dead letters to [`crate::dead_letter`].

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, error, info, warn};

use crate::config::PullConfig;
use crate::dead_letter::{self, Attempt, DeadLetter, DeadLetterPublisher, ReasonKind};
use crate::message::{HeaderError, MessageMeta, TraceContext, header};
use crate::names::Stage;
use crate::retry::Backoff;

/// Earlier attempts remembered, by stream sequence, for the history in dead letters.
const ATTEMPT_MEMORY: usize = 4096;
/// Attempts remembered per message; dead letters list no more.
const ATTEMPTS_PER_MESSAGE: usize = 10;
/// Tries at publishing one dead letter before the message is nakked instead.
const DEAD_LETTER_TRIES: usize = 3;

/// What a stage does with one message.
pub trait Handler: Send + Sync + 'static {
    /// Handles `delivery` and says which exit it takes. Return [`Outcome::Ack`] only once the
    /// effect is durable. Keep secrets out of error texts: they end up in dead letters.
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// The exit a handler chooses for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The effect is durable: acknowledge.
    Ack,
    /// A transient failure: deliver again later.
    Retry {
        /// How long to wait; `None` follows the configured backoff for this delivery.
        delay: Option<Duration>,
        /// What failed.
        error: String,
    },
    /// A permanent failure: dead-letter and terminate.
    DeadLetter {
        /// Why, as a kind.
        kind: ReasonKind,
        /// Why, in words.
        message: String,
    },
}

impl Outcome {
    /// A retry after the configured backoff.
    pub fn retry(error: impl std::fmt::Display) -> Outcome {
        Outcome::Retry {
            delay: None,
            error: error.to_string(),
        }
    }

    /// A retry after `delay`, e.g. what a rate-limited service asked for.
    pub fn retry_after(delay: Duration, error: impl std::fmt::Display) -> Outcome {
        Outcome::Retry {
            delay: Some(delay),
            error: error.to_string(),
        }
    }

    /// A dead letter of `kind`.
    pub fn dead_letter(kind: ReasonKind, error: impl std::fmt::Display) -> Outcome {
        Outcome::DeadLetter {
            kind,
            message: error.to_string(),
        }
    }
}

/// A message as a handler sees it.
pub struct Delivery {
    message: jetstream::Message,
    stream: String,
    stream_sequence: u64,
    delivered: i64,
    published: Option<DateTime<Utc>>,
}

impl Delivery {
    /// The payload, byte for byte.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// The headers, if any.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.headers.as_ref()
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// The stream it is stored in.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Its sequence in that stream.
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// How many times it has been delivered, this time included (1 the first time).
    pub fn delivered(&self) -> i64 {
        self.delivered
    }

    /// When the stream stored it, from the message's JetStream metadata (no request to the
    /// server); `None` only if that time cannot be represented.
    pub fn published(&self) -> Option<DateTime<Utc>> {
        self.published
    }

    /// Identity, content hash, publication time and trace context from the headers.
    pub fn meta(&self) -> Result<MessageMeta, HeaderError> {
        MessageMeta::from_headers(self.headers())
    }

    /// The trace context it carries, possibly empty.
    pub fn trace(&self) -> TraceContext {
        TraceContext::from_headers(self.headers())
    }

    /// The order's number from the headers, if present.
    pub fn stockout_no(&self) -> Option<&str> {
        self.headers()
            .and_then(|h| h.get(header::STOCKOUT_NO))
            .map(|value| value.as_str())
    }
}

/// Everything a worker needs besides its handler; [`crate::Topology::worker_spec`] makes one.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The stage, which names dead letters and logs.
    pub stage: Stage,
    /// The durable pull consumer, bound at start-up.
    pub consumer: PullConsumer,
    /// The JetStream context, to bind the consumer again if it disappears.
    pub jetstream: jetstream::Context,
    /// Where dead letters go.
    pub dead_letters: DeadLetterPublisher,
    /// How to pull, retry and stop.
    pub pull: PullConfig,
}

/// Counters of one worker, readable while it runs.
#[derive(Debug, Default)]
pub struct WorkerStats {
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    exit_failures: AtomicU64,
    stream_errors: AtomicU64,
    released: AtomicU64,
    abandoned: AtomicU64,
}

/// A snapshot of [`WorkerStats`], and what [`Worker::run`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages nakked for a later delivery.
    pub retried: u64,
    /// Messages dead-lettered and terminated.
    pub dead_lettered: u64,
    /// Exits the server did not confirm (the message will come back after `ack_wait`).
    pub exit_failures: u64,
    /// Pull errors: missed heartbeats, lost connections, a missing consumer.
    pub stream_errors: u64,
    /// Messages delivered but not started at shutdown, nakked for another worker.
    pub released: u64,
    /// Handlers still running at the shutdown deadline.
    pub abandoned: u64,
}

impl WorkerStats {
    /// The counters now.
    pub fn snapshot(&self) -> RunReport {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RunReport {
            acked: read(&self.acked),
            retried: read(&self.retried),
            dead_lettered: read(&self.dead_lettered),
            exit_failures: read(&self.exit_failures),
            stream_errors: read(&self.stream_errors),
            released: read(&self.released),
            abandoned: read(&self.abandoned),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stage's consumer loop, ready to run.
pub struct Worker<H> {
    shared: Arc<Shared<H>>,
    consumer: PullConsumer,
}

struct Shared<H> {
    stage: Stage,
    stream_name: String,
    consumer_name: String,
    jetstream: jetstream::Context,
    dead_letters: DeadLetterPublisher,
    pull: PullConfig,
    max_deliver: i64,
    ack_wait: Duration,
    handler: H,
    stats: Arc<WorkerStats>,
    attempts: Mutex<BTreeMap<u64, Vec<Attempt>>>,
}

/// How a handler run ended.
enum HandlerResult {
    Handled(Outcome),
    Panicked(String),
    TimedOut,
}

/// The exit a message takes, decided from the handler's result and the delivery count.
#[derive(Debug, PartialEq)]
enum Exit {
    Ack,
    Nak { delay: Duration, error: String },
    DeadLetter { kind: ReasonKind, reason: String },
}

impl<H: Handler> Worker<H> {
    /// A worker running `handler` as `spec` says.
    pub fn new(spec: WorkerSpec, handler: H) -> Worker<H> {
        let config = &spec.consumer.cached_info().config;
        let shared = Shared {
            stage: spec.stage,
            stream_name: spec.consumer.cached_info().stream_name.clone(),
            consumer_name: spec.consumer.cached_info().name.clone(),
            jetstream: spec.jetstream,
            dead_letters: spec.dead_letters,
            pull: spec.pull,
            max_deliver: config.max_deliver,
            ack_wait: config.ack_wait,
            handler,
            stats: Arc::default(),
            attempts: Mutex::default(),
        };
        Worker {
            shared: Arc::new(shared),
            consumer: spec.consumer,
        }
    }

    /// The worker's live counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Pulls and handles messages until `shutdown` is cancelled, then lets in-flight messages
    /// reach their exit within the shutdown deadline, and reports what happened.
    pub async fn run(self, shutdown: CancellationToken) -> RunReport {
        let shared = self.shared;
        info!(
            stage = %shared.stage,
            stream = %shared.stream_name,
            consumer = %shared.consumer_name,
            in_flight = shared.pull.in_flight,
            "Worker started"
        );
        let slots = Arc::new(Semaphore::new(shared.pull.in_flight));
        let mut tasks = JoinSet::new();
        let mut puller = Puller {
            bound: Some(self.consumer),
            messages: None,
            pause: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        };

        loop {
            reap(&mut tasks);
            // A slot first, then a message: no message waits here without a handler to take it.
            let slot = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                slot = Arc::clone(&slots).acquire_owned() => slot,
            };
            // The semaphore is never closed, so acquiring only fails if that invariant breaks.
            let slot = slot.expect("worker semaphore is never closed");
            let Some(message) = puller.next(&shared, &shutdown).await else {
                break;
            };
            tasks.spawn(Arc::clone(&shared).handle(message, slot));
        }

        if let Some(stream) = puller.messages.take() {
            shared.release_buffered(stream).await;
        }
        shared.drain(tasks).await;
        let report = shared.stats.snapshot();
        info!(stage = %shared.stage, ?report, "Worker stopped");
        report
    }
}

/// The pulling side of the loop: the pull stream, opened again whenever it fails.
struct Puller {
    bound: Option<PullConsumer>,
    messages: Option<pull::Stream>,
    pause: Backoff,
}

impl Puller {
    /// The next message; `None` once shutdown is cancelled. Pull errors are logged, counted and
    /// followed by a growing pause, never returned: the loop must not end on them.
    async fn next<H: Handler>(
        &mut self,
        shared: &Shared<H>,
        shutdown: &CancellationToken,
    ) -> Option<jetstream::Message> {
        loop {
            let stream = match self.messages.as_mut() {
                Some(stream) => stream,
                None => match shared.open(self.bound.take()).await {
                    Ok(stream) => self.messages.insert(stream),
                    Err(err) => {
                        WorkerStats::count(&shared.stats.stream_errors);
                        error!(stage = %shared.stage, error = %err, "Consumer could not be bound");
                        self.pause_unless_cancelled(shutdown).await?;
                        continue;
                    }
                },
            };
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return None,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    self.pause.reset();
                    return Some(message);
                }
                Some(Err(err)) => {
                    WorkerStats::count(&shared.stats.stream_errors);
                    warn!(stage = %shared.stage, error = %err, "Pull failed; pulling again");
                    if ends_the_stream(err.kind()) {
                        self.messages = None;
                    }
                }
                None => {
                    WorkerStats::count(&shared.stats.stream_errors);
                    warn!(stage = %shared.stage, "Pull stream ended; opening it again");
                    self.messages = None;
                }
            }
            self.pause_unless_cancelled(shutdown).await?;
        }
    }

    /// Waits the next backoff step; `None` if shutdown came first.
    async fn pause_unless_cancelled(&mut self, shutdown: &CancellationToken) -> Option<()> {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            _ = tokio::time::sleep(self.pause.next_delay()) => Some(()),
        }
    }
}

impl<H: Handler> Shared<H> {
    async fn open(&self, bound: Option<PullConsumer>) -> Result<pull::Stream, async_nats::Error> {
        let consumer = match bound {
            Some(consumer) => consumer,
            None => {
                self.jetstream
                    .get_consumer_from_stream(&self.consumer_name, &self.stream_name)
                    .await?
            }
        };
        let stream = consumer
            .stream()
            .max_messages_per_batch(self.pull.batch)
            .expires(self.pull.expires)
            .heartbeat(self.pull.heartbeat)
            .messages()
            .await?;
        Ok(stream)
    }

    async fn handle(
        self: Arc<Self>,
        message: jetstream::Message,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _slot = slot;
        let info = message.info().ok().map(|i| {
            let published = stored_time(i.published);
            (
                i.stream.to_owned(),
                i.stream_sequence,
                i.delivered,
                published,
            )
        });
        let Some((stream, stream_sequence, delivered, published)) = info else {
            // Only JetStream messages reach a pull consumer; a reply subject that does not parse
            // means the server and client disagree, and no exit can be sent for it.
            WorkerStats::count(&self.stats.exit_failures);
            error!(
                stage = %self.stage,
                subject = %message.subject,
                "Message has no JetStream metadata"
            );
            return;
        };
        let delivery = Delivery {
            message,
            stream,
            stream_sequence,
            delivered,
            published,
        };
        let result = self.run_handler(&delivery).await;
        let exit = exit_for(result, delivery.delivered, self.max_deliver, &self.pull);
        self.take_exit(&delivery, exit).await;
    }

    async fn run_handler(&self, delivery: &Delivery) -> HandlerResult {
        let handling = AssertUnwindSafe(self.handler.handle(delivery)).catch_unwind();
        tokio::pin!(handling);
        let timeout = tokio::time::sleep(self.pull.handler_timeout);
        tokio::pin!(timeout);
        // Progress acks at half the ack wait keep a slow handler's message from being delivered
        // to a second worker meanwhile.
        let period = (self.ack_wait / 2).max(Duration::from_millis(100));
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut handling => return match result {
                    Ok(outcome) => HandlerResult::Handled(outcome),
                    Err(panic) => HandlerResult::Panicked(panic_text(panic.as_ref())),
                },
                _ = &mut timeout => return HandlerResult::TimedOut,
                _ = progress.tick() => {
                    if let Err(err) = delivery.message.ack_with(AckKind::Progress).await {
                        debug!(stage = %self.stage, error = %err, "Progress ack failed");
                    }
                }
            }
        }
    }

    async fn take_exit(&self, delivery: &Delivery, exit: Exit) {
        let stream_seq = delivery.stream_sequence;
        let delivered = delivery.delivered;
        let stockout_no = delivery.stockout_no().unwrap_or_default();
        match exit {
            Exit::Ack => {
                self.forget_attempts(stream_seq);
                match delivery.message.double_ack().await {
                    Ok(()) => {
                        WorkerStats::count(&self.stats.acked);
                        debug!(
                            stage = %self.stage,
                            stream_seq,
                            delivered,
                            stockout_no,
                            "Message acknowledged"
                        );
                    }
                    Err(err) => self.exit_failed(delivery, "ack", &err.to_string()),
                }
            }
            Exit::Nak { delay, error } => {
                self.remember_attempt(stream_seq, delivered, &error);
                let nak = delivery
                    .message
                    .double_ack_with(AckKind::Nak(Some(delay)))
                    .await;
                match nak {
                    Ok(()) => {
                        WorkerStats::count(&self.stats.retried);
                        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                        warn!(
                            stage = %self.stage,
                            stream_seq,
                            delivered,
                            stockout_no,
                            delay_ms,
                            error,
                            "Message will be retried"
                        );
                    }
                    Err(err) => self.exit_failed(delivery, "nak", &err.to_string()),
                }
            }
            Exit::DeadLetter { kind, reason } => self.dead_letter(delivery, kind, reason).await,
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, kind: ReasonKind, reason: String) {
        let stream_seq = delivery.stream_sequence;
        // A redriven message brings the history of its earlier dead letter; this worker's own
        // attempts come after it.
        let mut attempts = dead_letter::carried_attempts(delivery.headers());
        attempts.extend(self.forget_attempts(stream_seq));
        let mut dead_letter = DeadLetter {
            stage: self.stage,
            reason_kind: kind,
            reason,
            delivered: delivery.delivered,
            source_stream: Some(delivery.stream.clone()),
            source_sequence: Some(stream_seq),
            source_subject: Some(delivery.subject().to_owned()),
            stockout_no: delivery.stockout_no().map(str::to_owned),
            trace: delivery.trace(),
            original_headers: delivery.headers().cloned().unwrap_or_default(),
            payload: delivery.payload().clone(),
            attempts,
            at: Utc::now(),
        };
        let span = self.dead_letter_span(delivery, &mut dead_letter);
        self.publish_dead_letter(delivery, &dead_letter, kind)
            .instrument(span)
            .await
    }

    /// The producer span of a dead letter's publication, in the message's trace: a child of the
    /// context the message carries, since the handler's own span has ended by now. The dead
    /// letter then carries this span's context, so a redrive continues the trace from it.
    fn dead_letter_span(&self, delivery: &Delivery, dead_letter: &mut DeadLetter) -> Span {
        let outgoing = dead_letter.to_message(self.dead_letters.names());
        let span = telemetry::producer_span!(
            "publish dead letter",
            destination = outgoing.subject.as_str(),
            message_id = outgoing.msg_id().unwrap_or_default(),
            stockout_no = dead_letter.stockout_no.as_deref().unwrap_or_default(),
            billno = tracing::field::Empty,
            messaging.nats.message.delivery_count = telemetry::span::as_i64(delivery.delivered),
            dlq.stage = self.stage.as_str(),
            dlq.reason_kind = dead_letter.reason_kind.as_str()
        );
        if let Some(headers) = delivery.headers() {
            telemetry::propagation::set_parent_from_headers(&span, headers);
        }
        let own = TraceContext::from_headers(Some(&telemetry::propagation::headers_for(&span)));
        // Without the OpenTelemetry layer the span has no context; the message's is kept then.
        if own.traceparent.is_some() {
            dead_letter.trace = own;
        }
        span
    }

    /// Publishes a dead letter and terminates its message once the dead-letter stream holds it;
    /// naks the message when it cannot be stored.
    async fn publish_dead_letter(
        &self,
        delivery: &Delivery,
        dead_letter: &DeadLetter,
        kind: ReasonKind,
    ) {
        let stream_seq = delivery.stream_sequence;
        let mut pause = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut published = self.dead_letters.publish(dead_letter).await;
        for _ in 1..DEAD_LETTER_TRIES {
            let Err(err) = &published else { break };
            warn!(
                stage = %self.stage,
                stream_seq,
                error = %err,
                "Dead letter publish failed; trying again"
            );
            tokio::time::sleep(pause.next_delay()).await;
            published = self.dead_letters.publish(dead_letter).await;
        }
        if let Err(err) = published {
            // Without a stored dead letter the message must not be terminated; a nak brings it
            // back, unless this was its last delivery, and then only an operator can recover it.
            let delay = self.pull.retry_delay(delivery.delivered);
            let _ = delivery.message.ack_with(AckKind::Nak(Some(delay))).await;
            self.exit_failed(delivery, "dead letter", &err.to_string());
            return;
        }

        match delivery.message.double_ack_with(AckKind::Term).await {
            Ok(()) => {
                WorkerStats::count(&self.stats.dead_lettered);
                error!(
                    stage = %self.stage,
                    stream_seq,
                    delivered = delivery.delivered,
                    stockout_no = dead_letter.stockout_no.as_deref().unwrap_or_default(),
                    reason_kind = %kind,
                    error = %dead_letter.reason,
                    "Message dead-lettered"
                );
            }
            // The dead letter is stored; if the message comes back, its second dead letter has
            // the same Nats-Msg-Id and is dropped as a duplicate.
            Err(err) => self.exit_failed(delivery, "terminate", &err.to_string()),
        }
    }

    fn exit_failed(&self, delivery: &Delivery, exit: &str, error: &str) {
        WorkerStats::count(&self.stats.exit_failures);
        warn!(
            stage = %self.stage,
            stream_seq = delivery.stream_sequence,
            delivered = delivery.delivered,
            stockout_no = delivery.stockout_no().unwrap_or_default(),
            exit,
            error,
            "Message exit not confirmed; the server will deliver it again"
        );
    }

    fn remember_attempt(&self, stream_seq: u64, delivered: i64, error: &str) {
        let attempt = Attempt {
            delivered,
            at: Utc::now(),
            error: error.to_owned(),
        };
        let mut attempts = self
            .attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if attempts.len() >= ATTEMPT_MEMORY && !attempts.contains_key(&stream_seq) {
            // The oldest message is the likeliest to have been handled by another worker.
            attempts.pop_first();
        }
        let list = attempts.entry(stream_seq).or_default();
        list.push(attempt);
        if list.len() > ATTEMPTS_PER_MESSAGE {
            list.remove(0);
        }
    }

    fn forget_attempts(&self, stream_seq: u64) -> Vec<Attempt> {
        let mut attempts = self
            .attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        attempts.remove(&stream_seq).unwrap_or_default()
    }

    /// Naks the messages already delivered to this worker that no handler started, so another
    /// worker gets them now rather than after `ack_wait`.
    async fn release_buffered(&self, mut stream: pull::Stream) {
        while let Some(Some(Ok(message))) = stream.next().now_or_never() {
            if message.ack_with(AckKind::Nak(None)).await.is_ok() {
                WorkerStats::count(&self.stats.released);
            }
        }
    }

    async fn drain(&self, mut tasks: JoinSet<()>) {
        if !tasks.is_empty() {
            info!(stage = %self.stage, in_flight = tasks.len(), "Waiting for in-flight messages");
        }
        let deadline = tokio::time::sleep(self.pull.shutdown_deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(result) => log_join(self.stage, result),
                    None => return,
                },
                _ = &mut deadline => break,
            }
        }
        let abandoned = tasks.len();
        self.stats
            .abandoned
            .fetch_add(abandoned as u64, Ordering::Relaxed);
        warn!(
            stage = %self.stage,
            abandoned,
            "Shutdown deadline passed; abandoning in-flight messages"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Decides a message's exit. `max_deliver` below 1 means unlimited deliveries.
fn exit_for(result: HandlerResult, delivered: i64, max_deliver: i64, pull: &PullConfig) -> Exit {
    let last = max_deliver > 0 && delivered >= max_deliver;
    let backoff = pull.retry_delay(delivered);
    match result {
        HandlerResult::Handled(Outcome::Ack) => Exit::Ack,
        HandlerResult::Handled(Outcome::DeadLetter { kind, message }) => Exit::DeadLetter {
            kind,
            reason: message,
        },
        HandlerResult::Handled(Outcome::Retry { delay, error }) => {
            if last {
                let reason = format!("gave up after {delivered} deliveries: {error}");
                Exit::DeadLetter {
                    kind: ReasonKind::MaxDeliveries,
                    reason,
                }
            } else {
                Exit::Nak {
                    delay: delay.unwrap_or(backoff),
                    error,
                }
            }
        }
        HandlerResult::TimedOut => {
            let error = format!("handler did not finish within {:?}", pull.handler_timeout);
            if last {
                let reason = format!("gave up after {delivered} deliveries: {error}");
                Exit::DeadLetter {
                    kind: ReasonKind::MaxDeliveries,
                    reason,
                }
            } else {
                Exit::Nak {
                    delay: backoff,
                    error,
                }
            }
        }
        HandlerResult::Panicked(panic) => {
            let error = format!("handler panicked: {panic}");
            if last {
                Exit::DeadLetter {
                    kind: ReasonKind::PoisonMessage,
                    reason: error,
                }
            } else {
                Exit::Nak {
                    delay: backoff,
                    error,
                }
            }
        }
    }
}

/// The stored time as chrono's; `None` before 1970, which no server stores. Going through
/// `SystemTime` works whichever time type async-nats was built with (its `chrono` feature swaps
/// it for the whole build).
fn stored_time(published: async_nats::datetime::DateTime) -> Option<DateTime<Utc>> {
    let since_epoch = SystemTime::from(published)
        .duration_since(UNIX_EPOCH)
        .ok()?;
    let secs = i64::try_from(since_epoch.as_secs()).ok()?;
    DateTime::from_timestamp(secs, since_epoch.subsec_nanos())
}

fn ends_the_stream(kind: MessagesErrorKind) -> bool {
    matches!(
        kind,
        MessagesErrorKind::ConsumerDeleted
            | MessagesErrorKind::PushBasedConsumer
            | MessagesErrorKind::RequestLimitExceeded
    )
}

fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        if let Err(err) = result {
            error!(error = %err, "Message task failed");
        }
    }
}

fn log_join(stage: Stage, result: Result<(), tokio::task::JoinError>) {
    if let Err(err) = result {
        error!(stage = %stage, error = %err, "Message task failed");
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull() -> PullConfig {
        PullConfig::default()
    }

    #[test]
    fn ack_and_dead_letter_outcomes_pass_through() {
        assert_eq!(
            exit_for(HandlerResult::Handled(Outcome::Ack), 1, 5, &pull()),
            Exit::Ack
        );
        let outcome = Outcome::dead_letter(ReasonKind::LookupNotFound, "no customer");
        assert_eq!(
            exit_for(HandlerResult::Handled(outcome), 1, 5, &pull()),
            Exit::DeadLetter {
                kind: ReasonKind::LookupNotFound,
                reason: "no customer".into()
            }
        );
    }

    #[test]
    fn a_retry_waits_the_handlers_delay_or_the_backoff_for_its_delivery() {
        let asked = Outcome::retry_after(Duration::from_secs(7), "rate limited");
        assert_eq!(
            exit_for(HandlerResult::Handled(asked), 1, 5, &pull()),
            Exit::Nak {
                delay: Duration::from_secs(7),
                error: "rate limited".into()
            }
        );
        let plain = Outcome::retry("timeout");
        assert_eq!(
            exit_for(HandlerResult::Handled(plain), 3, 5, &pull()),
            Exit::Nak {
                delay: Duration::from_secs(30),
                error: "timeout".into()
            }
        );
    }

    #[test]
    fn a_retry_on_the_last_delivery_is_dead_lettered_instead() {
        let exit = exit_for(
            HandlerResult::Handled(Outcome::retry("timeout")),
            5,
            5,
            &pull(),
        );
        assert_eq!(
            exit,
            Exit::DeadLetter {
                kind: ReasonKind::MaxDeliveries,
                reason: "gave up after 5 deliveries: timeout".into()
            }
        );
        // Unlimited deliveries never give up.
        let exit = exit_for(
            HandlerResult::Handled(Outcome::retry("timeout")),
            500,
            -1,
            &pull(),
        );
        assert!(matches!(exit, Exit::Nak { .. }));
    }

    #[test]
    fn a_panicking_handler_is_retried_then_poison() {
        let early = exit_for(HandlerResult::Panicked("boom".into()), 1, 3, &pull());
        assert!(
            matches!(early, Exit::Nak { ref error, .. } if error.contains("boom")),
            "{early:?}"
        );
        let last = exit_for(HandlerResult::Panicked("boom".into()), 3, 3, &pull());
        assert!(matches!(
            last,
            Exit::DeadLetter {
                kind: ReasonKind::PoisonMessage,
                ..
            }
        ));
    }

    #[test]
    fn a_handler_that_times_out_is_retried() {
        let exit = exit_for(HandlerResult::TimedOut, 1, 3, &pull());
        assert!(matches!(exit, Exit::Nak { ref error, .. } if error.contains("did not finish")));
    }
}
