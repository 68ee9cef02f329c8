//! Connecting to NATS the way every worker should: retrying, reconnecting and saying so.
//!
//! [`connect`] tries until the server answers, waiting longer after each failure (up to 10 s),
//! and gives up only on what retrying cannot fix: an unparsable URL, refused credentials, a bad
//! TLS setup. Once connected, the client reconnects without limit, with the same growing delay,
//! and every connection event is logged: losing the connection is a WARN, getting it back an
//! INFO. A caller that must stop while the server is still unreachable drops the future, e.g. in
//! a `select!` with its shutdown token. Creating streams and buckets is left to
//! [`crate::topology`].

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};
use tracing::{error, info, warn};

use crate::config::{ConfigError, NatsConfig};
use crate::retry::Backoff;

/// Longest wait between two connection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration cannot work.
    #[error("nats configuration: {0}")]
    Config(#[from] ConfigError),
    /// The credentials file could not be read.
    #[error("nats {url}: read credentials {path}: {source}")]
    Credentials {
        /// The server, credentials removed.
        url: String,
        /// The file.
        path: String,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The server refused in a way retrying cannot fix.
    #[error("nats {url}: {source}")]
    Refused {
        /// The server, credentials removed.
        url: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// [`connect`] retries transient failures itself; what it returns is permanent.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// Connects to the servers `config` names, retrying until one answers.
pub async fn connect(config: &NatsConfig) -> Result<Client, ConnectError> {
    config.validate()?;
    let url = config.redacted_url();
    let mut pause = Backoff::new(Duration::from_millis(100), MAX_RECONNECT_DELAY);
    let mut attempt: u64 = 1;
    loop {
        match options(config).await?.connect(config.servers()?).await {
            Ok(client) => {
                info!(url, attempt, "Connected to NATS");
                return Ok(client);
            }
            Err(source) if is_permanent(source.kind()) => {
                return Err(ConnectError::Refused { url, source });
            }
            Err(err) => {
                let delay = pause.next_delay();
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                warn!(url, attempt, delay_ms, error = %err, "NATS connection failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

async fn options(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let url = config.redacted_url();
    let mut options = ConnectOptions::new()
        .connection_timeout(config.connect_timeout)
        .ping_interval(config.ping_interval)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| log_event(url.clone(), event));
    if let Some(name) = &config.client_name {
        options = options.name(name);
    }
    if let Some(path) = &config.creds {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    url: config.redacted_url(),
                    path: path.display().to_string(),
                    source,
                })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

fn is_permanent(kind: ConnectErrorKind) -> bool {
    matches!(
        kind,
        ConnectErrorKind::ServerParse
            | ConnectErrorKind::Authentication
            | ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::Tls
    )
}

/// The wait before reconnect attempt `attempts`: 100 ms doubling up to 10 s.
fn reconnect_delay(attempts: usize) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(7);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(MAX_RECONNECT_DELAY)
}

async fn log_event(url: String, event: Event) {
    match event {
        Event::Connected => info!(url, "NATS connection restored"),
        Event::Disconnected => warn!(url, "NATS connection lost; reconnecting"),
        Event::LameDuckMode => warn!(url, "NATS server entering lame duck mode"),
        Event::Draining => info!(url, "NATS connection draining"),
        // Reconnects are unbounded, so a close is always the worker's own drain at shutdown.
        Event::Closed => info!(url, "NATS connection closed"),
        Event::SlowConsumer(sid) => warn!(url, sid, "NATS subscription too slow; messages dropped"),
        Event::ServerError(err) => error!(url, error = %err, "NATS server error"),
        Event::ClientError(err) => warn!(url, error = %err, "NATS client error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_to_a_ceiling() {
        let delays: Vec<_> = [0, 1, 2, 3, 8, 100]
            .map(|n| reconnect_delay(n).as_millis())
            .into();
        assert_eq!(delays, [100, 100, 200, 400, 10_000, 10_000]);
    }
}
