//! The transformer's configuration: the shared NATS, topology and pull blocks, the 星辰 client,
//! telemetry, the scheme file, and the few settings of its own.
//!
//! Every flag falls back to an environment variable. The shared blocks are the `pipeline`,
//! `xingchen` and `telemetry` crates'; this module adds what only the transformer reads and
//! checks the whole against itself. Using the values is left to [`crate::run`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use pipeline::{BudgetConfig, NatsConfig, PullConfig, TopologyConfig};
use telemetry::TelemetryConfig;
use xingchen::XingchenConfig;

/// Where `/metrics`, `/healthz` and `/readyz` are served unless `METRICS_LISTEN` says otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9412);

/// Default number of one order's master-data records resolved at the same time.
pub const DEFAULT_LOOKUP_CONCURRENCY: &str = "4";
/// Default time a cached "星辰 has no such number" is trusted: the pipeline's `DEFAULT_MISS_TTL`.
pub const DEFAULT_MISS_TTL: &str = "1m";
/// Default interval between two heartbeats in the `bridge_workers` bucket.
pub const DEFAULT_HEARTBEAT_INTERVAL: &str = "5s";

/// Everything the transformer is started with.
#[derive(Clone, Debug, clap::Args)]
pub struct TransformerConfig {
    /// How to reach NATS.
    #[command(flatten)]
    pub nats: NatsConfig,

    /// The streams, consumers and buckets.
    #[command(flatten)]
    pub topology: TopologyConfig,

    /// How raw orders are pulled, retried and drained.
    #[command(flatten)]
    pub pull: PullConfig,

    /// The 星辰 client that resolves master data the cache does not hold.
    #[command(flatten)]
    pub xingchen: XingchenConfig,

    /// How the account set's request budget is shared with every other process.
    #[command(flatten)]
    pub budget: BudgetConfig,

    /// Logs, traces, metrics and the health server's address.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// The mapping scheme file; without it the built-in scheme.
    #[arg(long = "scheme", env = "BRIDGE_SCHEME")]
    pub scheme: Option<PathBuf>,

    /// How long a cached miss (星辰 had no record with that number) is trusted before 星辰 is
    /// asked again.
    #[arg(long = "miss-ttl", env = "TRANSFORMER_MISS_TTL", default_value = DEFAULT_MISS_TTL,
          value_parser = humantime::parse_duration)]
    pub miss_ttl: Duration,

    /// How many of one order's master-data records are resolved at the same time.
    #[arg(long = "lookup-concurrency", env = "TRANSFORMER_LOOKUP_CONCURRENCY",
          default_value = DEFAULT_LOOKUP_CONCURRENCY)]
    pub lookup_concurrency: usize,

    /// Interval between two heartbeats in the workers bucket; at most a third of the bucket's
    /// one-minute expiry, so a live worker never disappears from it.
    #[arg(long = "heartbeat-interval", env = "BRIDGE_HEARTBEAT_INTERVAL",
          default_value = DEFAULT_HEARTBEAT_INTERVAL, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// This worker's name in heartbeats and logs [default: `<host>-<pid>`].
    #[arg(long = "instance-id", env = "BRIDGE_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

/// A setting that cannot work, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transformer config: {field}: {problem}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// Configuration does not mend itself.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl TransformerConfig {
    /// A configuration for tests and embedders: NATS at `nats_url`, 星辰 as `xingchen` says,
    /// every other setting at its default.
    pub fn new(nats_url: &str, xingchen: XingchenConfig) -> TransformerConfig {
        TransformerConfig {
            nats: NatsConfig::for_url(nats_url),
            topology: TopologyConfig::default(),
            pull: PullConfig::default(),
            xingchen,
            budget: BudgetConfig::default(),
            telemetry: TelemetryConfig::default(),
            scheme: None,
            miss_ttl: humantime_default(DEFAULT_MISS_TTL),
            lookup_concurrency: 4,
            heartbeat_interval: humantime_default(DEFAULT_HEARTBEAT_INTERVAL),
            instance_id: None,
        }
    }

    /// Checks every block and the transformer's own settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let shared = |field: &'static str, problem: String| ConfigError { field, problem };
        self.nats
            .validate()
            .map_err(|e| shared("nats", e.to_string()))?;
        self.topology
            .validate()
            .map_err(|e| shared("topology", e.to_string()))?;
        self.pull
            .validate()
            .map_err(|e| shared("pull", e.to_string()))?;
        self.xingchen
            .validate()
            .map_err(|e| shared("xingchen", e))?;
        self.budget
            .validate(self.xingchen.requests_per_minute)
            .map_err(|e| shared("budget", e.to_string()))?;
        if self.lookup_concurrency == 0 {
            return Err(shared("lookup_concurrency", "must be at least 1".into()));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_secs(20) {
            return Err(shared(
                "heartbeat_interval",
                "must be above zero and at most 20s".into(),
            ));
        }
        if let Some(instance) = &self.instance_id {
            if instance.trim().is_empty() {
                return Err(shared("instance_id", "must not be empty".into()));
            }
        }
        Ok(())
    }

    /// The configured instance id, or `<host>-<pid>`.
    pub fn instance(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(pipeline::heartbeat::default_instance)
    }

    /// The health server's address.
    pub fn metrics_listen(&self) -> SocketAddr {
        self.telemetry.metrics_listen_or(DEFAULT_METRICS_LISTEN)
    }
}

fn humantime_default(text: &str) -> Duration {
    // The defaults are constants of this file, parsed by the unit test below.
    humantime::parse_duration(text).unwrap_or_else(|err| panic!("default {text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: TransformerConfig,
    }

    fn parse(args: &[&str]) -> TransformerConfig {
        use clap::{CommandFactory, FromArgMatches};
        // Without the environment fallbacks, so the machine's variables cannot change the test.
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args).expect("the flags parse");
        Cli::from_arg_matches(&matches)
            .expect("flags fit the struct")
            .config
    }

    fn xingchen_flags() -> Vec<&'static str> {
        vec![
            "transformer",
            "--xingchen-client-id",
            "id",
            "--xingchen-client-secret",
            "secret",
            "--xingchen-outer-instance-id",
            "outer",
        ]
    }

    #[test]
    fn defaults_from_flags_agree_with_new() {
        let parsed = parse(&xingchen_flags());
        let built = TransformerConfig::new(&parsed.nats.url, parsed.xingchen.clone());
        assert_eq!(parsed.miss_ttl, built.miss_ttl);
        assert_eq!(parsed.miss_ttl, pipeline::masterdata::DEFAULT_MISS_TTL);
        assert_eq!(parsed.lookup_concurrency, built.lookup_concurrency);
        assert_eq!(parsed.heartbeat_interval, built.heartbeat_interval);
        assert_eq!(parsed.metrics_listen(), DEFAULT_METRICS_LISTEN);
        parsed.validate().expect("the defaults are valid");
    }

    #[test]
    fn own_settings_parse_and_are_checked() {
        let mut args = xingchen_flags();
        args.extend(["--miss-ttl", "5s", "--lookup-concurrency", "0"]);
        let config = parse(&args);
        assert_eq!(config.miss_ttl, Duration::from_secs(5));
        assert_eq!(
            config.validate().map_err(|e| e.field),
            Err("lookup_concurrency")
        );

        let mut args = xingchen_flags();
        args.extend(["--heartbeat-interval", "1m"]);
        assert_eq!(
            parse(&args).validate().map_err(|e| e.field),
            Err("heartbeat_interval")
        );
    }

    #[test]
    fn instance_defaults_to_host_and_pid() {
        let config = parse(&xingchen_flags());
        assert!(
            config
                .instance()
                .ends_with(&format!("-{}", std::process::id()))
        );
        let mut args = xingchen_flags();
        args.extend(["--instance-id", "t-1"]);
        assert_eq!(parse(&args).instance(), "t-1");
    }
}
