//! The configuration every worker shares: how to reach NATS, how the topology is shaped, and how
//! a worker pulls.
//!
//! Each struct is both a set of clap flags (each falling back to an environment variable) and a
//! serde table that rejects unknown keys, so a worker may take them from its command line or from
//! its configuration file. A default lives once, as the text constant clap shows in `--help`;
//! `Default` and serde parse that same text, and a test checks the three agree. Durations are
//! written the humantime way: `500ms`, `30s`, `5m`, `7days`.
//!
//! Connecting is left to [`crate::connect()`], creating what [`TopologyConfig`] describes to
//! [`crate::topology`], and pulling as [`PullConfig`] says to [`crate::worker`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::{DEFAULT_PREFIX, Names};

/// Default NATS server, the contract's `NATS_URL` default.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default time allowed for one connection attempt.
pub const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
/// Default interval of client pings, which bound how long a dead connection goes unnoticed.
pub const DEFAULT_PING_INTERVAL: &str = "10s";

/// Default stream replicas: 1, a single server; use 3 on a cluster.
pub const DEFAULT_REPLICAS: &str = "1";
/// Default age after which raw orders and bill payloads leave their streams.
pub const DEFAULT_MAX_AGE: &str = "7days";
/// Default size limit of the raw-order and bill streams, in bytes (1 GiB); beyond it publishes
/// are refused (discard new), so nothing unread is ever dropped.
pub const DEFAULT_MAX_BYTES: &str = "1073741824";
/// Default age after which dead letters leave their stream.
pub const DEFAULT_DLQ_MAX_AGE: &str = "30days";
/// Default window within which JetStream drops a message whose `Nats-Msg-Id` it has seen.
pub const DEFAULT_DUPLICATE_WINDOW: &str = "1h";
/// Default number of deliveries before a message is dead-lettered as `max_deliveries`.
pub const DEFAULT_MAX_DELIVER: &str = "10";
/// Default time a delivered message may stay unacknowledged before the server redelivers it.
pub const DEFAULT_ACK_WAIT: &str = "30s";
/// Default number of unacknowledged messages per consumer, across all its workers.
pub const DEFAULT_MAX_ACK_PENDING: &str = "256";
/// Default age after which a cached master-data lookup is forgotten and resolved again.
pub const DEFAULT_MASTERDATA_MAX_AGE: &str = "1day";

/// Default number of messages asked for in one pull.
pub const DEFAULT_PULL_BATCH: &str = "16";
/// Default lifetime of one pull request on the server.
pub const DEFAULT_PULL_EXPIRES: &str = "10s";
/// Default interval of the server's idle heartbeats on a pull; two missed ones count as an error.
pub const DEFAULT_PULL_HEARTBEAT: &str = "3s";
/// Default number of messages one worker handles at the same time.
pub const DEFAULT_IN_FLIGHT: &str = "16";
/// Default nak delays by delivery: the first retry waits 1 s, the fifth and later 5 min.
pub const DEFAULT_RETRY_BACKOFF: &str = "1s,5s,30s,2m,5m";
/// Default time one handler may take before its message is retried.
pub const DEFAULT_HANDLER_TIMEOUT: &str = "2m";
/// Default time in-flight messages get to reach their exit after a shutdown signal.
pub const DEFAULT_SHUTDOWN_DEADLINE: &str = "20s";

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration {field}: {problem}")]
pub struct ConfigError {
    /// The field, as named in the configuration file.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(field: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            problem: problem.into(),
        }
    }

    /// Configuration is fixed at start-up: retrying never helps.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// How to reach NATS. Credentials are optional and mutually exclusive.
#[derive(Clone, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// NATS server URL, or several separated by commas.
    #[arg(long = "nats-url", env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub url: String,

    /// Credentials file (JWT and NKey seed).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub creds: Option<PathBuf>,

    /// User name; needs a password.
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,

    /// Password for the user.
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Authentication token.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) to verify the server with; setting it requires TLS.
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Time allowed for one connection attempt.
    #[arg(long = "nats-connect-timeout", env = "NATS_CONNECT_TIMEOUT",
          default_value = DEFAULT_CONNECT_TIMEOUT, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,

    /// Interval of client pings to the server.
    #[arg(long = "nats-ping-interval", env = "NATS_PING_INTERVAL",
          default_value = DEFAULT_PING_INTERVAL, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub ping_interval: Duration,

    /// Connection name shown by the server's monitoring; the worker sets it, not the operator.
    #[arg(skip)]
    #[serde(skip)]
    pub client_name: Option<String>,
}

impl NatsConfig {
    /// A configuration for `url` with every other field at its default.
    pub fn for_url(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            ..NatsConfig::default()
        }
    }

    /// The servers `url` names: one URL, or several separated by commas, as a cluster's
    /// clients are usually given.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        let servers = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ConfigError::new("url", format!("{}: {e}", redact_url(part))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(ConfigError::new("url", "must name at least one server"));
        }
        Ok(servers)
    }

    /// Checks that the credentials given make one coherent choice.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.servers()?;
        let methods = [
            self.creds.is_some(),
            self.user.is_some(),
            self.token.is_some(),
        ];
        if methods.into_iter().filter(|&given| given).count() > 1 {
            return Err(ConfigError::new(
                "creds",
                "give at most one of creds, user, token",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::new(
                "password",
                "user and password go together",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "connect_timeout",
                "must be more than zero",
            ));
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::new("ping_interval", "must be more than zero"));
        }
        Ok(())
    }

    /// The URL with any `user:password@` removed, fit for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl Default for NatsConfig {
    fn default() -> NatsConfig {
        NatsConfig {
            url: DEFAULT_NATS_URL.to_owned(),
            creds: None,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
            connect_timeout: default_duration(DEFAULT_CONNECT_TIMEOUT),
            ping_interval: default_duration(DEFAULT_PING_INTERVAL),
            client_name: None,
        }
    }
}

impl fmt::Debug for NatsConfig {
    // By hand, so that neither the password, the token nor credentials in the URL reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("creds", &self.creds)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("tls_ca", &self.tls_ca)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("client_name", &self.client_name)
            .finish()
    }
}

/// Removes `user:password@` from every URL of a comma-separated list.
pub fn redact_url(urls: &str) -> String {
    let redact_one = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        (None, Some(at)) => format!("<redacted>@{}", &url[at + 1..]),
        _ => url.to_owned(),
    };
    urls.split(',')
        .map(|url| redact_one(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The shape of the streams, consumers and buckets, as [`crate::topology::ensure_topology`]
/// creates them.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopologyConfig {
    /// Prefix of every stream, subject and bucket name; lets two bridges share one NATS.
    #[arg(long = "nats-prefix", env = "BRIDGE_NATS_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// Replicas of every stream and bucket (1 on a single server, 3 on a cluster).
    #[arg(long = "stream-replicas", env = "BRIDGE_STREAM_REPLICAS",
          default_value = DEFAULT_REPLICAS)]
    pub replicas: usize,

    /// Age after which raw orders and bill payloads are removed.
    #[arg(long = "stream-max-age", env = "BRIDGE_STREAM_MAX_AGE",
          default_value = DEFAULT_MAX_AGE, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub max_age: Duration,

    /// Size limit of the raw-order and of the bill stream, in bytes; publishes beyond it fail.
    #[arg(long = "stream-max-bytes", env = "BRIDGE_STREAM_MAX_BYTES",
          default_value = DEFAULT_MAX_BYTES)]
    pub max_bytes: i64,

    /// Age after which dead letters are removed.
    #[arg(long = "dlq-max-age", env = "BRIDGE_DLQ_MAX_AGE",
          default_value = DEFAULT_DLQ_MAX_AGE, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub dlq_max_age: Duration,

    /// Window within which a repeated `Nats-Msg-Id` is dropped; should exceed the extractor's
    /// overlap plus its interval, so an unchanged order read again is not stored again.
    #[arg(long = "duplicate-window", env = "BRIDGE_DUPLICATE_WINDOW",
          default_value = DEFAULT_DUPLICATE_WINDOW, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub duplicate_window: Duration,

    /// Deliveries of one message before it is dead-lettered as `max_deliveries`.
    #[arg(long = "max-deliver", env = "BRIDGE_MAX_DELIVER", default_value = DEFAULT_MAX_DELIVER)]
    pub max_deliver: i64,

    /// Time a delivered message may stay unacknowledged before it is redelivered.
    #[arg(long = "ack-wait", env = "BRIDGE_ACK_WAIT",
          default_value = DEFAULT_ACK_WAIT, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub ack_wait: Duration,

    /// Unacknowledged messages allowed per consumer, across all its workers.
    #[arg(long = "max-ack-pending", env = "BRIDGE_MAX_ACK_PENDING",
          default_value = DEFAULT_MAX_ACK_PENDING)]
    pub max_ack_pending: i64,

    /// Age after which a cached master-data lookup is forgotten.
    #[arg(long = "masterdata-max-age", env = "BRIDGE_MASTERDATA_MAX_AGE",
          default_value = DEFAULT_MASTERDATA_MAX_AGE, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub masterdata_max_age: Duration,
}

impl TopologyConfig {
    /// The names this configuration's prefix gives.
    pub fn names(&self) -> Result<Names, ConfigError> {
        Names::new(&self.prefix).map_err(|err| ConfigError::new("prefix", err.to_string()))
    }

    /// Checks every limit against what JetStream accepts and against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.names()?;
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::new("replicas", "must be from 1 to 5"));
        }
        if self.max_bytes == 0 || self.max_bytes < -1 {
            return Err(ConfigError::new(
                "max_bytes",
                "must be positive, or -1 for no limit",
            ));
        }
        if self.duplicate_window.is_zero() {
            return Err(ConfigError::new(
                "duplicate_window",
                "must be more than zero",
            ));
        }
        for (field, max_age) in [("max_age", self.max_age), ("dlq_max_age", self.dlq_max_age)] {
            if !max_age.is_zero() && max_age < self.duplicate_window {
                return Err(ConfigError::new(
                    field,
                    "must be at least the duplicate_window",
                ));
            }
        }
        if self.max_deliver < 1 {
            return Err(ConfigError::new("max_deliver", "must be at least 1"));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err(ConfigError::new("ack_wait", "must be at least 1s"));
        }
        if self.max_ack_pending < 1 {
            return Err(ConfigError::new("max_ack_pending", "must be at least 1"));
        }
        Ok(())
    }
}

impl Default for TopologyConfig {
    fn default() -> TopologyConfig {
        TopologyConfig {
            prefix: DEFAULT_PREFIX.to_owned(),
            replicas: default_number(DEFAULT_REPLICAS),
            max_age: default_duration(DEFAULT_MAX_AGE),
            max_bytes: default_number(DEFAULT_MAX_BYTES),
            dlq_max_age: default_duration(DEFAULT_DLQ_MAX_AGE),
            duplicate_window: default_duration(DEFAULT_DUPLICATE_WINDOW),
            max_deliver: default_number(DEFAULT_MAX_DELIVER),
            ack_wait: default_duration(DEFAULT_ACK_WAIT),
            max_ack_pending: default_number(DEFAULT_MAX_ACK_PENDING),
            masterdata_max_age: default_duration(DEFAULT_MASTERDATA_MAX_AGE),
        }
    }
}

/// How a worker pulls from its consumer and how it retries and stops.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    /// Messages asked for in one pull; at most `in_flight`, so that no delivered message waits
    /// long for a free slot while its `ack_wait` runs.
    #[arg(long = "pull-batch", env = "BRIDGE_PULL_BATCH", default_value = DEFAULT_PULL_BATCH)]
    pub batch: usize,

    /// Lifetime of one pull request on the server.
    #[arg(long = "pull-expires", env = "BRIDGE_PULL_EXPIRES",
          default_value = DEFAULT_PULL_EXPIRES, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub expires: Duration,

    /// Idle heartbeat the server sends on a pull; at most half of `expires`.
    #[arg(long = "pull-heartbeat", env = "BRIDGE_PULL_HEARTBEAT",
          default_value = DEFAULT_PULL_HEARTBEAT, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub heartbeat: Duration,

    /// Messages one worker handles at the same time.
    #[arg(long = "in-flight", env = "BRIDGE_IN_FLIGHT", default_value = DEFAULT_IN_FLIGHT)]
    pub in_flight: usize,

    /// Nak delays by delivery count, comma-separated; the last repeats.
    #[arg(long = "retry-backoff", env = "BRIDGE_RETRY_BACKOFF",
          default_value = DEFAULT_RETRY_BACKOFF, value_delimiter = ',',
          value_parser = humantime::parse_duration)]
    #[serde(with = "duration_list_text")]
    pub backoff: Vec<Duration>,

    /// Time one handler may take; then it is dropped and its message retried.
    #[arg(long = "handler-timeout", env = "BRIDGE_HANDLER_TIMEOUT",
          default_value = DEFAULT_HANDLER_TIMEOUT, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub handler_timeout: Duration,

    /// Time in-flight messages get to reach their exit after a shutdown signal.
    #[arg(long = "shutdown-deadline", env = "BRIDGE_SHUTDOWN_DEADLINE",
          default_value = DEFAULT_SHUTDOWN_DEADLINE, value_parser = humantime::parse_duration)]
    #[serde(with = "duration_text")]
    pub shutdown_deadline: Duration,
}

impl PullConfig {
    /// The nak delay after the `delivered`-th delivery failed (1-based; the last step repeats).
    pub fn retry_delay(&self, delivered: i64) -> Duration {
        let step = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        let last = self.backoff.len().saturating_sub(1);
        self.backoff
            .get(step.min(last))
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }

    /// Checks the pull settings against each other and against what the server accepts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.in_flight == 0 {
            return Err(ConfigError::new("in_flight", "must be at least 1"));
        }
        if self.batch == 0 || self.batch > self.in_flight {
            return Err(ConfigError::new("batch", "must be from 1 to in_flight"));
        }
        if self.expires < Duration::from_secs(1) {
            return Err(ConfigError::new("expires", "must be at least 1s"));
        }
        // The server refuses a pull whose heartbeat is more than half its expiry.
        if self.heartbeat.is_zero() || self.heartbeat * 2 > self.expires {
            return Err(ConfigError::new(
                "heartbeat",
                "must be above zero and at most expires/2",
            ));
        }
        if self.backoff.is_empty() {
            return Err(ConfigError::new("backoff", "needs at least one delay"));
        }
        if self.handler_timeout.is_zero() {
            return Err(ConfigError::new(
                "handler_timeout",
                "must be more than zero",
            ));
        }
        if self.shutdown_deadline.is_zero() {
            return Err(ConfigError::new(
                "shutdown_deadline",
                "must be more than zero",
            ));
        }
        Ok(())
    }
}

impl Default for PullConfig {
    fn default() -> PullConfig {
        PullConfig {
            batch: default_number(DEFAULT_PULL_BATCH),
            expires: default_duration(DEFAULT_PULL_EXPIRES),
            heartbeat: default_duration(DEFAULT_PULL_HEARTBEAT),
            in_flight: default_number(DEFAULT_IN_FLIGHT),
            backoff: DEFAULT_RETRY_BACKOFF
                .split(',')
                .map(default_duration)
                .collect(),
            handler_timeout: default_duration(DEFAULT_HANDLER_TIMEOUT),
            shutdown_deadline: default_duration(DEFAULT_SHUTDOWN_DEADLINE),
        }
    }
}

fn default_duration(text: &str) -> Duration {
    // The defaults are constants of this file; the unit test `defaults_agree_everywhere` parses
    // every one of them, so this cannot fail at run time.
    humantime::parse_duration(text).unwrap_or_else(|err| panic!("default {text:?}: {err}"))
}

fn default_number<T: std::str::FromStr>(text: &str) -> T {
    // Same invariant as `default_duration`.
    text.parse()
        .unwrap_or_else(|_| panic!("default {text:?} is not a number"))
}

/// Serde for a duration written as humantime text (`30s`).
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `30s`-style text.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    /// Reads `30s`-style text.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for a list of durations written as humantime text (`["1s", "5m"]`).
pub mod duration_list_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Writes a list of `30s`-style texts.
    pub fn serialize<S: Serializer>(list: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for duration in list {
            seq.serialize_element(&humantime::format_duration(*duration).to_string())?;
        }
        seq.end()
    }

    /// Reads a list of `30s`-style texts.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| humantime::parse_duration(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_comma_separated_url_names_every_server_of_a_cluster() {
        let config = NatsConfig::for_url("nats://a:4222, nats://b:4223,nats://c:4224");
        let servers = config.servers().unwrap();
        let ports: Vec<u16> = servers.iter().map(async_nats::ServerAddr::port).collect();
        assert_eq!(ports, [4222, 4223, 4224]);

        let bad = NatsConfig::for_url("nats://a:4222,nats://b:notaport").validate();
        assert_eq!(bad.unwrap_err().field, "url");
        assert!(NatsConfig::for_url(" , ").validate().is_err());
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        nats: NatsConfig,
        #[command(flatten)]
        topology: TopologyConfig,
        #[command(flatten)]
        pull: PullConfig,
    }

    /// Parses flags with the environment fallbacks removed, so that a `NATS_URL` set on the
    /// machine running the tests cannot change what they see.
    fn parse_without_env(args: &[&str]) -> Flags {
        use clap::{CommandFactory, FromArgMatches};
        let command = Flags::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args).expect("parse flags");
        Flags::from_arg_matches(&matches).expect("flags fit the struct")
    }

    #[test]
    fn defaults_agree_everywhere() {
        let flags = parse_without_env(&["worker"]);
        assert_eq!(flags.nats, NatsConfig::default());
        assert_eq!(flags.topology, TopologyConfig::default());
        assert_eq!(flags.pull, PullConfig::default());

        let topology: TopologyConfig = toml::from_str("").expect("empty table");
        assert_eq!(topology, TopologyConfig::default());
        let pull: PullConfig = toml::from_str("").expect("empty table");
        assert_eq!(pull, PullConfig::default());
        let nats: NatsConfig = toml::from_str("").expect("empty table");
        assert_eq!(nats, NatsConfig::default());

        TopologyConfig::default()
            .validate()
            .expect("default topology is valid");
        PullConfig::default()
            .validate()
            .expect("default pull is valid");
        NatsConfig::default()
            .validate()
            .expect("default nats is valid");
    }

    #[test]
    fn durations_and_backoff_lists_parse_from_flags_and_files() {
        let flags = parse_without_env(&[
            "worker",
            "--ack-wait",
            "45s",
            "--retry-backoff",
            "2s,1m",
            "--nats-url",
            "nats://n1:4222",
        ]);
        assert_eq!(flags.topology.ack_wait, Duration::from_secs(45));
        assert_eq!(
            flags.pull.backoff,
            [Duration::from_secs(2), Duration::from_secs(60)]
        );
        assert_eq!(flags.nats.url, "nats://n1:4222");
        assert_eq!(PullConfig::default().backoff.len(), 5);

        let pull: PullConfig =
            toml::from_str("backoff = [\"1s\", \"10s\"]\nexpires = \"20s\"").expect("parse toml");
        assert_eq!(
            pull.backoff,
            [Duration::from_secs(1), Duration::from_secs(10)]
        );
        assert_eq!(pull.expires, Duration::from_secs(20));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<TopologyConfig>("ack_wiat = \"30s\"").expect_err("typo");
        assert!(err.to_string().contains("ack_wiat"), "{err}");
        assert!(toml::from_str::<NatsConfig>("urls = \"x\"").is_err());
    }

    #[test]
    fn config_written_out_reads_back_the_same() {
        let text = toml::to_string(&PullConfig::default()).expect("serialize");
        assert_eq!(
            toml::from_str::<PullConfig>(&text).expect("parse"),
            PullConfig::default()
        );
        let text = toml::to_string(&TopologyConfig::default()).expect("serialize");
        let back = toml::from_str::<TopologyConfig>(&text).expect("parse");
        assert_eq!(back, TopologyConfig::default());
    }

    #[test]
    fn retry_delay_follows_the_backoff_and_repeats_the_last_step() {
        let pull = PullConfig::default();
        assert_eq!(pull.retry_delay(1), Duration::from_secs(1));
        assert_eq!(pull.retry_delay(2), Duration::from_secs(5));
        assert_eq!(pull.retry_delay(5), Duration::from_secs(300));
        assert_eq!(pull.retry_delay(50), Duration::from_secs(300));
        assert_eq!(pull.retry_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn incoherent_settings_are_refused_with_their_field() {
        let pull = PullConfig {
            heartbeat: Duration::from_secs(6),
            ..PullConfig::default()
        };
        assert_eq!(pull.validate().map_err(|e| e.field), Err("heartbeat"));
        let pull = PullConfig {
            batch: 17,
            ..PullConfig::default()
        };
        assert_eq!(pull.validate().map_err(|e| e.field), Err("batch"));
        let topology = TopologyConfig {
            prefix: "A.B".into(),
            ..TopologyConfig::default()
        };
        assert_eq!(topology.validate().map_err(|e| e.field), Err("prefix"));
        let topology = TopologyConfig {
            max_age: Duration::from_secs(60),
            ..TopologyConfig::default()
        };
        assert_eq!(topology.validate().map_err(|e| e.field), Err("max_age"));
        let nats = NatsConfig {
            user: Some("u".into()),
            ..NatsConfig::default()
        };
        assert_eq!(nats.validate().map_err(|e| e.field), Err("password"));
        let nats = NatsConfig {
            token: Some("t".into()),
            creds: Some("c".into()),
            ..NatsConfig::default()
        };
        assert_eq!(nats.validate().map_err(|e| e.field), Err("creds"));
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let nats = NatsConfig {
            url: "nats://alice:s3cret@host:4222".into(),
            user: Some("alice".into()),
            password: Some("pa55word".into()),
            token: Some("t0ken".into()),
            ..NatsConfig::default()
        };
        let debug = format!("{nats:?}");
        for secret in ["s3cret", "pa55word", "t0ken"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert_eq!(nats.redacted_url(), "nats://<redacted>@host:4222");
        assert_eq!(redact_url("a:1, u:p@b:2"), "a:1,<redacted>@b:2");
    }
}
