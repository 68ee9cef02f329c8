//! The extractor's command line: the settings both commands share, and each command's own.
//!
//! Every flag falls back to an environment variable. The shared settings gather the NATS
//! connection and topology ([`pipeline`]), the WDT client ([`wdt::WdtConfig`]), telemetry, the
//! scheme file and the extractor's own bounds. `run` adds where to start and how the windows
//! move (`--start`, `--lag`, `--overlap`, `--interval`); `backfill` adds the range (`--from`,
//! `--to`). Times are Beijing `YYYY-MM-DD HH:MM:SS` or RFC 3339, whatever the host's zone;
//! durations are humantime (`30s`, `5m`). Turning the scheme into a query is left to
//! [`crate::source`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use pipeline::{NatsConfig, TopologyConfig};
use telemetry::TelemetryConfig;
use wdt::{WdtConfig, WdtTime, parse_cli_time};

/// Where `/metrics`, `/healthz` and `/readyz` are served unless `METRICS_LISTEN` says otherwise.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9411);

/// The name of the cursor in the cursor bucket unless `EXTRACTOR_CURSOR` names another.
pub const DEFAULT_CURSOR_NAME: &str = "stockout";

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid extractor setting {setting}: {problem}")]
pub struct SettingError {
    /// The flag, as typed on the command line.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl SettingError {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> SettingError {
        SettingError {
            setting,
            problem: problem.into(),
        }
    }

    /// Configuration is fixed at start-up: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// What both `run` and `backfill` need.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// How to reach NATS.
    #[command(flatten)]
    pub nats: NatsConfig,

    /// The streams, consumers and buckets.
    #[command(flatten)]
    pub topology: TopologyConfig,

    /// How to reach WDT.
    #[command(flatten)]
    pub wdt: WdtConfig,

    /// Logs, traces and the metrics address.
    #[command(flatten)]
    pub telemetry: TelemetryConfig,

    /// The scheme file whose `[source]` says how to query WDT; without it, the built-in scheme.
    #[arg(long, env = "BRIDGE_SCHEME")]
    pub scheme: Option<PathBuf>,

    /// The cursor's name in the cursor bucket; two extractors with different queries need two.
    #[arg(long = "cursor", env = "EXTRACTOR_CURSOR", default_value = DEFAULT_CURSOR_NAME)]
    pub cursor_name: String,

    /// Publish acknowledgements awaited at once (1 to 1024).
    #[arg(
        long = "publish-in-flight",
        env = "EXTRACTOR_PUBLISH_IN_FLIGHT",
        default_value_t = 64
    )]
    pub publish_in_flight: usize,

    /// Interval between two heartbeats in the workers bucket; at most 20s, a third of the
    /// bucket's one-minute expiry, so a live extractor never disappears from it.
    #[arg(long = "heartbeat-interval", env = "BRIDGE_HEARTBEAT_INTERVAL",
          default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// This process's name in heartbeats and logs [default: `<host>-<pid>`].
    #[arg(long = "instance-id", env = "BRIDGE_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl Settings {
    /// Checks what this crate owns; the NATS, topology and WDT blocks check themselves.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.nats
            .validate()
            .map_err(|err| SettingError::new("nats", err.to_string()))?;
        self.topology
            .validate()
            .map_err(|err| SettingError::new("topology", err.to_string()))?;
        self.wdt
            .validate()
            .map_err(|err| SettingError::new("wdt", err.to_string()))?;
        if !(1..=1024).contains(&self.publish_in_flight) {
            return Err(SettingError::new(
                "--publish-in-flight",
                "must be from 1 to 1024",
            ));
        }
        let heartbeat_range = Duration::from_millis(100)..=Duration::from_secs(20);
        if !heartbeat_range.contains(&self.heartbeat_interval) {
            return Err(SettingError::new(
                "--heartbeat-interval",
                "must be from 100ms to 20s",
            ));
        }
        if self.cursor_name.trim().is_empty() {
            return Err(SettingError::new("--cursor", "must not be empty"));
        }
        Ok(())
    }

    /// The metrics address: `METRICS_LISTEN`, else [`DEFAULT_METRICS_LISTEN`].
    pub fn metrics_listen(&self) -> SocketAddr {
        self.telemetry.metrics_listen_or(DEFAULT_METRICS_LISTEN)
    }

    /// The instance name heartbeats carry.
    pub fn instance(&self) -> String {
        match self.instance_id.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => pipeline::heartbeat::default_instance(),
        }
    }
}

/// How `extractor run` moves its windows.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// Where to start when no cursor is stored [default: one day before now]; a stored cursor
    /// wins.
    #[arg(long, env = "EXTRACTOR_START", value_parser = parse_cli_time)]
    pub start: Option<WdtTime>,

    /// How far behind now each window ends, so that orders WDT commits late are mostly in by
    /// then.
    #[arg(long, env = "EXTRACTOR_LAG", default_value = "2m",
          value_parser = humantime::parse_duration)]
    pub lag: Duration,

    /// How far before the cursor each window starts, so that orders WDT made visible after
    /// their window was read are read by the next ones; should exceed WDT's longest delay.
    #[arg(long, env = "EXTRACTOR_OVERLAP", default_value = "10m",
          value_parser = humantime::parse_duration)]
    pub overlap: Duration,

    /// Time between the starts of two windows.
    #[arg(long, env = "EXTRACTOR_INTERVAL", default_value = "1m",
          value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

impl RunArgs {
    /// Checks the durations against each other, against WDT's longest window, and against the
    /// stream's duplicate window.
    pub fn validate(
        &self,
        max_window_days: u32,
        duplicate_window: Duration,
    ) -> Result<(), SettingError> {
        if self.interval < Duration::from_millis(100) {
            return Err(SettingError::new("--interval", "must be at least 100ms"));
        }
        let max_window = Duration::from_secs(u64::from(max_window_days) * 86_400);
        if self.overlap >= max_window {
            // Each window would end before the cursor it starts from and the cursor would
            // never move.
            return Err(SettingError::new(
                "--overlap",
                format!("must be shorter than the longest window ({max_window_days} days)"),
            ));
        }
        if self.lag >= max_window {
            return Err(SettingError::new(
                "--lag",
                format!("must be shorter than {max_window_days} days"),
            ));
        }
        // An order is read again for about overlap plus interval after its first read; past the
        // duplicate window JetStream would store it again.
        if self.overlap + self.interval > duplicate_window {
            return Err(SettingError::new(
                "--overlap",
                format!(
                    "with --interval it exceeds the duplicate window ({}); unchanged orders \
                     read again would be stored again",
                    humantime::format_duration(duplicate_window)
                ),
            ));
        }
        Ok(())
    }
}

impl Default for RunArgs {
    fn default() -> RunArgs {
        RunArgs {
            start: None,
            lag: Duration::from_secs(120),
            overlap: Duration::from_secs(600),
            interval: Duration::from_secs(60),
        }
    }
}

/// The range `extractor backfill` reads, inclusive at both ends.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct BackfillArgs {
    /// First second of the range: Beijing `YYYY-MM-DD HH:MM:SS` or RFC 3339.
    #[arg(long, value_parser = parse_cli_time)]
    pub from: WdtTime,

    /// Last second of the range, included.
    #[arg(long, value_parser = parse_cli_time)]
    pub to: WdtTime,
}

impl BackfillArgs {
    /// Refuses a range that ends before it starts.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.from > self.to {
            return Err(SettingError::new(
                "--from",
                "the range starts after it ends",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn run_defaults_are_the_contracts() {
        let cli = Cli::try_parse_from(["extractor"]).expect("parse");
        // The environment of the test process may set these; only compare when it does not.
        if std::env::var_os("EXTRACTOR_LAG").is_none()
            && std::env::var_os("EXTRACTOR_OVERLAP").is_none()
            && std::env::var_os("EXTRACTOR_INTERVAL").is_none()
            && std::env::var_os("EXTRACTOR_START").is_none()
        {
            assert_eq!(cli.run, RunArgs::default());
        }
    }

    #[test]
    fn start_is_beijing_time_on_any_host() {
        let cli =
            Cli::try_parse_from(["extractor", "--start", "2024-05-01 00:00:00"]).expect("parse");
        let start = cli.run.start.expect("start");
        assert_eq!(start.to_rfc3339(), "2024-05-01T00:00:00+08:00");
    }

    #[test]
    fn an_overlap_as_long_as_a_window_is_refused() {
        let args = RunArgs {
            overlap: Duration::from_secs(30 * 86_400),
            ..RunArgs::default()
        };
        let hour = Duration::from_secs(3600);
        let err = args.validate(30, hour).expect_err("refused");
        assert_eq!(err.setting, "--overlap");
        assert!(RunArgs::default().validate(30, hour).is_ok());
    }

    #[test]
    fn an_overlap_past_the_duplicate_window_is_refused() {
        let args = RunArgs {
            overlap: Duration::from_secs(3600),
            ..RunArgs::default()
        };
        let err = args
            .validate(30, Duration::from_secs(3600))
            .expect_err("refused");
        assert!(err.problem.contains("duplicate window"), "{err}");
    }
}
