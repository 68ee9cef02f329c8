//! The client: one signed, rate-limited, bounded, timed HTTP request at a time ([`Client::send`]),
//! V1 business calls with their token headers and one token refresh ([`Client::call_v1`]), and
//! retries with backoff for transient failures.
//!
//! Master-data lookups live in [`crate::masterdata`], bill saves and look-ups in [`crate::bill`],
//! tokens in [`crate::auth`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::auth::Session;
use crate::config::XingchenConfig;
use crate::error::{Error, Result, is_token_code};
use crate::limit::{LocalRateLimit, RateLimit};
use crate::sign::{SignatureHeaders, new_nonce, wire_query};
use crate::wire;

/// A 星辰 gateway client; cheap to clone, all clones share tokens and limits.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: XingchenConfig,
    base_url: String,
    http: reqwest::Client,
    rate_limit: Arc<dyn RateLimit>,
    in_flight: Semaphore,
    session: Session,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The HTTP methods the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One request before signing.
pub(crate) struct Request<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, name: &'static str, value: &str) -> Request<'a> {
        self.query.push((name, value.to_owned()));
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Request<'a> {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Request<'a> {
        self.body = Some(body);
        self
    }
}

impl Client {
    /// A client with a per-process rate limit from the config.
    pub fn new(config: XingchenConfig) -> Result<Client> {
        let limit = Arc::new(LocalRateLimit::per_minute(config.requests_per_minute));
        Client::with_rate_limit(config, limit)
    }

    /// A client whose request budget comes from `rate_limit` (for instance one shared by replicas).
    pub fn with_rate_limit(
        config: XingchenConfig,
        rate_limit: Arc<dyn RateLimit>,
    ) -> Result<Client> {
        config.validate().map_err(Error::Config)?;
        // reqwest is built without a crypto provider of its own; ring is the one async-nats uses.
        // Installing it twice is harmless, so every client may try.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| Error::Config(format!("http client: {}", e.without_url())))?;
        let inner = Inner {
            base_url: config.api_url.trim_end_matches('/').to_owned(),
            in_flight: Semaphore::new(config.max_in_flight),
            session: Session::default(),
            config,
            http,
            rate_limit,
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &XingchenConfig {
        &self.inner.config
    }

    pub(crate) fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Sends one signed request and returns the body of a 2xx answer.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<String> {
        // The permit comes first: a budget token taken while waiting for a free slot would be
        // spent late, bunched with later ones, and the gateway counts when requests arrive.
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .expect("semaphore is never closed");
        self.inner.rate_limit.acquire().await;

        let endpoint = request.path;
        let params: Vec<(&str, &str)> = request
            .query
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let timestamp_ms = chrono::Utc::now().timestamp_millis().to_string();
        let config = &self.inner.config;
        let signature = SignatureHeaders::sign(
            &config.client_id,
            config.client_secret.expose(),
            request.method.as_str(),
            endpoint,
            &params,
            &new_nonce(),
            &timestamp_ms,
        );

        let mut url = format!("{}{}", self.inner.base_url, endpoint);
        if !params.is_empty() {
            url = format!("{url}?{}", wire_query(&params));
        }
        let mut builder = match request.method {
            Method::Get => self.inner.http.get(url),
            Method::Post => self.inner.http.post(url),
        };
        builder = builder.header("Content-Type", "application/json");
        for (name, value) in signature.pairs().into_iter() {
            builder = builder.header(name, value);
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.to_string());
        }

        let started = Instant::now();
        let result = exchange(builder).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (status, body) = result.map_err(|e| transport_error(endpoint, e, elapsed_ms))?;
        tracing::debug!(endpoint, status, elapsed_ms, "Called 星辰");
        wire::check_status(endpoint, status, &body)?;
        Ok(body)
    }

    /// One V1 business call with the token headers; refreshes the token once if it was refused.
    pub(crate) async fn call_v1_once(&self, path: &str, body: &Value) -> Result<Value> {
        let mut refreshed = false;
        loop {
            let credentials = self.credentials().await?;
            let account = &credentials.account;
            let tokens = &credentials.tokens;
            let request = Request::new(Method::Post, path)
                .query("access_token", tokens.access_token.expose())
                .header("groupName", &account.group_name)
                .header("accountId", &account.account_id)
                .header("X-GW-Router-Addr", &account.domain)
                .header("app-token", tokens.app_token.expose())
                .json(body.clone());
            match self.send(request).await {
                Err(Error::Gateway { code, .. }) if is_token_code(code) && !refreshed => {
                    tracing::debug!(endpoint = path, code, "Token refused, refreshing it");
                    self.session().invalidate(tokens.generation).await;
                    refreshed = true;
                }
                Err(error) => return Err(error),
                Ok(text) => return wire::v1_data(path, &text),
            }
        }
    }

    /// A V1 call retried with backoff while its failures are transient.
    ///
    /// Only for calls that change nothing, or change it idempotently.
    pub(crate) async fn call_v1(&self, path: &str, body: &Value) -> Result<Value> {
        (|| self.call_v1_once(path, body))
            .retry(self.backoff())
            .when(Error::is_transient)
            .notify(|error, delay| log_retry(path, error, delay))
            .await
    }

    /// The backoff between attempts, from the config.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        let config = &self.inner.config;
        ExponentialBuilder::default()
            .with_min_delay(config.retry_min_delay)
            .with_max_delay(config.retry_max_delay)
            .with_max_times(config.retry_attempts.saturating_sub(1))
            .with_jitter()
    }
}

pub(crate) fn log_retry(endpoint: &str, error: &Error, delay: Duration) {
    let delay_ms = delay.as_millis() as u64;
    tracing::warn!(endpoint, error = %error, delay_ms, "Retrying 星辰 call");
}

async fn exchange(builder: reqwest::RequestBuilder) -> reqwest::Result<(u16, String)> {
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let body = response.text().await?;
    Ok((status, body))
}

fn transport_error(endpoint: &str, error: reqwest::Error, elapsed_ms: u64) -> Error {
    // The URL carries the access token, so it never reaches an error message.
    let error = error.without_url();
    let endpoint = endpoint.to_owned();
    let sent = !error.is_connect();
    if error.is_timeout() {
        return Error::Timeout {
            endpoint,
            elapsed_ms,
            sent,
        };
    }
    Error::Connection {
        endpoint,
        message: error_chain(&error),
        sent,
    }
}

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
