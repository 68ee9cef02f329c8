//! Everything that can go wrong talking to WDT, and whether trying again can help.
//!
//! The reader retries exactly the errors for which [`WdtError::is_transient`] is true and returns
//! every other one at once. Which failure envelope means which variant is decided in
//! [`crate::response`]; this module only names the outcomes. No variant carries the app secret.

use std::fmt;

/// Which credential the Qimen router or WDT refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `app_key`, the caller's own Qimen app key.
    AppKey,
    /// `target_app_key`, WDT's Qimen app key.
    TargetAppKey,
    /// `sid`, the WDT seller account.
    Sid,
    /// The router refused the caller without saying which credential.
    Unspecified,
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Credential::AppKey => "app_key",
            Credential::TargetAppKey => "target_app_key",
            Credential::Sid => "sid",
            Credential::Unspecified => "credentials",
        })
    }
}

/// The code and messages of a Qimen failure envelope, as the router sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// `code`, the gateway's error code.
    pub code: String,
    /// `message` (or `msg`), the gateway's text.
    pub message: String,
    /// `sub_code`, the ERP's (WDT's) error code.
    pub sub_code: String,
    /// `sub_message` (or `sub_msg`), the ERP's text.
    pub sub_message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {:?} {:?}", self.code, self.message)?;
        if !self.sub_code.is_empty() || !self.sub_message.is_empty() {
            write!(f, ", sub_code {:?} {:?}", self.sub_code, self.sub_message)?;
        }
        Ok(())
    }
}

/// A failed call to `wdt.stockout.order.query.trade`, or a request the client would not send.
#[derive(Debug, thiserror::Error)]
pub enum WdtError {
    /// WDT or the router said the caller calls too often (`1012`, 系统调用频繁).
    #[error("wdt rate limit reached: {failure}")]
    RateLimited {
        /// What the router said.
        failure: Failure,
    },
    /// The router answered with an HTTP 5xx.
    #[error("wdt server error: http status {status}")]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// The router reported a failure on its own side (`isp.*` sub-codes).
    #[error("wdt service failure: {failure}")]
    ServiceFailure {
        /// What the router said.
        failure: Failure,
    },
    /// No answer within the configured timeout.
    #[error("wdt request timed out after {timeout_ms} ms")]
    Timeout {
        /// The configured timeout.
        timeout_ms: u64,
    },
    /// The connection failed or broke before a whole answer arrived.
    #[error("wdt connection failed: {detail}")]
    Connection {
        /// The transport's description (the URL holds no secret: every parameter is in the body).
        detail: String,
    },
    /// The router rejected the signature: the app secret or the sign method is wrong.
    #[error("wdt rejected the signature (check WDT_APP_SECRET and WDT_SIGN_METHOD): {failure}")]
    Signature {
        /// What the router said.
        failure: Failure,
    },
    /// The router or WDT refused a credential.
    #[error("wdt refused the {credential}: {failure}")]
    Unauthorized {
        /// Which credential, as far as the answer says.
        credential: Credential,
        /// What the router said.
        failure: Failure,
    },
    /// The request's timestamp is outside the router's tolerance: the host clock is off.
    #[error("wdt rejected the timestamp (is the host clock right?): {failure}")]
    Clock {
        /// What the router said.
        failure: Failure,
    },
    /// The query window is longer than WDT allows (30 days).
    #[error("wdt rejected the query window (at most 30 days): {failure}")]
    WindowTooLong {
        /// What the router said.
        failure: Failure,
    },
    /// Any other failure envelope; permanent because nothing says retrying helps.
    #[error("wdt rejected the request: {failure}")]
    Rejected {
        /// What the router said.
        failure: Failure,
    },
    /// An HTTP status other than 200 and 5xx.
    #[error("wdt answered http status {status}")]
    HttpStatus {
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not the JSON the client expects.
    #[error("wdt answer is malformed: {detail}")]
    Malformed {
        /// What was wrong, with the stock-out id when one is known.
        detail: String,
    },
    /// The configuration cannot work (a page size WDT refuses, a zero rate).
    #[error("invalid wdt configuration: {detail}")]
    InvalidConfig {
        /// What was wrong.
        detail: String,
    },
    /// The client refused to send the request (an empty or reversed range).
    #[error("invalid wdt request: {detail}")]
    InvalidRequest {
        /// What was wrong.
        detail: String,
    },
}

impl WdtError {
    /// Whether the same request may succeed later: rate limits, 5xx, timeouts, broken connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WdtError::RateLimited { .. }
                | WdtError::ServerError { .. }
                | WdtError::ServiceFailure { .. }
                | WdtError::Timeout { .. }
                | WdtError::Connection { .. }
        )
    }

    /// The failure envelope behind the error, when the router sent one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            WdtError::RateLimited { failure }
            | WdtError::ServiceFailure { failure }
            | WdtError::Signature { failure }
            | WdtError::Unauthorized { failure, .. }
            | WdtError::Clock { failure }
            | WdtError::WindowTooLong { failure }
            | WdtError::Rejected { failure } => Some(failure),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;

    #[test]
    fn only_capacity_and_transport_failures_are_transient() {
        let failure = Failure::default();
        assert!(
            WdtError::RateLimited {
                failure: failure.clone()
            }
            .is_transient()
        );
        assert!(WdtError::ServerError { status: 503 }.is_transient());
        assert!(WdtError::Timeout { timeout_ms: 10 }.is_transient());
        assert!(
            !WdtError::Signature {
                failure: failure.clone()
            }
            .is_transient()
        );
        assert!(
            !WdtError::WindowTooLong {
                failure: failure.clone()
            }
            .is_transient()
        );
        let refused = WdtError::Unauthorized {
            credential: Credential::TargetAppKey,
            failure,
        };
        assert!(!refused.is_transient());
        assert!(refused.to_string().contains("target_app_key"));
    }
}
