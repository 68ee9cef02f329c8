//! How the client is configured: credentials, endpoint, limits, timeouts and retries.
//!
//! One struct serves both the command line (flattened into a binary's `clap` parser, every flag
//! falling back to an `XINGCHEN_*` environment variable) and a worker's TOML file (serde, unknown
//! keys rejected). Secrets are held in [`Secret`], whose `Debug` never shows them. Using the values
//! is left to [`crate::client`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A credential that must never reach a log line, an error or a `Debug` output.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(value))
    }
}

/// The 星辰 gateway client's settings.
#[derive(Clone, Debug, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XingchenConfig {
    /// Base URL of the gateway; business calls are routed by the `X-GW-Router-Addr` header, not
    /// by the host. Default `https://api.kingdee.com`.
    #[arg(
        id = "xingchen_api_url",
        long = "xingchen-api-url",
        env = "XINGCHEN_API_URL",
        default_value = DEFAULT_API_URL
    )]
    #[serde(default = "default_api_url")]
    pub api_url: String,

    /// The app's `client_id` from open.jdy.com, sent as `X-Api-ClientID`.
    #[arg(
        id = "xingchen_client_id",
        long = "xingchen-client-id",
        env = "XINGCHEN_CLIENT_ID"
    )]
    pub client_id: String,

    /// The app's `client_secret`, the key of every X-Api-Signature.
    #[arg(
        id = "xingchen_client_secret",
        long = "xingchen-client-secret",
        env = "XINGCHEN_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Secret,

    /// The tenant's `outerInstanceId`, shown when it authorised the app.
    #[arg(
        id = "xingchen_outer_instance_id",
        long = "xingchen-outer-instance-id",
        env = "XINGCHEN_OUTER_INSTANCE_ID"
    )]
    pub outer_instance_id: String,

    /// The account set to use; without it, the first authorised one with status 1.
    #[arg(
        id = "xingchen_account_id",
        long = "xingchen-account-id",
        env = "XINGCHEN_ACCOUNT_ID"
    )]
    #[serde(default)]
    pub account_id: Option<String>,

    /// Requests per minute this client allows itself (星辰 limits an account set to 500).
    #[arg(
        id = "xingchen_requests_per_minute",
        long = "xingchen-requests-per-minute",
        env = "XINGCHEN_REQUESTS_PER_MINUTE",
        default_value_t = 500
    )]
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,

    /// Requests this client keeps in flight at once. Default 8.
    #[arg(
        id = "xingchen_max_in_flight",
        long = "xingchen-max-in-flight",
        env = "XINGCHEN_MAX_IN_FLIGHT",
        default_value_t = 8
    )]
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,

    /// Timeout of one HTTP request, connect to last byte (such as `30s`). Default 30 s.
    #[arg(
        id = "xingchen_timeout", long = "xingchen-timeout",
        env = "XINGCHEN_TIMEOUT",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    #[serde(default = "default_timeout", deserialize_with = "human_duration")]
    pub timeout: Duration,

    /// Attempts per call for transient failures, the first included. Default 4.
    #[arg(
        id = "xingchen_retry_attempts",
        long = "xingchen-retry-attempts",
        env = "XINGCHEN_RETRY_ATTEMPTS",
        default_value_t = 4
    )]
    #[serde(default = "default_retry_attempts")]
    pub retry_attempts: usize,

    /// Delay before the first retry; it doubles up to the maximum. Default 2 s.
    #[arg(
        id = "xingchen_retry_min_delay", long = "xingchen-retry-min-delay",
        env = "XINGCHEN_RETRY_MIN_DELAY",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    #[serde(
        default = "default_retry_min_delay",
        deserialize_with = "human_duration"
    )]
    pub retry_min_delay: Duration,

    /// Longest delay between two retries. Default 30 s.
    #[arg(
        id = "xingchen_retry_max_delay", long = "xingchen-retry-max-delay",
        env = "XINGCHEN_RETRY_MAX_DELAY",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    #[serde(
        default = "default_retry_max_delay",
        deserialize_with = "human_duration"
    )]
    pub retry_max_delay: Duration,

    /// Rows asked for per master-data list page. Default 100.
    #[arg(
        id = "xingchen_page_size",
        long = "xingchen-page-size",
        env = "XINGCHEN_PAGE_SIZE",
        default_value_t = 100
    )]
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

/// The production gateway.
pub const DEFAULT_API_URL: &str = "https://api.kingdee.com";

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}
fn default_requests_per_minute() -> u32 {
    500
}
fn default_max_in_flight() -> usize {
    8
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retry_attempts() -> usize {
    4
}
fn default_retry_min_delay() -> Duration {
    Duration::from_secs(2)
}
fn default_retry_max_delay() -> Duration {
    Duration::from_secs(30)
}
fn default_page_size() -> u32 {
    100
}

fn human_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl XingchenConfig {
    /// The name of the request budget this configuration spends: the account set when it is
    /// chosen, else the app's client id. Every process that calls 星辰 for the same account set
    /// must derive the same name, or each would spend a whole budget of its own.
    pub fn budget_key(&self) -> String {
        self.account_id
            .clone()
            .unwrap_or_else(|| self.client_id.clone())
    }

    /// A config with the given credentials and every other setting at its default.
    pub fn new(
        api_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        outer_instance_id: impl Into<String>,
    ) -> XingchenConfig {
        XingchenConfig {
            api_url: api_url.into(),
            client_id: client_id.into(),
            client_secret,
            outer_instance_id: outer_instance_id.into(),
            account_id: None,
            requests_per_minute: default_requests_per_minute(),
            max_in_flight: default_max_in_flight(),
            timeout: default_timeout(),
            retry_attempts: default_retry_attempts(),
            retry_min_delay: default_retry_min_delay(),
            retry_max_delay: default_retry_max_delay(),
            page_size: default_page_size(),
        }
    }

    /// Checks what clap and serde cannot: non-zero limits and a usable URL.
    pub fn validate(&self) -> Result<(), String> {
        if self.requests_per_minute == 0 || self.max_in_flight == 0 || self.page_size == 0 {
            return Err("requests per minute, max in flight and page size must be positive".into());
        }
        if self.retry_attempts == 0 {
            return Err("retry attempts must be at least 1".into());
        }
        if !(self.api_url.starts_with("http://") || self.api_url.starts_with("https://")) {
            return Err(format!("api url {:?} is not http or https", self.api_url));
        }
        if self.client_id.is_empty() || self.outer_instance_id.is_empty() {
            return Err("client id and outer instance id must not be empty".into());
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
        config: XingchenConfig,
    }

    #[test]
    fn debug_output_redacts_the_client_secret() {
        let config = XingchenConfig::new("http://x", "id", Secret::new("s3cr3t-value"), "42");
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn flags_have_documented_defaults() {
        let cli = Cli::parse_from([
            "x",
            "--xingchen-client-id=1",
            "--xingchen-client-secret=s",
            "--xingchen-outer-instance-id=9",
        ]);
        assert_eq!(cli.config.api_url, DEFAULT_API_URL);
        assert_eq!(cli.config.requests_per_minute, 500);
        assert_eq!(cli.config.timeout, Duration::from_secs(30));
        assert!(cli.config.validate().is_ok());
    }

    #[test]
    fn toml_style_config_rejects_unknown_keys_and_reads_durations() {
        let json =
            r#"{"client_id":"1","client_secret":"s","outer_instance_id":"9","timeout":"1500ms"}"#;
        let config: XingchenConfig = serde_json::from_str(json).expect("valid config");
        assert_eq!(config.timeout, Duration::from_millis(1500));
        let bad = r#"{"client_id":"1","client_secret":"s","outer_instance_id":"9","x":1}"#;
        assert!(serde_json::from_str::<XingchenConfig>(bad).is_err());
    }
}
