//! The transformer: raw 旺店通 orders from the `transformer` consumer in, 星辰 bill payloads out
//! on the bills subject, with master data resolved through the cache every transformer shares.
//!
//! [`run`] is the whole worker: it serves `/metrics`, `/healthz` and `/readyz`, connects to NATS,
//! makes sure the topology exists, checks the 星辰 credentials (readiness `xingchen` stays false
//! until they work, retried with backoff), writes a heartbeat, and runs a
//! [`pipeline::worker::Worker`] with the [`handler::TransformHandler`] until the shutdown token
//! is cancelled; in-flight messages then reach their exit within the shutdown deadline.
//!
//! The modules split the work: [`handler`] takes one message to its exit, [`resolve`] answers
//! lookups from the cache or 星辰, [`problems`] words the dead letters of orders the scheme cannot
//! map, [`sync`] refreshes the whole cache from 星辰's lists (`bridge masterdata sync`), and
//! [`heartbeat`] tells `bridge status` the worker is alive. The mapping itself is the `scheme`
//! crate's, the consumer loop the `pipeline` crate's.

pub mod config;
pub mod handler;
pub mod heartbeat;
pub mod problems;
pub mod resolve;
pub mod sync;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::heartbeat::{Heartbeat, Identity};
use pipeline::masterdata::MasterDataCache;
use pipeline::retry::Backoff;
use pipeline::worker::{RunReport, Worker};
use pipeline::{Stage, Topology};
use scheme::Scheme;
use telemetry::health::{HealthServer, Readiness};
use telemetry::metrics::{self, ApiEndpoint, ApiOutcome};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::TransformerConfig;
pub use handler::TransformHandler;
pub use resolve::{LookupError, Resolver};
pub use sync::{CollectionSync, SyncError, SyncReport, sync_masterdata};

/// The readiness checks the transformer registers.
pub const READINESS_CHECKS: [&str; 3] = ["nats", "consumer", "xingchen"];

/// Longest wait between two tries of the 星辰 credentials or the topology.
const MAX_START_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A started transformer, about to consume.
pub struct Transformer {
    worker: Worker<TransformHandler>,
    health: HealthServer,
    readiness: Readiness,
    background: JoinSet<()>,
    stop_background: CancellationToken,
    stop_health: CancellationToken,
    client: async_nats::Client,
}

/// Runs the transformer until `shutdown` is cancelled, and reports what its worker did.
pub async fn run(
    config: TransformerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    let transformer = tokio::select! {
        started = Transformer::start(config) => started?,
        _ = shutdown.cancelled() => {
            info!("Shutdown requested before the transformer started");
            return Ok(RunReport::default());
        }
    };
    transformer.run(shutdown).await
}

impl Transformer {
    /// Starts everything but the consumption: health server, NATS, topology, 星辰 check,
    /// heartbeat. Waits for NATS as long as it takes.
    pub async fn start(config: TransformerConfig) -> anyhow::Result<Transformer> {
        config.validate()?;
        let scheme = Arc::new(load_scheme(&config)?);
        let readiness = Readiness::with_checks(READINESS_CHECKS);
        let stop_health = CancellationToken::new();
        let health = HealthServer::start(
            config.metrics_listen(),
            prometheus_handle(),
            readiness.clone(),
            stop_health.clone().cancelled_owned(),
        )
        .await
        .context("start the health server")?;
        info!(addr = %health.local_addr(), "Serving /metrics, /healthz and /readyz");

        let client = pipeline::connect(&config.nats)
            .await
            .context("connect to NATS")?;
        readiness.set("nats", true);
        let jetstream = async_nats::jetstream::new(client.clone());
        let topology = ensure_topology(&jetstream, &config).await?;
        let xingchen = budgeted_client(&config.xingchen, &config.budget, &topology)
            .context("configure the 星辰 client")?;

        let cache = MasterDataCache::new(topology.masterdata.clone(), config.miss_ttl);
        let resolver = Resolver::new(cache, xingchen.clone(), config.lookup_concurrency);
        let handler = TransformHandler::new(
            scheme,
            resolver.clone(),
            topology.jetstream.clone(),
            topology.names.clone(),
            config.topology.max_deliver,
        );
        let handler_counts = handler.counts();
        let spec = topology
            .worker_spec(Stage::Transform, &config.pull)
            .context("the transform stage has a consumer")?;
        let worker = Worker::new(spec, handler);
        readiness.set("consumer", true);

        let stop_background = CancellationToken::new();
        let mut background = JoinSet::new();
        background.spawn(check_xingchen(
            xingchen,
            readiness.clone(),
            stop_background.clone(),
        ));
        let identity = Identity::of_this_process(
            Stage::Transform,
            Some(&config.instance()),
            env!("CARGO_PKG_VERSION"),
        );
        let beats = Heartbeat::new(topology.workers.clone(), identity)
            .watching(client.clone(), readiness.clone());
        let sources = heartbeat::Sources {
            worker: worker.stats(),
            handler: handler_counts,
            lookups: resolver.counts(),
            consumer: topology.transformer.clone(),
        };
        background.spawn(beats.run(config.heartbeat_interval, sources, stop_background.clone()));

        Ok(Transformer {
            worker,
            health,
            readiness,
            background,
            stop_background,
            stop_health,
            client,
        })
    }

    /// The address `/metrics`, `/healthz` and `/readyz` are served on.
    pub fn health_addr(&self) -> SocketAddr {
        self.health.local_addr()
    }

    /// The readiness checks `/readyz` reports.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Consumes until `shutdown` is cancelled, drains, stops the rest, and reports.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<RunReport> {
        let report = self.worker.run(shutdown).await;

        self.stop_background.cancel();
        while let Some(joined) = self.background.join_next().await {
            if let Err(error) = joined {
                warn!(error = %error, "Background task failed");
            }
        }
        if let Err(error) = self.client.flush().await {
            warn!(error = %error, "NATS client could not flush at shutdown");
        }
        self.stop_health.cancel();
        if let Err(error) = self.health.wait().await {
            warn!(error = %error, "Health server stopped with an error");
        }
        info!(?report, "Transformer stopped");
        Ok(report)
    }
}

fn load_scheme(config: &TransformerConfig) -> anyhow::Result<Scheme> {
    let scheme = match &config.scheme {
        Some(path) => Scheme::load(path)?,
        None => Scheme::builtin(),
    };
    info!(
        scheme = scheme.origin(),
        fingerprint = scheme.fingerprint(),
        "Scheme loaded"
    );
    Ok(scheme)
}

/// The process's Prometheus recorder, installed by the first transformer that starts; `None`
/// when another recorder was installed first (another worker in the same test process).
fn prometheus_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match telemetry::metrics::install() {
            Ok(handle) => Some(handle),
            Err(error) => {
                warn!(error = %error, "Metrics recorder not installed; /metrics answers 404");
                None
            }
        })
        .clone()
}

/// Creates or checks the topology, retrying while JetStream is briefly unavailable.
async fn ensure_topology(
    jetstream: &async_nats::jetstream::Context,
    config: &TransformerConfig,
) -> anyhow::Result<Topology> {
    let mut pause = Backoff::new(Duration::from_millis(200), MAX_START_RETRY_DELAY);
    loop {
        match pipeline::ensure_topology(jetstream, &config.topology).await {
            Ok(topology) => return Ok(topology),
            Err(error) if error.is_transient() => {
                let delay = pause.next_delay();
                warn!(error = %error, delay_ms = delay.as_millis() as u64, "Topology not ready");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("create the topology"),
        }
    }
}

/// Authorises once against 星辰, retrying with backoff while it fails; `xingchen` readiness is
/// false until it succeeds.
async fn check_xingchen(client: xingchen::Client, readiness: Readiness, stop: CancellationToken) {
    let mut pause = Backoff::new(Duration::from_secs(1), MAX_START_RETRY_DELAY);
    loop {
        let started = std::time::Instant::now();
        let attempt = tokio::select! {
            _ = stop.cancelled() => return,
            attempt = client.authorize() => attempt,
        };
        let outcome = ApiOutcome::of(&attempt, xingchen::Error::is_transient);
        metrics::api_call(ApiEndpoint::XingchenAuthorize, outcome, started.elapsed());
        match attempt {
            Ok(_) => {
                readiness.set("xingchen", true);
                info!("星辰 credentials accepted");
                return;
            }
            Err(failure) => {
                let delay = pause.next_delay();
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                if failure.is_transient() {
                    warn!(error = %failure, delay_ms, "星辰 unreachable; checking again later");
                } else {
                    error!(error = %failure, delay_ms, "星辰 refused the credentials; trying again");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
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
