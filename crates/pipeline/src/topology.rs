//! Creating the bridge's streams, consumers and KV buckets, idempotently, at every start-up.
//!
//! [`ensure_topology`] creates what is missing and updates what exists to match the
//! configuration, so calling it twice, or from three workers starting at once, succeeds and
//! converges on one topology:
//!
//! * `BRIDGE_ORDERS_RAW` on `bridge.orders.raw` and `BRIDGE_BILLS` on `bridge.bills`: file
//!   storage, limits retention (acknowledged messages stay until `max_age`, for audit and
//!   replay), `max_bytes` with discard-new (a full stream refuses publishes rather than drop
//!   unread messages), and the `duplicate_window` within which a repeated `Nats-Msg-Id` is
//!   dropped;
//! * `BRIDGE_DLQ` on `bridge.dlq.>`, kept for `dlq_max_age`;
//! * durable pull consumers `transformer` (on raw orders) and `loader` (on bills) with explicit
//!   acks, `ack_wait`, `max_deliver` and `max_ack_pending` from the configuration. The consumers
//!   carry no server-side backoff: JetStream would then replace `ack_wait` by its first step, and
//!   nak delays are the worker's to choose ([`crate::PullConfig::backoff`]);
//! * buckets `bridge_cursor` (history 10), `bridge_masterdata` (entries expire after
//!   `masterdata_max_age`), `bridge_ledger` (history 5, never expires), `bridge_workers`
//!   (heartbeats, expire after a minute) and `bridge_budget` (the shared 星辰 request budget,
//!   history 1, file storage so that a restarted server does not refill every bucket).
//!
//! Every stream and bucket has `replicas` copies. What goes into them is left to the modules
//! that own each one.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use tracing::{info, warn};

use crate::config::{ConfigError, PullConfig, TopologyConfig};
use crate::dead_letter::DeadLetterPublisher;
use crate::names::{LOADER_CONSUMER, Names, Stage, TRANSFORMER_CONSUMER};
use crate::publisher::Publisher;
use crate::worker::WorkerSpec;

/// Tries per stream or bucket; a second try settles the race of two creators at once.
const CREATE_TRIES: usize = 3;
/// Revisions kept per cursor key, so an operator can see how it moved.
const CURSOR_HISTORY: i64 = 10;
/// Revisions kept per ledger key.
const LEDGER_HISTORY: i64 = 5;
/// Age after which a worker heartbeat disappears.
const WORKER_HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(60);

/// A part of the topology that could not be created or updated.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The configuration cannot work.
    #[error("topology configuration: {0}")]
    Config(#[from] ConfigError),
    /// A stream could not be created or updated.
    #[error("stream {name}: {source}")]
    Stream {
        /// The stream.
        name: String,
        /// The server's or client's error.
        source: jetstream::context::CreateStreamError,
    },
    /// A consumer could not be created or updated.
    #[error("consumer {name} on stream {stream}: {source}")]
    Consumer {
        /// The consumer.
        name: String,
        /// Its stream.
        stream: String,
        /// The server's or client's error.
        source: jetstream::stream::ConsumerError,
    },
    /// A bucket could not be created or updated.
    #[error("bucket {name}: {source}")]
    Bucket {
        /// The bucket.
        name: String,
        /// The server's or client's error.
        source: jetstream::context::CreateKeyValueError,
    },
}

impl TopologyError {
    /// A timeout or an unavailable JetStream may pass; a refused configuration (for instance a
    /// stream that exists with settings that cannot be changed) needs an operator.
    pub fn is_transient(&self) -> bool {
        use jetstream::context::{CreateKeyValueErrorKind, CreateStreamErrorKind};
        match self {
            TopologyError::Config(_) => false,
            TopologyError::Stream { source, .. } => matches!(
                source.kind(),
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
            ),
            TopologyError::Consumer { source, .. } => {
                matches!(
                    source.kind(),
                    jetstream::stream::ConsumerErrorKind::TimedOut
                )
            }
            TopologyError::Bucket { source, .. } => {
                matches!(source.kind(), CreateKeyValueErrorKind::TimedOut)
            }
        }
    }
}

/// Handles on everything [`ensure_topology`] made.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The names in use.
    pub names: Names,
    /// The JetStream context they were made with.
    pub jetstream: Context,
    /// The transformer's durable consumer on raw orders.
    pub transformer: PullConsumer,
    /// The loader's durable consumer on bills.
    pub loader: PullConsumer,
    /// The extractor's cursor bucket.
    pub cursor: kv::Store,
    /// The master-data cache bucket.
    pub masterdata: kv::Store,
    /// The ledger bucket.
    pub ledger: kv::Store,
    /// The worker heartbeat bucket.
    pub workers: kv::Store,
    /// The shared request budget's bucket ([`crate::budget`]).
    pub budget: kv::Store,
}

impl Topology {
    /// A publisher on this topology's JetStream context.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.jetstream.clone())
    }

    /// A publisher of dead letters on this topology's dead-letter subjects.
    pub fn dead_letters(&self) -> DeadLetterPublisher {
        DeadLetterPublisher::new(self.publisher(), self.names.clone())
    }

    /// What [`crate::worker::Worker`] needs to run `stage`; `None` for the extractor, which
    /// consumes no stream.
    pub fn worker_spec(&self, stage: Stage, pull: &PullConfig) -> Option<WorkerSpec> {
        let consumer = match stage {
            Stage::Extract => return None,
            Stage::Transform => self.transformer.clone(),
            Stage::Load => self.loader.clone(),
        };
        Some(WorkerSpec {
            stage,
            consumer,
            jetstream: self.jetstream.clone(),
            dead_letters: self.dead_letters(),
            pull: pull.clone(),
        })
    }
}

/// Creates or updates every stream, consumer and bucket `config` describes.
pub async fn ensure_topology(
    jetstream: &Context,
    config: &TopologyConfig,
) -> Result<Topology, TopologyError> {
    config.validate()?;
    let names = config.names()?;

    let raw_orders = work_stream(
        config,
        names.raw_orders_stream(),
        names.raw_orders_subject(),
    );
    ensure_stream(jetstream, raw_orders).await?;
    ensure_stream(
        jetstream,
        work_stream(config, names.bills_stream(), names.bills_subject()),
    )
    .await?;
    ensure_stream(jetstream, dlq_stream(config, &names)).await?;

    let transformer = ensure_consumer(
        jetstream,
        config,
        &names.raw_orders_stream(),
        TRANSFORMER_CONSUMER,
        names.raw_orders_subject(),
    )
    .await?;
    let loader = ensure_consumer(
        jetstream,
        config,
        &names.bills_stream(),
        LOADER_CONSUMER,
        names.bills_subject(),
    )
    .await?;

    let topology = Topology {
        cursor: ensure_bucket(
            jetstream,
            bucket(config, names.cursor_bucket(), CURSOR_HISTORY),
        )
        .await?,
        masterdata: ensure_bucket(jetstream, masterdata_bucket(config, &names)).await?,
        ledger: ensure_bucket(
            jetstream,
            bucket(config, names.ledger_bucket(), LEDGER_HISTORY),
        )
        .await?,
        workers: ensure_bucket(jetstream, workers_bucket(config, &names)).await?,
        budget: ensure_bucket(jetstream, bucket(config, names.budget_bucket(), 1)).await?,
        names,
        jetstream: jetstream.clone(),
        transformer,
        loader,
    };
    info!(prefix = topology.names.prefix(), "Topology ready");
    Ok(topology)
}

fn work_stream(config: &TopologyConfig, name: String, subject: String) -> stream::Config {
    stream::Config {
        description: Some(format!("wdt-xingchen-bridge: {subject}")),
        name,
        subjects: vec![subject],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: config.max_age,
        max_bytes: config.max_bytes,
        discard: DiscardPolicy::New,
        duplicate_window: config.duplicate_window,
        num_replicas: config.replicas,
        ..stream::Config::default()
    }
}

fn dlq_stream(config: &TopologyConfig, names: &Names) -> stream::Config {
    stream::Config {
        description: Some("wdt-xingchen-bridge: dead letters".to_owned()),
        name: names.dlq_stream(),
        subjects: vec![names.dlq_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: config.dlq_max_age,
        duplicate_window: config.duplicate_window,
        num_replicas: config.replicas,
        ..stream::Config::default()
    }
}

async fn ensure_stream(jetstream: &Context, config: stream::Config) -> Result<(), TopologyError> {
    let mut tries = 1;
    loop {
        match jetstream.create_or_update_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            // Two creators can both see the stream missing and both create it; the loser's
            // update on the next try then finds it and succeeds.
            Err(err) if tries < CREATE_TRIES => {
                warn!(stream = %config.name, error = %err, "Stream create raced; trying again");
                tries += 1;
            }
            Err(source) => {
                return Err(TopologyError::Stream {
                    name: config.name,
                    source,
                });
            }
        }
    }
}

async fn ensure_consumer(
    jetstream: &Context,
    config: &TopologyConfig,
    stream: &str,
    name: &str,
    subject: String,
) -> Result<PullConsumer, TopologyError> {
    let consumer = pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(format!("wdt-xingchen-bridge {name}")),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
        filter_subject: subject,
        num_replicas: config.replicas,
        ..pull::Config::default()
    };
    // The create request is "create or update" on the server, which is idempotent.
    jetstream
        .create_consumer_on_stream(consumer, stream)
        .await
        .map_err(|source| TopologyError::Consumer {
            name: name.to_owned(),
            stream: stream.to_owned(),
            source,
        })
}

fn bucket(config: &TopologyConfig, name: String, history: i64) -> kv::Config {
    kv::Config {
        description: format!("wdt-xingchen-bridge {name}"),
        bucket: name,
        history,
        storage: StorageType::File,
        num_replicas: config.replicas,
        ..kv::Config::default()
    }
}

fn masterdata_bucket(config: &TopologyConfig, names: &Names) -> kv::Config {
    kv::Config {
        max_age: config.masterdata_max_age,
        ..bucket(config, names.masterdata_bucket(), 1)
    }
}

fn workers_bucket(config: &TopologyConfig, names: &Names) -> kv::Config {
    kv::Config {
        max_age: WORKER_HEARTBEAT_MAX_AGE,
        ..bucket(config, names.workers_bucket(), 1)
    }
}

async fn ensure_bucket(
    jetstream: &Context,
    config: kv::Config,
) -> Result<kv::Store, TopologyError> {
    let mut tries = 1;
    loop {
        match jetstream.create_or_update_key_value(config.clone()).await {
            Ok(store) => return Ok(store),
            Err(err) if tries < CREATE_TRIES => {
                warn!(bucket = %config.bucket, error = %err, "Bucket create raced; trying again");
                tries += 1;
            }
            Err(source) => {
                return Err(TopologyError::Bucket {
                    name: config.bucket,
                    source,
                });
            }
        }
    }
}
