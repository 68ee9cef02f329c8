//! The Qimen signature (TOP `signTopRequest`), which is the only signature 企业奇门 needs.
//!
//! Every request parameter except `sign` takes part, system and business alike; pairs with an
//! empty key or value are dropped (the client never sends them either, so every signer agrees);
//! keys are sorted by byte order and each key is followed by its raw value. `md5` wraps that
//! string in the secret on both sides, `hmac` and `hmac-sha256` use the secret as the key. The hex
//! digest is uppercase. The simulator checks signatures with its own code, on purpose.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The `sign_method` a request is signed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum SignMethod {
    /// MD5 over `secret + pairs + secret`; what every 企业奇门 client found in public uses.
    #[default]
    #[serde(rename = "md5")]
    #[value(name = "md5")]
    Md5,
    /// HMAC-MD5 keyed with the secret.
    #[serde(rename = "hmac")]
    #[value(name = "hmac")]
    Hmac,
    /// HMAC-SHA256 keyed with the secret.
    #[serde(rename = "hmac-sha256")]
    #[value(name = "hmac-sha256")]
    HmacSha256,
}

impl SignMethod {
    /// The value of the `sign_method` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::Hmac => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

/// Signs `params` (without `sign`) with `secret`; returns the uppercase hex `sign` value.
pub fn qimen_sign(params: &[(&str, &str)], secret: &str, method: SignMethod) -> String {
    let joined = string_to_sign(params);
    match method {
        SignMethod::Md5 => {
            let mut digest = Md5::new();
            digest.update(secret.as_bytes());
            digest.update(joined.as_bytes());
            digest.update(secret.as_bytes());
            upper_hex(&digest.finalize())
        }
        SignMethod::Hmac => {
            // Invariant: HMAC accepts keys of any length, so new_from_slice cannot fail.
            let mut mac = hmac::Hmac::<Md5>::new_from_slice(secret.as_bytes())
                .expect("hmac takes a key of any length");
            mac.update(joined.as_bytes());
            upper_hex(&mac.finalize().into_bytes())
        }
        SignMethod::HmacSha256 => {
            // Invariant: as above.
            let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("hmac takes a key of any length");
            mac.update(joined.as_bytes());
            upper_hex(&mac.finalize().into_bytes())
        }
    }
}

/// The sorted `key1value1key2value2…` concatenation, empty pairs and `sign` left out.
fn string_to_sign(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<_> = params
        .iter()
        .filter(|(key, value)| !key.is_empty() && !value.is_empty() && *key != "sign")
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    pairs.iter().fold(String::new(), |mut out, (key, value)| {
        out.push_str(key);
        out.push_str(value);
        out
    })
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;

    /// The parameters of vector V4 (`reference/wdt-qimen.md` §3.2), `sign_method` left to the test.
    fn v4_params(sign_method: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("method", "wdt.stockout.order.query.trade"),
            ("app_key", "12345678"),
            ("target_app_key", "87654321"),
            ("timestamp", "2024-05-01 12:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", sign_method),
            ("sid", "demo_sid"),
            ("start_time", "2024-05-01 00:00:00"),
            ("end_time", "2024-05-01 23:59:59"),
            ("is_by_modified", "1"),
            ("page_no", "0"),
            ("page_size", "100"),
        ]
    }

    const SECRET: &str = "qm_demo_secret";

    #[test]
    fn vector_v4_md5() {
        let sign = qimen_sign(&v4_params("md5"), SECRET, SignMethod::Md5);
        assert_eq!(sign, "4708216DA3E0A93F84B4C602B9A30FE1");
    }

    #[test]
    fn vector_v4h_hmac_md5() {
        let sign = qimen_sign(&v4_params("hmac"), SECRET, SignMethod::Hmac);
        assert_eq!(sign, "DAAB61464F39965FE7A82312C2CE89ED");
    }

    #[test]
    fn vector_v4s_hmac_sha256() {
        let sign = qimen_sign(&v4_params("hmac-sha256"), SECRET, SignMethod::HmacSha256);
        assert_eq!(
            sign,
            "6108B63E2F992E53956F0C6566B6CC8351C6BC983D291D1F57BF21CD33141F5B"
        );
    }

    #[test]
    fn vector_v5a_empty_parameter_is_skipped() {
        let mut params = v4_params("md5");
        params.push(("status", ""));
        let sign = qimen_sign(&params, SECRET, SignMethod::Md5);
        assert_eq!(sign, "4708216DA3E0A93F84B4C602B9A30FE1");
    }

    #[test]
    fn an_existing_sign_parameter_does_not_take_part() {
        let mut params = v4_params("md5");
        params.push(("sign", "STALE"));
        let sign = qimen_sign(&params, SECRET, SignMethod::Md5);
        assert_eq!(sign, "4708216DA3E0A93F84B4C602B9A30FE1");
    }
}
