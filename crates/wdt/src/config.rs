//! How to reach WDT: the Qimen router, the credentials, and the client's limits.
//!
//! [`WdtConfig`] is both a `clap::Args` group (flags with `WDT_*` environment fallbacks, flattened
//! into every binary that talks to WDT) and a serde struct (for the workers' config files). The
//! app secret is a [`Secret`], which no `Debug`, log line or error ever shows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::WdtError;
use crate::sign::SignMethod;

/// The 企业奇门 router of WDT's Qimen application.
pub const DEFAULT_QIMEN_URL: &str = "http://hu3cgwt0tc.api.taobao.com/router/qm";

/// WDT's longest query window, in days (reference `wdt-qimen.md` §4).
pub const MAX_WINDOW_DAYS: u32 = 30;

/// WDT's largest page.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A secret string that never shows itself in `Debug` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the signer only.
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

    fn from_str(text: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(text))
    }
}

/// Everything the client needs to call `wdt.stockout.order.query.trade`.
#[derive(Debug, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WdtConfig {
    /// The Qimen router URL.
    #[arg(long = "wdt-qimen-url", env = "WDT_QIMEN_URL", default_value = DEFAULT_QIMEN_URL)]
    #[serde(default = "default_qimen_url")]
    pub qimen_url: String,

    /// The caller's own Qimen app key (`app_key`).
    #[arg(long = "wdt-app-key", env = "WDT_APP_KEY")]
    pub app_key: String,

    /// The caller's Qimen app secret, used only to sign.
    #[arg(
        long = "wdt-app-secret",
        env = "WDT_APP_SECRET",
        hide_env_values = true
    )]
    pub app_secret: Secret,

    /// WDT's Qimen app key (`target_app_key`), from WDT's authorisation e-mail.
    #[arg(long = "wdt-target-app-key", env = "WDT_TARGET_APP_KEY")]
    pub target_app_key: String,

    /// The WDT seller account (`sid`).
    #[arg(long = "wdt-sid", env = "WDT_SID")]
    pub sid: String,

    /// How requests are signed: md5 (default), hmac or hmac-sha256.
    #[arg(
        long = "wdt-sign-method",
        env = "WDT_SIGN_METHOD",
        value_enum,
        default_value_t
    )]
    #[serde(default)]
    pub sign_method: SignMethod,

    /// Orders per page, 1 to 100; default 100.
    #[arg(long = "wdt-page-size", env = "WDT_PAGE_SIZE", default_value_t = 100)]
    #[serde(default = "default_page_size")]
    pub page_size: u32,

    /// Timeout of one HTTP call, in milliseconds; default 30000.
    #[arg(
        long = "wdt-timeout-ms",
        env = "WDT_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,

    /// Calls per minute the client allows itself, spread evenly; default 60.
    #[arg(
        long = "wdt-calls-per-minute",
        env = "WDT_CALLS_PER_MINUTE",
        default_value_t = 60
    )]
    #[serde(default = "default_calls_per_minute")]
    pub calls_per_minute: u32,

    /// Retries of a transient failure before giving up; default 5.
    #[arg(long = "wdt-max-retries", env = "WDT_MAX_RETRIES", default_value_t = 5)]
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,

    /// First retry delay in milliseconds, doubled each retry, with jitter; default 1000.
    #[arg(
        long = "wdt-retry-min-delay-ms",
        env = "WDT_RETRY_MIN_DELAY_MS",
        default_value_t = 1000
    )]
    #[serde(default = "default_retry_min_delay_ms")]
    pub retry_min_delay_ms: u64,

    /// Longest retry delay in milliseconds; default 60000.
    #[arg(
        long = "wdt-retry-max-delay-ms",
        env = "WDT_RETRY_MAX_DELAY_MS",
        default_value_t = 60_000
    )]
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,

    /// Longest query window in days, 1 to 30; default 30.
    #[arg(
        long = "wdt-max-window-days",
        env = "WDT_MAX_WINDOW_DAYS",
        default_value_t = 30
    )]
    #[serde(default = "default_max_window_days")]
    pub max_window_days: u32,
}

fn default_qimen_url() -> String {
    DEFAULT_QIMEN_URL.to_owned()
}

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_calls_per_minute() -> u32 {
    60
}

fn default_max_retries() -> usize {
    5
}

fn default_retry_min_delay_ms() -> u64 {
    1000
}

fn default_retry_max_delay_ms() -> u64 {
    60_000
}

fn default_max_window_days() -> u32 {
    MAX_WINDOW_DAYS
}

impl WdtConfig {
    /// A configuration with the documented defaults and the given credentials.
    pub fn new(
        qimen_url: impl Into<String>,
        app_key: impl Into<String>,
        app_secret: Secret,
        target_app_key: impl Into<String>,
        sid: impl Into<String>,
    ) -> WdtConfig {
        WdtConfig {
            qimen_url: qimen_url.into(),
            app_key: app_key.into(),
            app_secret,
            target_app_key: target_app_key.into(),
            sid: sid.into(),
            sign_method: SignMethod::default(),
            page_size: default_page_size(),
            timeout_ms: default_timeout_ms(),
            calls_per_minute: default_calls_per_minute(),
            max_retries: default_max_retries(),
            retry_min_delay_ms: default_retry_min_delay_ms(),
            retry_max_delay_ms: default_retry_max_delay_ms(),
            max_window_days: default_max_window_days(),
        }
    }

    /// Checks what WDT or the client cannot work with; the message names the setting.
    pub fn validate(&self) -> Result<(), WdtError> {
        let invalid = |detail: String| Err(WdtError::InvalidConfig { detail });
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return invalid(format!("page_size {} is outside 1..=100", self.page_size));
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&self.max_window_days) {
            return invalid(format!(
                "max_window_days {} is outside 1..=30",
                self.max_window_days
            ));
        }
        if self.calls_per_minute == 0 || self.timeout_ms == 0 {
            return invalid("calls_per_minute and timeout_ms must be positive".into());
        }
        if self.retry_min_delay_ms > self.retry_max_delay_ms {
            return invalid("retry_min_delay_ms is above retry_max_delay_ms".into());
        }
        for (name, value) in [
            ("app_key", &self.app_key),
            ("target_app_key", &self.target_app_key),
        ] {
            if value.trim().is_empty() {
                return invalid(format!("{name} is empty"));
            }
        }
        if self.sid.trim().is_empty() || self.app_secret.expose().is_empty() {
            return invalid("sid and app_secret must not be empty".into());
        }
        Ok(())
    }

    /// The timeout of one HTTP call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        wdt: WdtConfig,
    }

    fn parse(args: &[&str]) -> WdtConfig {
        let mut argv = vec![
            "test",
            "--wdt-app-key",
            "1",
            "--wdt-app-secret",
            "s3cr3t-value",
        ];
        argv.extend_from_slice(&["--wdt-target-app-key", "2", "--wdt-sid", "demo"]);
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().wdt
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let config = parse(&[]);
        assert_eq!(config.qimen_url, DEFAULT_QIMEN_URL);
        assert_eq!(config.sign_method, SignMethod::Md5);
        assert_eq!(config.page_size, 100);
        config.validate().unwrap();
        let config = parse(&["--wdt-sign-method", "hmac-sha256", "--wdt-page-size", "40"]);
        assert_eq!(
            (config.sign_method, config.page_size),
            (SignMethod::HmacSha256, 40)
        );
    }

    #[test]
    fn secret_never_shows_in_debug() {
        let config = parse(&[]);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let mut config = parse(&[]);
        config.page_size = 101;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("page_size")
        );
        let mut config = parse(&[]);
        config.max_window_days = 31;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max_window_days")
        );
    }

    #[test]
    fn config_files_reject_unknown_keys_and_fill_defaults() {
        let json = r#"{"app_key":"1","app_secret":"x","target_app_key":"2","sid":"s"}"#;
        let config: WdtConfig = serde_json::from_str(json).unwrap();
        assert_eq!((config.page_size, config.max_window_days), (100, 30));
        let typo =
            r#"{"app_key":"1","app_secret":"x","target_app_key":"2","sid":"s","pagesize":1}"#;
        assert!(serde_json::from_str::<WdtConfig>(typo).is_err());
    }
}
