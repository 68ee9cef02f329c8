//! The loader's configuration: the shared NATS, topology and pull settings, the 星辰 client, the
//! telemetry flags, and the few settings of the loader's own.
//!
//! Every flag falls back to an environment variable. The in-flight bounds and the request rate
//! live in the blocks they steer: `BRIDGE_IN_FLIGHT` (messages handled at once, in
//! [`pipeline::PullConfig`]), `XINGCHEN_MAX_IN_FLIGHT` and `XINGCHEN_REQUESTS_PER_MINUTE` (HTTP
//! requests at once and per minute, in [`xingchen::XingchenConfig`]). Using the values is left to
//! [`crate::run`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use pipeline::{BudgetConfig, NatsConfig, PullConfig, TopologyConfig};
use telemetry::TelemetryConfig;
use xingchen::XingchenConfig;

/// Where `/metrics`, `/healthz` and `/readyz` are served unless `METRICS_LISTEN` says otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9413);

/// Default interval between two heartbeats in the workers bucket.
pub const DEFAULT_HEARTBEAT_INTERVAL: &str = "5s";

/// Everything the loader needs to run.
#[derive(Clone, Debug, clap::Args)]
pub struct LoaderConfig {
    /// How to reach NATS.
    #[command(flatten)]
    pub nats: NatsConfig,

    /// The streams, consumers and buckets.
    #[command(flatten)]
    pub topology: TopologyConfig,

    /// How the loader pulls bills, retries them and stops.
    #[command(flatten)]
    pub pull: PullConfig,

    /// The 星辰 gateway client.
    #[command(flatten)]
    pub xingchen: XingchenConfig,

    /// How the account set's request budget is shared with every other process.
    #[command(flatten)]
    pub budget: BudgetConfig,

    /// Logs, traces and the metrics address.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// This loader's name in heartbeats [default: `<host>-<pid>`].
    #[arg(long = "instance-id", env = "BRIDGE_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Interval between two heartbeats in the workers bucket (which forgets them after a minute).
    #[arg(long = "heartbeat-interval", env = "BRIDGE_HEARTBEAT_INTERVAL",
          default_value = DEFAULT_HEARTBEAT_INTERVAL, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
}

impl LoaderConfig {
    /// A configuration for the given NATS server and 星辰 client, everything else at its default.
    pub fn new(nats: NatsConfig, xingchen: XingchenConfig) -> LoaderConfig {
        LoaderConfig {
            nats,
            topology: TopologyConfig::default(),
            pull: PullConfig::default(),
            xingchen,
            budget: BudgetConfig::default(),
            telemetry: TelemetryConfig::default(),
            instance_id: None,
            heartbeat_interval: humantime::parse_duration(DEFAULT_HEARTBEAT_INTERVAL)
                .unwrap_or(Duration::from_secs(5)),
        }
    }

    /// Checks every block, so a bad value stops the loader before it connects anywhere.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.nats.validate()?;
        self.topology.validate()?;
        self.pull.validate()?;
        self.xingchen
            .validate()
            .map_err(|problem| anyhow::anyhow!("invalid xingchen configuration: {problem}"))?;
        self.budget.validate(self.xingchen.requests_per_minute)?;
        // The workers bucket forgets a heartbeat after a minute; a slower beat would flicker.
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_secs(30) {
            anyhow::bail!("invalid configuration heartbeat_interval: must be from 1ms to 30s");
        }
        Ok(())
    }

    /// The address of the health server.
    pub fn metrics_listen(&self) -> SocketAddr {
        self.telemetry.metrics_listen_or(DEFAULT_METRICS_LISTEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: LoaderConfig,
    }

    fn parse(args: &[&str]) -> LoaderConfig {
        let args = ["loader"].into_iter().chain(args.iter().copied());
        Cli::try_parse_from(args).expect("flags parse").config
    }

    const CREDENTIALS: [&str; 6] = [
        "--xingchen-client-id",
        "205022",
        "--xingchen-client-secret",
        "s",
        "--xingchen-outer-instance-id",
        "5091",
    ];

    #[test]
    fn the_flattened_blocks_do_not_clash_and_take_their_defaults() {
        let config = parse(&CREDENTIALS);
        config.validate().expect("defaults are valid");
        assert_eq!(config.pull.in_flight, 16);
        assert_eq!(config.xingchen.max_in_flight, 8);
        assert_eq!(config.xingchen.requests_per_minute, 500);
        assert_eq!(config.metrics_listen(), DEFAULT_METRICS_LISTEN);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
    }

    #[test]
    fn in_flight_and_rate_are_configurable() {
        let mut args = CREDENTIALS.to_vec();
        args.extend([
            "--in-flight",
            "4",
            "--pull-batch",
            "4",
            "--xingchen-max-in-flight",
            "2",
            "--xingchen-requests-per-minute",
            "120",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        let config = parse(&args);
        config.validate().expect("valid");
        assert_eq!(config.pull.in_flight, 4);
        assert_eq!(config.xingchen.max_in_flight, 2);
        assert_eq!(config.xingchen.requests_per_minute, 120);
        assert_eq!(config.metrics_listen().port(), 0);
    }

    #[test]
    fn a_heartbeat_slower_than_the_bucket_remembers_is_refused() {
        let mut args = CREDENTIALS.to_vec();
        args.extend(["--heartbeat-interval", "2m"]);
        let error = parse(&args).validate().expect_err("too slow");
        assert!(error.to_string().contains("heartbeat_interval"), "{error}");
    }
}
