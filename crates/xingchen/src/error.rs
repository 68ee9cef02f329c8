//! What can go wrong talking to 星辰, sorted by what the caller should do about it.
//!
//! Every failure answers [`Error::is_transient`] (retrying later may succeed) and
//! [`Error::is_ambiguous`] (the request may have taken effect although no answer came back). A
//! repeated bill number has its own variant so the loader can recover from it. Parsing responses
//! into these variants is left to [`crate::wire`]; messages carry Kingdee's own text, never a
//! credential.

/// The gateway codes that mean "overloaded or briefly unavailable, try again".
const TRANSIENT_GATEWAY_CODES: std::ops::RangeInclusive<i64> = 5003..=5007;

/// A failed call to the 星辰 gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// HTTP 519: the gateway refused the call (signature, token, routing, overload).
    #[error("{endpoint}: gateway error {code}: {message}")]
    Gateway {
        /// The path called.
        endpoint: String,
        /// The gateway's code (4001–4012 auth and signature, 5000–5007 routing and overload).
        code: i64,
        /// The gateway's description.
        message: String,
    },

    /// HTTP 429: the account set's request rate was exceeded.
    #[error("{endpoint}: rate limited by 星辰 (http 429)")]
    RateLimited {
        /// The path called.
        endpoint: String,
    },

    /// Another HTTP status without a usable envelope.
    #[error("{endpoint}: http {status}: {body}")]
    Http {
        /// The path called.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },

    /// 星辰 rejected the request on its merits (validation, permission, unknown id).
    #[error("{endpoint}: rejected by 星辰 ({code}): {message}")]
    Rejected {
        /// The path called.
        endpoint: String,
        /// Kingdee's error code, empty when it sent none.
        code: String,
        /// Kingdee's message, verbatim.
        message: String,
    },

    /// A save without `id` used a bill number that 星辰 already holds.
    #[error("{endpoint}: bill number {billno} already exists: {message}")]
    DuplicateBillNo {
        /// The path called.
        endpoint: String,
        /// The bill number.
        billno: String,
        /// Kingdee's message, verbatim.
        message: String,
    },

    /// Authorisation failed: unknown app, wrong secret, or no usable account set.
    #[error("{endpoint}: authorisation failed ({code}): {message}")]
    Auth {
        /// The path called.
        endpoint: String,
        /// Kingdee's error code.
        code: String,
        /// Kingdee's message, or what the client could not find.
        message: String,
    },

    /// No answer within the timeout. When `sent` the request may have been processed.
    #[error("{endpoint}: timed out after {elapsed_ms} ms")]
    Timeout {
        /// The path called.
        endpoint: String,
        /// How long the call waited.
        elapsed_ms: u64,
        /// Whether the request may have reached the server.
        sent: bool,
    },

    /// The connection failed or broke. When `sent` the request may have been processed.
    #[error("{endpoint}: connection failed: {message}")]
    Connection {
        /// The path called.
        endpoint: String,
        /// What the HTTP stack said.
        message: String,
        /// Whether the request may have reached the server.
        sent: bool,
    },

    /// The answer could not be read as any known envelope.
    #[error("{endpoint}: unreadable response: {message}")]
    Decode {
        /// The path called.
        endpoint: String,
        /// What was wrong with it.
        message: String,
    },

    /// The client's own settings are unusable.
    #[error("invalid xingchen config: {0}")]
    Config(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The gateway's code for an empty, invalid or expired access token.
pub(crate) fn is_token_code(code: i64) -> bool {
    matches!(code, 4009..=4011)
}

impl Error {
    /// Whether the same call may succeed later without any change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Gateway { code, .. } => {
                TRANSIENT_GATEWAY_CODES.contains(code) || is_token_code(*code)
            }
            Error::RateLimited { .. } => true,
            Error::Http { status, .. } => *status >= 500,
            Error::Timeout { .. } | Error::Connection { .. } => true,
            Error::Rejected { .. }
            | Error::DuplicateBillNo { .. }
            | Error::Auth { .. }
            | Error::Decode { .. }
            | Error::Config(_) => false,
        }
    }

    /// Whether the request may have taken effect although the client saw a failure.
    ///
    /// A save that failed this way must not be posted again before looking the bill up.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            Error::Timeout { sent, .. } | Error::Connection { sent, .. } => *sent,
            // A success status with a body we cannot read may still be a stored bill.
            Error::Decode { .. } => true,
            _ => false,
        }
    }

    /// Whether this is the repeated-bill-number rejection.
    pub fn is_duplicate_bill(&self) -> bool {
        matches!(self, Error::DuplicateBillNo { .. })
    }

    /// The gateway code of a 519 answer.
    pub fn gateway_code(&self) -> Option<i64> {
        match self {
            Error::Gateway { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(code: i64) -> Error {
        Error::Gateway {
            endpoint: "/p".into(),
            code,
            message: String::new(),
        }
    }

    #[test]
    fn overload_codes_are_transient_and_signature_codes_are_not() {
        for code in 5003..=5007 {
            assert!(gateway(code).is_transient(), "{code}");
        }
        for code in [4001, 4003, 4006, 4007, 4008, 4012, 5001, 5002] {
            assert!(!gateway(code).is_transient(), "{code}");
        }
        assert!(
            Error::RateLimited {
                endpoint: "/p".into()
            }
            .is_transient()
        );
        assert!(
            Error::Http {
                endpoint: "/p".into(),
                status: 502,
                body: String::new()
            }
            .is_transient()
        );
        assert!(
            !Error::Http {
                endpoint: "/p".into(),
                status: 404,
                body: String::new()
            }
            .is_transient()
        );
    }

    #[test]
    fn only_a_sent_request_without_answer_is_ambiguous() {
        let sent = Error::Timeout {
            endpoint: "/p".into(),
            elapsed_ms: 5,
            sent: true,
        };
        let unsent = Error::Connection {
            endpoint: "/p".into(),
            message: "refused".into(),
            sent: false,
        };
        assert!(sent.is_ambiguous() && sent.is_transient());
        assert!(!unsent.is_ambiguous() && unsent.is_transient());
        let rejected = Error::Rejected {
            endpoint: "/p".into(),
            code: String::new(),
            message: "x".into(),
        };
        assert!(!rejected.is_ambiguous() && !rejected.is_transient());
    }
}
