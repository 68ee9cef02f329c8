//! The bridge's loader: it takes bill payloads from the `loader` consumer and posts them to
//! 金蝶云星辰 (`jdy/sal/sal_outbound_save`), so that every order becomes exactly one bill with the
//! order's latest content, however often its message arrives, in whatever order, and whatever
//! crashes in between.
//!
//! [`run`] connects to NATS, ensures the topology, checks the 星辰 credentials (retrying while
//! they are refused), and runs a [`pipeline::worker::Worker`] whose [`handler::LoadHandler`]
//! loads each bill through [`load::Loader`]: it consults the ledger in KV (one entry per order:
//! the bill id and number, the payload's hash, the order's `modified`, when it was loaded),
//! creates, modifies or skips the bill, and records what it did before the message is acked.
//! Beside the work it serves `/metrics`, `/healthz` and `/readyz` (checks `nats`, `consumer`,
//! `xingchen`), writes a heartbeat to the workers bucket ([`heartbeat`]) and keeps the consumer's
//! backlog gauges (pending, ack pending) as JetStream reports them.
//!
//! The bill's content is the transformer's; the consumer loop, the ledger's storage and the
//! dead-letter format are [`pipeline`]'s; the HTTP calls are [`xingchen`]'s.

pub mod config;
pub mod content;
pub mod handler;
pub mod heartbeat;
pub mod load;
pub mod locks;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::connection::State;
use async_nats::jetstream::consumer::PullConsumer;
use pipeline::ledger::Ledger;
use pipeline::retry::Backoff;
use pipeline::worker::{RunReport, Worker};
use pipeline::{Stage, Topology};
use telemetry::health::{HealthServer, Readiness};
use telemetry::metrics::{self, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use config::LoaderConfig;
pub use load::{Incoming, LoadError, Loaded, Loader, XINGCHEN_CHECK};
pub use stats::{LoadCounts, LoadStats};

/// The loader's `service.name` unless configured otherwise.
pub const SERVICE_NAME: &str = "loader";

/// The readiness check that says the NATS connection is up.
pub const NATS_CHECK: &str = "nats";

/// The readiness check that says the loader's consumer is bound and pulled from.
pub const CONSUMER_CHECK: &str = "consumer";

/// How often the NATS connection state is looked at for readiness.
const CONNECTION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a loader did between its start and its shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The consumer loop's exits.
    pub worker: RunReport,
    /// What the loads did.
    pub loads: LoadCounts,
}

/// Runs the loader until `shutdown` is cancelled, then lets in-flight bills reach their exit
/// within the shutdown deadline. Fails only on what retrying cannot fix: an invalid
/// configuration, a health address in use, refused NATS credentials, a topology NATS refuses.
pub async fn run(config: LoaderConfig, shutdown: CancellationToken) -> anyhow::Result<LoadReport> {
    config.validate()?;
    let readiness = Readiness::with_checks([NATS_CHECK, CONSUMER_CHECK, XINGCHEN_CHECK]);
    let serving = CancellationToken::new();
    let health = HealthServer::start(
        config.metrics_listen(),
        stats::metrics_handle(),
        readiness.clone(),
        serving.clone().cancelled_owned(),
    )
    .await
    .context("start the health server")?;
    info!(addr = %health.local_addr(), "Health server listening");

    let result = work(&config, &readiness, &shutdown).await;

    serving.cancel();
    if let Err(error) = health.wait().await {
        warn!(error = %error, "Health server stopped with an error");
    }
    result
}

async fn work(
    config: &LoaderConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> anyhow::Result<LoadReport> {
    let identity = heartbeat::identity(config.instance_id.as_deref());
    let mut nats_config = config.nats.clone();
    nats_config.client_name = Some(format!("loader {}", identity.instance));
    let connected = tokio::select! {
        _ = shutdown.cancelled() => return Ok(LoadReport::default()),
        connected = pipeline::connect(&nats_config) => connected,
    };
    let client = connected.context("connect to NATS")?;
    let watching = CancellationToken::new();
    let watcher = tokio::spawn(watch_connection(
        client.clone(),
        readiness.clone(),
        watching.clone(),
    ));

    let result = serve(config, readiness, shutdown, client, identity).await;
    watching.cancel();
    let _ = watcher.await;
    result
}

async fn serve(
    config: &LoaderConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
    client: async_nats::Client,
    identity: pipeline::heartbeat::Identity,
) -> anyhow::Result<LoadReport> {
    let jetstream = async_nats::jetstream::new(client);
    let Some(topology) = ensure_topology(&jetstream, config, shutdown).await? else {
        return Ok(LoadReport::default());
    };
    let xingchen = budgeted_client(&config.xingchen, &config.budget, &topology)
        .context("build 星辰 client")?;
    if !authorize(&xingchen, readiness, shutdown).await {
        return Ok(LoadReport::default());
    }

    let stats = Arc::new(LoadStats::default());
    let ledger = Ledger::new(topology.ledger.clone());
    let loader = Loader::new(xingchen, ledger, Arc::clone(&stats), readiness.clone());
    let max_deliver = topology.loader.cached_info().config.max_deliver;
    let handler = handler::LoadHandler::new(loader, Arc::clone(&stats), max_deliver);
    let spec = topology
        .worker_spec(Stage::Load, &config.pull)
        .context("the load stage has a consumer")?;
    let worker = Worker::new(spec, handler);
    readiness.set(CONSUMER_CHECK, true);

    let beating = CancellationToken::new();
    let sources = heartbeat::Sources {
        worker: worker.stats(),
        loads: Arc::clone(&stats),
    };
    let beats = pipeline::heartbeat::Heartbeat::new(topology.workers.clone(), identity);
    let heartbeat = tokio::spawn(beats.run(config.heartbeat_interval, sources, beating.clone()));
    let backlog = tokio::spawn(watch_backlog(
        topology.loader.clone(),
        config.heartbeat_interval,
        beating.clone(),
    ));
    let report = worker.run(shutdown.clone()).await;
    readiness.set(CONSUMER_CHECK, false);
    beating.cancel();
    let _ = heartbeat.await;
    let _ = backlog.await;

    Ok(LoadReport {
        worker: report,
        loads: stats.snapshot(),
    })
}

/// Ensures the topology, retrying while NATS cannot answer; `None` when shutdown came first.
async fn ensure_topology(
    jetstream: &async_nats::jetstream::Context,
    config: &LoaderConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Topology>> {
    let mut pause = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let ensured = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            ensured = pipeline::ensure_topology(jetstream, &config.topology) => ensured,
        };
        match ensured {
            Ok(topology) => return Ok(Some(topology)),
            Err(error) if error.is_transient() => {
                let delay = pause.next_delay();
                warn!(error = %error, delay_ms = millis(delay), "Topology not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(error) => return Err(error).context("ensure the topology"),
        }
    }
}

/// Asks 星辰 for the account set until it answers; false when shutdown came first.
async fn authorize(
    client: &xingchen::Client,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            _ = shutdown.cancelled() => return false,
            result = client.authorize() => result,
        };
        stats::api_call(xingchen::AUTHORIZE_PATH, &result, started.elapsed());
        let error = match result {
            Ok(account) => {
                readiness.set(XINGCHEN_CHECK, true);
                info!(account_id = %account.account_id, "星辰 credentials accepted");
                return true;
            }
            Err(error) => error,
        };
        readiness.set(XINGCHEN_CHECK, false);
        let delay = pause.next_delay();
        warn!(error = %error, delay_ms = millis(delay), "星辰 authorisation failed; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Keeps the `nats` readiness check in step with the connection until `stop` is cancelled.
async fn watch_connection(
    client: async_nats::Client,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(CONNECTION_CHECK_INTERVAL);
    loop {
        readiness.set(NATS_CHECK, client.connection_state() == State::Connected);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
    }
}

/// Sets the consumer's backlog gauges from JetStream every `interval` until `stop` is cancelled.
async fn watch_backlog(mut consumer: PullConsumer, interval: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match consumer.info().await {
            Ok(info) => metrics::consumer_backlog(
                Consumer::Loader,
                info.num_pending,
                u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
            ),
            Err(error) => debug!(error = %error, "Consumer info unavailable"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The 星辰 client, spending the account set's request budget that every replica of every
/// worker shares through JetStream KV, so adding a replica never adds 429s.
fn budgeted_client(
    xingchen_config: &xingchen::XingchenConfig,
    budget_config: &pipeline::BudgetConfig,
    topology: &pipeline::Topology,
) -> anyhow::Result<xingchen::Client> {
    let budget = pipeline::SharedBudget::start(
        topology.budget.clone(),
        &xingchen_config.budget_key(),
        xingchen_config.requests_per_minute,
        budget_config,
    )?;
    let limit = xingchen::RateLimitFn::new(move || budget.acquire_owned());
    Ok(xingchen::Client::with_rate_limit(
        xingchen_config.clone(),
        std::sync::Arc::new(limit),
    )?)
}
