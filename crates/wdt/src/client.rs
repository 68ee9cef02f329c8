//! One call of `wdt.stockout.order.query.trade` through the Qimen router, and its retries.
//!
//! [`WdtClient::query`] builds the form (system parameters, `sid`, the business fields of a
//! [`StockoutQuery`], empty ones left out), stamps it with the current Beijing time, signs it and
//! posts it, waiting first for the configured call rate. [`WdtClient::query_retrying`] repeats a
//! transient failure with exponential backoff and jitter; because every attempt goes through
//! `query`, every retry is re-stamped and re-signed. Windows and paging are the reader's
//! ([`crate::reader`]); reading the answer is [`crate::response`]'s.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::CONTENT_TYPE;

use crate::config::WdtConfig;
use crate::error::WdtError;
use crate::response::{Page, parse_page};
use crate::sign::qimen_sign;
use crate::time::{WdtTime, format_wdt_time, now_beijing};

/// The Qimen method name of the stock-out query.
pub const METHOD: &str = "wdt.stockout.order.query.trade";

/// The body's content type, charset included as the official SDKs send it.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";

/// The business parameters of one `wdt.stockout.order.query.trade` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockoutQuery {
    /// `start_time`, inclusive.
    pub start_time: Option<WdtTime>,
    /// `end_time`, inclusive.
    pub end_time: Option<WdtTime>,
    /// `status`: one stock-out status; none means shipped and completed, by consign time.
    pub status: Option<i32>,
    /// `is_by_modified=1`: the window applies to the last-modified time instead of consign time.
    pub is_by_modified: bool,
    /// `shop_no`.
    pub shop_no: Option<String>,
    /// `warehouse_no`, one warehouse.
    pub warehouse_no: Option<String>,
    /// `stockout_no`.
    pub stockout_no: Option<String>,
    /// `src_tid`, the platform's order number.
    pub src_tid: Option<String>,
    /// `src_order_no`, WDT's trade number.
    pub src_order_no: Option<String>,
    /// `page_no`, from 0.
    pub page_no: u32,
    /// `page_size`, 1 to 100.
    pub page_size: u32,
}

impl StockoutQuery {
    /// A query of one window, page 0.
    pub fn window(start_time: WdtTime, end_time: WdtTime, page_size: u32) -> StockoutQuery {
        StockoutQuery {
            start_time: Some(start_time),
            end_time: Some(end_time),
            page_size,
            ..StockoutQuery::default()
        }
    }

    /// The business fields as form pairs, the empty ones left out.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let time = |time: &Option<WdtTime>| time.as_ref().map(format_wdt_time);
        let candidates = [
            ("start_time", time(&self.start_time)),
            ("end_time", time(&self.end_time)),
            ("status", self.status.map(|s| s.to_string())),
            (
                "is_by_modified",
                self.is_by_modified.then(|| "1".to_owned()),
            ),
            ("shop_no", self.shop_no.clone()),
            ("warehouse_no", self.warehouse_no.clone()),
            ("stockout_no", self.stockout_no.clone()),
            ("src_tid", self.src_tid.clone()),
            ("src_order_no", self.src_order_no.clone()),
            ("page_no", Some(self.page_no.to_string())),
            ("page_size", Some(self.page_size.to_string())),
        ];
        candidates
            .into_iter()
            .filter_map(|(key, value)| value.filter(|v| !v.is_empty()).map(|v| (key, v)))
            .collect()
    }
}

/// A client of the Qimen router, cheap to clone; clones share the call rate.
#[derive(Clone)]
pub struct WdtClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: WdtConfig,
    limiter: DefaultDirectRateLimiter,
}

impl fmt::Debug for WdtClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WdtClient")
            .field("qimen_url", &self.inner.config.qimen_url)
            .field("app_key", &self.inner.config.app_key)
            .finish_non_exhaustive()
    }
}

impl WdtClient {
    /// Validates the configuration and builds the HTTP client with its timeout.
    pub fn new(config: WdtConfig) -> Result<WdtClient, WdtError> {
        config.validate()?;
        // reqwest is built without a crypto provider of its own; ring is the one async-nats uses.
        // Installing it twice is harmless, so every client may try.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(config.timeout())
            .build()
            .map_err(|e| WdtError::InvalidConfig {
                detail: format!("http client: {e}"),
            })?;
        let limiter = RateLimiter::direct(call_quota(config.calls_per_minute)?);
        Ok(WdtClient {
            inner: Arc::new(Inner {
                http,
                config,
                limiter,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &WdtConfig {
        &self.inner.config
    }

    /// The whole signed form of `query`, stamped with `timestamp` (`yyyy-MM-dd HH:mm:ss`).
    pub fn signed_form(
        &self,
        query: &StockoutQuery,
        timestamp: &str,
    ) -> Vec<(&'static str, String)> {
        let config = &self.inner.config;
        let mut form: Vec<(&'static str, String)> = vec![
            ("method", METHOD.to_owned()),
            ("app_key", config.app_key.clone()),
            ("target_app_key", config.target_app_key.clone()),
            ("timestamp", timestamp.to_owned()),
            ("format", "json".to_owned()),
            ("v", "2.0".to_owned()),
            ("sign_method", config.sign_method.as_str().to_owned()),
            ("sid", config.sid.clone()),
        ];
        form.extend(query.params());
        form.retain(|(_, value)| !value.is_empty());
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sign = qimen_sign(&pairs, config.app_secret.expose(), config.sign_method);
        form.push(("sign", sign));
        form
    }

    /// One call, after waiting for the call rate; signed with the current Beijing time.
    pub async fn query(&self, query: &StockoutQuery) -> Result<Page, WdtError> {
        self.inner.limiter.until_ready().await;
        let form = self.signed_form(query, &format_wdt_time(&now_beijing()));
        // Invariant: a list of string pairs always encodes as a form.
        let body = serde_urlencoded::to_string(&form).expect("string pairs encode as a form");

        let started = Instant::now();
        let outcome = self
            .post(body)
            .await
            .and_then(|(status, bytes)| parse_page(status, &bytes));
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Ok(page) => tracing::debug!(
                page_no = query.page_no,
                orders = page.orders.len(),
                total_count = page.total_count,
                elapsed_ms,
                "Read a WDT page"
            ),
            Err(error) => {
                tracing::debug!(page_no = query.page_no, %error, elapsed_ms, "WDT call failed")
            }
        }
        outcome
    }

    async fn post(&self, body: String) -> Result<(u16, bytes::Bytes), WdtError> {
        let timeout_ms = self.inner.config.timeout_ms;
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                WdtError::Timeout { timeout_ms }
            } else {
                WdtError::Connection {
                    detail: error_chain(&e),
                }
            }
        };
        let response = self
            .inner
            .http
            .post(&self.inner.config.qimen_url)
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes))
    }

    /// [`WdtClient::query`], retrying transient failures up to the configured limit.
    pub async fn query_retrying(&self, query: &StockoutQuery) -> Result<Page, WdtError> {
        let config = &self.inner.config;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(config.retry_min_delay_ms))
            .with_max_delay(Duration::from_millis(config.retry_max_delay_ms))
            .with_max_times(config.max_retries)
            .with_jitter();
        (|| self.query(query))
            .retry(backoff)
            .when(WdtError::is_transient)
            .notify(|error, delay| {
                tracing::warn!(
                    page_no = query.page_no,
                    %error,
                    delay_ms = delay.as_millis() as u64,
                    "Retrying a WDT call"
                );
            })
            .await
    }
}

/// The error and its causes, "context: cause" style; reqwest's own text omits the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An even spread of `calls_per_minute`, one call at a time.
fn call_quota(calls_per_minute: u32) -> Result<Quota, WdtError> {
    let per_minute = NonZeroU32::new(calls_per_minute).ok_or_else(|| WdtError::InvalidConfig {
        detail: "calls_per_minute is zero".into(),
    })?;
    let period = Duration::from_secs(60) / per_minute.get();
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_minute(per_minute));
    Ok(quota.allow_burst(NonZeroU32::MIN))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::sign::SignMethod;
    use crate::time::parse_cli_time;

    fn client() -> WdtClient {
        let secret = Secret::new("qm_demo_secret");
        WdtClient::new(WdtConfig::new(
            "http://127.0.0.1:9/router/qm",
            "12345678",
            secret,
            "87654321",
            "demo_sid",
        ))
        .unwrap()
    }

    #[test]
    fn form_carries_system_params_and_the_v4_signature() {
        let start = parse_cli_time("2024-05-01 00:00:00").unwrap();
        let end = parse_cli_time("2024-05-01 23:59:59").unwrap();
        let query = StockoutQuery {
            is_by_modified: true,
            ..StockoutQuery::window(start, end, 100)
        };
        let form = client().signed_form(&query, "2024-05-01 12:00:00");
        let get = |key: &str| {
            form.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("sign"), Some("4708216DA3E0A93F84B4C602B9A30FE1"));
        assert_eq!(get("format"), Some("json"));
        assert_eq!(get("v"), Some("2.0"));
        assert_eq!(get("status"), None, "empty parameters are never sent");
        assert_eq!(client().config().sign_method, SignMethod::Md5);
    }

    #[test]
    fn debug_output_never_holds_the_secret() {
        assert!(!format!("{:?}", client()).contains("qm_demo_secret"));
    }
}
