//! The gateway's side of the X-Api-* signature: rebuild the string to sign from the request as it
//! arrived and compare.
//!
//! This is written independently of the `xingchen` client crate, on purpose: if both shared one
//! implementation, a bug in it would sign and verify alike and no test would notice. The rules are
//! the official Java encoder's (path encoded whole; query parsed, re-sorted, values encoded twice;
//! nonce line before timestamp line; trailing newline). Which header is missing or stale, and the
//! gateway codes for each, are decided here; answering them is left to the gateway module.

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a signed request was refused, as the gateway's 519 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 4001: `X-Api-Auth-Version` is not 2.0.
    AuthVersion = 4001,
    /// 4002: `X-Api-ClientID` is missing.
    ClientIdEmpty = 4002,
    /// 4003: `X-Api-ClientID` is unknown.
    ClientIdInvalid = 4003,
    /// 4006: `X-Api-TimeStamp` is missing or outside the tolerance.
    Timestamp = 4006,
    /// 4007: `X-Api-SignHeaders` does not name the nonce and the timestamp.
    SignHeaders = 4007,
    /// 4008: `X-Api-Signature` does not match.
    Signature = 4008,
}

/// What the gateway expects of a signed request.
pub struct Expected<'a> {
    /// The only client id accepted.
    pub client_id: &'a str,
    /// Its secret, the HMAC key.
    pub client_secret: &'a str,
    /// The server's clock, epoch ms.
    pub now_ms: i64,
    /// How far `X-Api-TimeStamp` may stray from `now_ms`.
    pub tolerance_ms: i64,
}

/// Checks the signature headers of a request with this method, path and raw query.
pub fn verify(
    expected: &Expected<'_>,
    method: &str,
    path: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };

    if header("X-Api-Auth-Version") != "2.0" {
        return Err(Refusal::AuthVersion);
    }
    match header("X-Api-ClientID") {
        "" => return Err(Refusal::ClientIdEmpty),
        id if id != expected.client_id => return Err(Refusal::ClientIdInvalid),
        _ => {}
    }
    if !names_nonce_and_timestamp(header("X-Api-SignHeaders")) {
        return Err(Refusal::SignHeaders);
    }
    let timestamp = header("X-Api-TimeStamp");
    let stamp_ms: i64 = timestamp.parse().map_err(|_| Refusal::Timestamp)?;
    if (expected.now_ms - stamp_ms).abs() > expected.tolerance_ms {
        return Err(Refusal::Timestamp);
    }
    let nonce = header("X-Api-Nonce");
    if nonce.is_empty() {
        return Err(Refusal::SignHeaders);
    }

    let text = text_to_sign(
        method,
        path,
        &parse_query(raw_query.unwrap_or("")),
        nonce,
        timestamp,
    );
    if header("X-Api-Signature") == sign(expected.client_secret, &text) {
        Ok(())
    } else {
        Err(Refusal::Signature)
    }
}

/// The list may come in either order and any case; the server sorts it.
fn names_nonce_and_timestamp(list: &str) -> bool {
    let mut names: Vec<String> = list
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    names.sort();
    names == ["x-api-nonce", "x-api-timestamp"]
}

/// Decodes `a=1&b=x%20y` as a form would (`+` is a space).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// `%XX` for every byte outside `keep`, `+` for a space.
fn escape(text: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b if b.is_ascii_alphanumeric() || keep.contains(&b) => out.push(char::from(b)),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `java.net.URLEncoder`.
fn java_escape(text: &str) -> String {
    escape(text, b".-*_")
}

/// The gateway's `GwURLEncoder`.
fn gateway_escape(text: &str) -> String {
    escape(text, b"-_.~")
}

/// The string the client should have signed.
pub fn text_to_sign(
    method: &str,
    path: &str,
    query: &[(String, String)],
    nonce: &str,
    timestamp: &str,
) -> String {
    let mut once: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", gateway_escape(k), java_escape(v)))
        .collect();
    once.sort();
    let twice: Vec<String> = once
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            format!("{}={}", gateway_escape(k), gateway_escape(v))
        })
        .collect();
    format!(
        "{}\n{}\n{}\nx-api-nonce:{}\nx-api-timestamp:{}\n",
        method.to_ascii_uppercase(),
        gateway_escape(path),
        twice.join("&"),
        nonce,
        timestamp
    )
}

/// `base64(hex(HMAC-SHA256(key, text)))`.
pub fn sign(key: &str, text: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        unreachable!("hmac accepts keys of every length");
    };
    mac.update(text.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_example_verifies() {
        let query = parse_query(
            "app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%3D%3D&app_key=bVZgAZOv1",
        );
        let text = text_to_sign(
            "GET",
            "/jdyconnector/app_management/kingdee_auth_token",
            &query,
            "4427456950",
            "1670305063559",
        );
        assert_eq!(
            sign("f2adcfef73369bfc4e1384677d38a0ff", &text),
            "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ=="
        );
    }

    #[test]
    fn star_and_space_follow_the_java_encoder() {
        let query = vec![
            ("page".into(), "1".into()),
            ("search".into(), "上海 客户*01".into()),
        ];
        let text = text_to_sign(
            "GET",
            "/jdy/v2/bd/customer",
            &query,
            "1234567890",
            "1700000000000",
        );
        assert_eq!(
            sign("0123456789abcdef0123456789abcdef", &text),
            "MWNlNzUwNDkxYTkyYzY5MGQ3MTA5ZGQ3NDJhNjAzY2Y5MDYwNzdkYmZmZGUyODUzYTI1ZjBhYjI1MDI4OTU3ZA=="
        );
    }

    #[test]
    fn sign_headers_are_accepted_in_either_order_only_when_complete() {
        assert!(names_nonce_and_timestamp("X-Api-TimeStamp,X-Api-Nonce"));
        assert!(names_nonce_and_timestamp("x-api-nonce, x-api-timestamp"));
        assert!(!names_nonce_and_timestamp("X-Api-Nonce"));
    }

    #[test]
    fn a_stale_timestamp_is_refused_before_the_signature() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("X-Api-Auth-Version", "2.0"),
            ("X-Api-ClientID", "c"),
            ("X-Api-SignHeaders", "X-Api-Nonce,X-Api-TimeStamp"),
            ("X-Api-TimeStamp", "1000"),
            ("X-Api-Nonce", "1"),
            ("X-Api-Signature", "x"),
        ] {
            headers.insert(name, value.parse().expect("header value"));
        }
        let expected = Expected {
            client_id: "c",
            client_secret: "s",
            now_ms: 1000 + 300_001,
            tolerance_ms: 300_000,
        };
        assert_eq!(
            verify(&expected, "GET", "/p", None, &headers),
            Err(Refusal::Timestamp)
        );
        let fresh = Expected {
            now_ms: 1000,
            ..expected
        };
        assert_eq!(
            verify(&fresh, "GET", "/p", None, &headers),
            Err(Refusal::Signature)
        );
    }
}
