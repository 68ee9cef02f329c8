//! The extractor: reads 旺店通 stock-out orders window by window and publishes each one, raw, to
//! the `BRIDGE_ORDERS_RAW` stream.
//!
//! Two commands share one machinery. `extractor run` syncs continuously over a cursor in KV
//! ([`sync`]); `extractor backfill --from … --to …` reads one range once and leaves the cursor
//! alone. Both connect to NATS, make sure the topology exists, turn the scheme's `[source]`
//! into the WDT query ([`source`]), and read and publish through [`extract`], which turns each
//! order into one message ([`order`]) and returns only once the stream has acknowledged them.
//! `run` also serves `/metrics`, `/healthz` and `/readyz` and writes a heartbeat
//! ([`heartbeat`]); both count what they do in [`stats`]. The flags are [`config`]'s; the
//! binary only parses them, sets up telemetry and the signal, and calls [`run`].

pub mod config;
pub mod extract;
pub mod heartbeat;
pub mod order;
pub mod source;
pub mod stats;
pub mod sync;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::cursor::CursorStore;
use pipeline::retry::Backoff;
use pipeline::{Topology, TopologyConfig};
use scheme::Scheme;
use telemetry::health::{HealthServer, Readiness};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wdt::{WdtClient, WindowReader, format_wdt_time};

pub use config::{BackfillArgs, RunArgs, Settings};
pub use extract::{ExtractError, Extraction};
pub use stats::{Counts, Stats, Summary};

/// The extractor's commands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Sync continuously: a window every interval, from the cursor to now minus the lag.
    Run {
        /// What both commands share.
        #[command(flatten)]
        settings: Box<Settings>,
        /// How the windows move.
        #[command(flatten)]
        args: RunArgs,
    },
    /// Read one range once and exit when every order is acknowledged; the cursor is untouched.
    Backfill {
        /// What both commands share.
        #[command(flatten)]
        settings: Box<Settings>,
        /// The range.
        #[command(flatten)]
        args: BackfillArgs,
    },
}

impl Command {
    /// The shared settings.
    pub fn settings(&self) -> &Settings {
        match self {
            Command::Run { settings, .. } | Command::Backfill { settings, .. } => settings,
        }
    }
}

/// Runs `command` until it is done or `shutdown` is cancelled.
pub async fn run(command: Command, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    match command {
        Command::Run { settings, args } => Extractor::new(*settings)?.run(args, shutdown).await,
        Command::Backfill { settings, args } => {
            Extractor::new(*settings)?.backfill(args, shutdown).await
        }
    }
}

/// One extractor process: its settings, its WDT reader and its counts.
pub struct Extractor {
    settings: Settings,
    reader: WindowReader,
    query: source::Query,
    stats: Arc<Stats>,
    instance: String,
}

impl Extractor {
    /// Checks the settings, loads the scheme and builds the WDT client; nothing is contacted yet.
    pub fn new(settings: Settings) -> anyhow::Result<Extractor> {
        settings.validate()?;
        let scheme = match &settings.scheme {
            Some(path) => {
                Scheme::load(path).with_context(|| format!("load the scheme {}", path.display()))?
            }
            None => Scheme::builtin(),
        };
        let query = source::query(scheme.source(), settings.wdt.page_size)?;
        let mut wdt = settings.wdt.clone();
        wdt.page_size = query.page_size;
        let reader = WindowReader::new(WdtClient::new(wdt).context("configure the wdt client")?);
        info!(
            scheme = scheme.name(),
            basis = ?query.filter.basis,
            status = query.filter.status,
            page_size = query.page_size,
            "Query from the scheme's source"
        );
        Ok(Extractor {
            instance: settings.instance(),
            settings,
            reader,
            query,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The counts, shared with the running commands.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// `extractor run`: syncs until `shutdown`, serving health and writing heartbeats.
    pub async fn run(self, args: RunArgs, shutdown: CancellationToken) -> anyhow::Result<Summary> {
        let settings = &self.settings;
        args.validate(
            settings.wdt.max_window_days,
            settings.topology.duplicate_window,
        )?;
        let readiness = Readiness::with_checks([heartbeat::NATS_READY, sync::WDT_READY]);
        let served = CancellationToken::new();
        let health = HealthServer::start(
            self.settings.metrics_listen(),
            prometheus(),
            readiness.clone(),
            served.clone().cancelled_owned(),
        )
        .await
        .context("serve metrics and health")?;
        info!(addr = %health.local_addr(), "Serving /metrics, /healthz and /readyz");

        let outcome = self.sync(args, readiness, &shutdown).await;
        served.cancel();
        if let Err(error) = health.wait().await {
            warn!(error = %error, "Health server stopped with an error");
        }
        outcome
    }

    async fn sync(
        &self,
        args: RunArgs,
        readiness: Readiness,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Summary> {
        let Some((client, topology)) = self.connect(shutdown).await? else {
            return Ok(Summary::default());
        };
        let cursor = CursorStore::new(topology.cursor.clone(), &self.settings.cursor_name);
        let beats = CancellationToken::new();
        let heartbeat = heartbeat::Heartbeat::new(
            topology.workers.clone(),
            client,
            &self.instance,
            self.stats.clone(),
            readiness.clone(),
        );
        let heartbeat =
            tokio::spawn(heartbeat.run(self.settings.heartbeat_interval, beats.clone()));

        let sync = sync::Syncer::new(
            self.extraction(&topology),
            cursor,
            args.clone(),
            self.settings.wdt.max_window_days,
            self.stats.clone(),
            readiness,
        );
        info!(
            instance = %self.instance,
            cursor = %self.settings.cursor_name,
            start_without_cursor = %format_wdt_time(&sync.start()),
            lag_ms = millis(args.lag),
            overlap_ms = millis(args.overlap),
            interval_ms = millis(args.interval),
            "Extractor running"
        );
        let outcome = sync.run(shutdown).await;
        beats.cancel();
        if heartbeat.await.is_err() {
            warn!("Heartbeat task ended abnormally");
        }
        outcome.context("extractor run")
    }

    /// `extractor backfill`: reads `args`' range once and returns once every order is
    /// acknowledged. The shutdown signal interrupts it between two pages, as a failure.
    pub async fn backfill(
        self,
        args: BackfillArgs,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Summary> {
        args.validate()?;
        let range = format!(
            "{}..{}",
            format_wdt_time(&args.from),
            format_wdt_time(&args.to)
        );
        let Some((_client, topology)) = self.connect(&shutdown).await? else {
            anyhow::bail!("backfill {range}: stopped by the shutdown signal before it started");
        };
        info!(range = %range, "Backfill started");
        let started = std::time::Instant::now();
        let summary = self
            .extraction(&topology)
            .with_publish_attempts(extract::BACKFILL_PUBLISH_ATTEMPTS)
            .extract(args.from, args.to, &shutdown)
            .await
            .with_context(|| format!("backfill {range}"))?;
        info!(
            range = %range,
            orders_read = summary.orders_read,
            stored = summary.stored,
            duplicates = summary.duplicates,
            dead_letters = summary.dead_letters,
            elapsed_ms = millis(started.elapsed()),
            "Backfill finished"
        );
        Ok(summary)
    }

    fn extraction(&self, topology: &Topology) -> Extraction {
        Extraction::new(
            self.reader.clone(),
            self.query.filter.clone(),
            topology.publisher(),
            topology.dead_letters(),
            topology.names.clone(),
            self.query.page_size,
            self.settings.publish_in_flight,
            self.stats.clone(),
        )
    }

    /// Connects and makes sure the topology exists; `None` when `shutdown` came first.
    async fn connect(
        &self,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<(async_nats::Client, Topology)>> {
        let mut nats = self.settings.nats.clone();
        nats.client_name = Some(format!("extractor {}", self.instance));
        let client = tokio::select! {
            connected = pipeline::connect(&nats) => connected.context("connect to nats")?,
            () = shutdown.cancelled() => return Ok(None),
        };
        let jetstream = async_nats::jetstream::new(client.clone());
        let topology = ensure_topology(&jetstream, &self.settings.topology, shutdown).await?;
        Ok(topology.map(|topology| (client, topology)))
    }
}

/// Creates the topology, retrying what may pass (JetStream not ready yet) until `shutdown`.
async fn ensure_topology(
    jetstream: &async_nats::jetstream::Context,
    config: &TopologyConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Topology>> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match pipeline::ensure_topology(jetstream, config).await {
            Ok(topology) => return Ok(Some(topology)),
            Err(error) if error.is_transient() => {
                let delay = backoff.next_delay();
                warn!(error = %error, delay_ms = millis(delay), "Topology not ready; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
            Err(error) => return Err(error).context("create the streams and buckets"),
        }
    }
}

/// The process's Prometheus recorder, installed on first use; `None` when another recorder
/// was installed first (then `/metrics` answers 404 and the rest still works).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match telemetry::metrics::install() {
            Ok(handle) => {
                stats::describe();
                Some(handle)
            }
            Err(error) => {
                warn!(error = %error, "Metrics recorder not installed; /metrics is off");
                None
            }
        })
        .clone()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
