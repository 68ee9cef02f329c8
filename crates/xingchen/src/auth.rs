//! Authorisation and tokens: `push_app_authorize` gives the account set (app key and secret,
//! router domain, account id, group name), `kingdee_auth_token` gives the tokens, and [`Session`]
//! caches both.
//!
//! Refreshing is single-flight: the session's lock is held across the token request, so callers
//! that find the token expired at the same moment wait for one refresh instead of each asking
//! (the token endpoint allows about two calls a minute). A token the gateway calls invalid is
//! dropped only if it is still the current one, so a burst of 4011 answers costs one refresh.
//! Sending the requests is left to [`crate::client`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::client::{Client, Method, Request};
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::{lenient, wire};

/// Where the account sets come from.
pub const AUTHORIZE_PATH: &str = "/jdyconnector/app_management/push_app_authorize";
/// Where the tokens come from.
pub const TOKEN_PATH: &str = "/jdyconnector/app_management/kingdee_auth_token";

/// The errcode of a token request signed with a rotated or wrong app secret.
const STALE_APP_SECRET: &str = "1030002006";

/// A token is renewed this long before it expires, at most.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The lifetime assumed when the token answer carries no usable `expires`.
const ASSUMED_TOKEN_LIFETIME: Duration = Duration::from_secs(22 * 3600);

/// One authorised account set, as `push_app_authorize` lists it.
#[derive(Clone, Deserialize)]
pub struct AccountSet {
    /// The app key, signed into `app_signature`.
    #[serde(rename = "appKey", deserialize_with = "lenient::string")]
    pub app_key: String,
    /// The app secret (rotates every 24 h).
    #[serde(rename = "appSecret")]
    pub app_secret: Secret,
    /// The data centre, sent as `X-GW-Router-Addr`.
    #[serde(deserialize_with = "lenient::string")]
    pub domain: String,
    /// The account set id, sent as `accountId`.
    #[serde(rename = "accountId", deserialize_with = "lenient::string")]
    pub account_id: String,
    /// The group name, sent as `groupName`.
    #[serde(rename = "groupName", default, deserialize_with = "lenient::string")]
    pub group_name: String,
    /// 1 when the authorisation is active.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
}

impl std::fmt::Debug for AccountSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSet")
            .field("app_key", &self.app_key)
            .field("domain", &self.domain)
            .field("account_id", &self.account_id)
            .field("group_name", &self.group_name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The tokens of one `kingdee_auth_token` answer.
pub(crate) struct Tokens {
    /// The V1 `access_token` query parameter.
    pub access_token: Secret,
    /// The `app-token` header.
    pub app_token: Secret,
    /// When to stop using these tokens.
    renew_at: Instant,
    /// Distinguishes this token from its successors, so a late failure cannot drop a new one.
    pub generation: u64,
}

#[derive(Deserialize)]
struct TokenData {
    access_token: Secret,
    #[serde(rename = "app-token")]
    app_token: Secret,
    #[serde(default, deserialize_with = "lenient::count")]
    expires: u64,
}

/// The account set and tokens in use, shared by every call of one client.
#[derive(Default)]
pub(crate) struct Session {
    state: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
    account: Option<Arc<AccountSet>>,
    tokens: Option<Arc<Tokens>>,
    generation: u64,
}

/// What a business call needs from the session.
pub(crate) struct Credentials {
    pub account: Arc<AccountSet>,
    pub tokens: Arc<Tokens>,
}

impl Session {
    /// Drops the tokens if they are still the given generation.
    pub async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .tokens
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            state.tokens = None;
        }
    }
}

impl Client {
    /// The current account set and tokens, fetching whatever is missing or about to expire.
    pub(crate) async fn credentials(&self) -> Result<Credentials> {
        // Holding the lock across the fetch is what makes the refresh single-flight.
        let mut state = self.session().state.lock().await;
        if let (Some(account), Some(tokens)) = (&state.account, &state.tokens) {
            if Instant::now() < tokens.renew_at {
                return Ok(Credentials {
                    account: account.clone(),
                    tokens: tokens.clone(),
                });
            }
        }

        let account = match &state.account {
            Some(account) => account.clone(),
            None => Arc::new(self.authorize().await?),
        };
        let (account, data) = match self.request_tokens(&account).await {
            Err(Error::Auth { code, .. }) if code == STALE_APP_SECRET => {
                tracing::warn!(
                    endpoint = TOKEN_PATH,
                    "App secret was rotated, authorising again"
                );
                let fresh = Arc::new(self.authorize().await?);
                let data = self.request_tokens(&fresh).await?;
                (fresh, data)
            }
            other => (account, other?),
        };

        state.generation += 1;
        let tokens = Arc::new(Tokens {
            access_token: data.access_token,
            app_token: data.app_token,
            renew_at: renew_at(data.expires),
            generation: state.generation,
        });
        state.account = Some(account.clone());
        state.tokens = Some(tokens.clone());
        Ok(Credentials { account, tokens })
    }

    /// Asks `push_app_authorize` for the account sets and picks ours.
    pub async fn authorize(&self) -> Result<AccountSet> {
        let config = self.config();
        let request = Request::new(Method::Post, AUTHORIZE_PATH)
            .query("outerInstanceId", &config.outer_instance_id)
            .json(Value::Object(Default::default()));
        let body = self.send(request).await?;
        let data = wire::auth_data(AUTHORIZE_PATH, &body)?;
        let sets: Vec<AccountSet> = serde_json::from_value(data).map_err(|e| Error::Decode {
            endpoint: AUTHORIZE_PATH.to_owned(),
            message: e.to_string(),
        })?;
        pick_account_set(sets, config.account_id.as_deref())
    }

    async fn request_tokens(&self, account: &AccountSet) -> Result<TokenData> {
        let signature = crate::sign::app_signature(&account.app_key, account.app_secret.expose());
        let request = Request::new(Method::Get, TOKEN_PATH)
            .query("app_key", &account.app_key)
            .query("app_signature", &signature);
        let body = self.send(request).await?;
        let data = wire::auth_data(TOKEN_PATH, &body)?;
        let account_id = &account.account_id;
        tracing::info!(endpoint = TOKEN_PATH, %account_id, "Fetched 星辰 tokens");
        serde_json::from_value(data).map_err(|e| Error::Decode {
            endpoint: TOKEN_PATH.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The configured account set, or the first active one.
fn pick_account_set(sets: Vec<AccountSet>, wanted: Option<&str>) -> Result<AccountSet> {
    let found = match wanted {
        Some(id) => sets.into_iter().find(|set| set.account_id == id),
        None => sets.into_iter().find(|set| set.status == "1"),
    };
    found.ok_or_else(|| Error::Auth {
        endpoint: AUTHORIZE_PATH.to_owned(),
        code: String::new(),
        message: match wanted {
            Some(id) => format!("account set {id} is not authorised for this app"),
            None => "no active account set (status 1) is authorised for this app".to_owned(),
        },
    })
}

/// When to renew a token that expires at `expires_ms` (epoch ms): a tenth of its lifetime early,
/// at most five minutes.
fn renew_at(expires_ms: u64) -> Instant {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let lifetime = if expires_ms > now_ms {
        Duration::from_millis(expires_ms - now_ms)
    } else {
        ASSUMED_TOKEN_LIFETIME
    };
    let margin = (lifetime / 10).min(MAX_RENEW_MARGIN);
    Instant::now() + lifetime - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(account_id: &str, status: &str) -> AccountSet {
        AccountSet {
            app_key: "k".into(),
            app_secret: Secret::new("hidden-secret"),
            domain: "https://tf.jdy.com".into(),
            account_id: account_id.into(),
            group_name: "g".into(),
            status: status.into(),
        }
    }

    #[test]
    fn first_active_account_set_is_chosen_unless_one_is_named() {
        let sets = || vec![set("1", "0"), set("2", "1"), set("3", "1")];
        assert_eq!(
            pick_account_set(sets(), None).expect("active").account_id,
            "2"
        );
        assert_eq!(
            pick_account_set(sets(), Some("3"))
                .expect("named")
                .account_id,
            "3"
        );
        assert!(pick_account_set(sets(), Some("9")).is_err());
        assert!(!format!("{:?}", set("1", "1")).contains("hidden-secret"));
    }

    #[test]
    fn tokens_are_renewed_shortly_before_they_expire() {
        let now_ms = chrono::Utc::now().timestamp_millis() as u64;
        let at = renew_at(now_ms + 10_000);
        let left = at.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(8_000) && left <= Duration::from_millis(9_000),
            "{left:?}"
        );
        let day = renew_at(now_ms + 86_400_000).saturating_duration_since(Instant::now());
        assert!(day <= Duration::from_secs(86_400 - 299), "{day:?}");
    }
}
