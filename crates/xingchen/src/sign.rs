//! The gateway's X-Api-* signature and the `app_signature` of the token request.
//!
//! This follows the official Kingdee Java client (`ApigwClient` with its `GwURLEncoder`): the path
//! is encoded whole, query values are encoded twice (first as `java.net.URLEncoder` does, then with
//! the gateway encoder), the once-encoded pairs are sorted, and the string to sign ends with a
//! newline after the timestamp line. The body is never signed. Sending the request is left to
//! [`crate::client`]; this module only computes strings and headers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The value of `X-Api-Auth-Version`.
pub const AUTH_VERSION: &str = "2.0";

/// The value of `X-Api-SignHeaders`, in the order the official Java client sends it.
pub const SIGN_HEADERS: &str = "X-Api-Nonce,X-Api-TimeStamp";

/// Encodes as `java.net.URLEncoder` does: keeps `A-Za-z0-9 . - * _`, writes space as `+`.
pub fn java_url_encode(text: &str) -> String {
    encode_with(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b'_')
    })
}

/// Encodes as the gateway's `GwURLEncoder` does: keeps `A-Za-z0-9 - _ . ~`, writes space as `+`.
pub fn gw_url_encode(text: &str) -> String {
    encode_with(text, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
    })
}

fn encode_with(text: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for &byte in text.as_bytes() {
        if keep(byte) {
            out.push(byte as char);
        } else if byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
    }
    out
}

/// Query parameters in the order the signature sorts them, each encoded once.
///
/// The Java client sorts the once-encoded `name=value` strings; the same order is used on the
/// wire so that the request and its signature can be compared by eye.
fn sorted_once_encoded(params: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (gw_url_encode(k), java_url_encode(v)))
        .collect();
    pairs.sort_by_cached_key(|(k, v)| format!("{k}={v}"));
    pairs
}

/// The query line of the string to sign: sorted, keys and values encoded twice.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    sorted_once_encoded(params)
        .iter()
        .map(|(k, v)| format!("{}={}", gw_url_encode(k), gw_url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query as sent on the wire: the signature's order, each name and value encoded once.
pub fn wire_query(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    pairs.sort_by_cached_key(|(k, v)| format!("{}={}", gw_url_encode(k), java_url_encode(v)));
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", gw_url_encode(k), gw_url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The exact string the gateway signs; nonce before timestamp, whatever `X-Api-SignHeaders` says.
pub fn string_to_sign(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    nonce: &str,
    timestamp_ms: &str,
) -> String {
    format!(
        "{}\n{}\n{}\nx-api-nonce:{nonce}\nx-api-timestamp:{timestamp_ms}\n",
        method.to_ascii_uppercase(),
        gw_url_encode(path),
        canonical_query(params),
    )
}

/// `base64(lowercase_hex(HMAC-SHA256(key, message)))`, the shape of every gateway signature.
pub fn hmac_hex_base64(key: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this constructor cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac takes any key length");
    mac.update(message.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    BASE64.encode(hex)
}

/// The `app_signature` query parameter of `kingdee_auth_token`: the app key signed with the secret.
pub fn app_signature(app_key: &str, app_secret: &str) -> String {
    hmac_hex_base64(app_secret, app_key)
}

/// The six X-Api-* headers of one signed request.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `X-Api-ClientID`.
    pub client_id: String,
    /// `X-Api-TimeStamp`, epoch milliseconds.
    pub timestamp_ms: String,
    /// `X-Api-Nonce`.
    pub nonce: String,
    /// `X-Api-Signature`.
    pub signature: String,
}

impl SignatureHeaders {
    /// Signs one request with the client secret.
    pub fn sign(
        client_id: &str,
        client_secret: &str,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        nonce: &str,
        timestamp_ms: &str,
    ) -> SignatureHeaders {
        let text = string_to_sign(method, path, params, nonce, timestamp_ms);
        SignatureHeaders {
            client_id: client_id.to_owned(),
            timestamp_ms: timestamp_ms.to_owned(),
            nonce: nonce.to_owned(),
            signature: hmac_hex_base64(client_secret, &text),
        }
    }

    /// The headers as name and value pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            ("X-Api-ClientID", &self.client_id),
            ("X-Api-Auth-Version", AUTH_VERSION),
            ("X-Api-TimeStamp", &self.timestamp_ms),
            ("X-Api-Nonce", &self.nonce),
            ("X-Api-SignHeaders", SIGN_HEADERS),
            ("X-Api-Signature", &self.signature),
        ]
    }
}

impl std::fmt::Debug for SignatureHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signature is not a secret, but it proves nothing useful in a log either.
        f.debug_struct("SignatureHeaders")
            .field("client_id", &self.client_id)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// A nonce as the Java client makes it: ten random decimal digits, the first not zero.
pub fn new_nonce() -> String {
    use rand::Rng;
    rand::rng()
        .random_range(1_000_000_000u64..10_000_000_000)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NONCE: &str = "1234567890";
    const TS: &str = "1700000000000";
    const TOKEN_PATH: &str = "/jdyconnector/app_management/kingdee_auth_token";

    fn sign(method: &str, path: &str, params: &[(&str, &str)]) -> (String, String) {
        let text = string_to_sign(method, path, params, NONCE, TS);
        let signature = hmac_hex_base64(SECRET, &text);
        (text, signature)
    }

    #[test]
    fn tv_a_app_signature_matches_the_doc_example() {
        assert_eq!(
            app_signature("abc", "abc123"),
            "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ=="
        );
    }

    #[test]
    fn tv_b_token_request_matches_the_official_doc_example() {
        let app_sig = "MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA==";
        let params = [("app_key", "bVZgAZOv1"), ("app_signature", app_sig)];
        let text = string_to_sign("GET", TOKEN_PATH, &params, "4427456950", "1670305063559");
        assert_eq!(
            text,
            "GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\napp_key=bVZgAZOv1&\
             app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0\
             NzZhN2YxZDJmOTlkZA%253D%253D\nx-api-nonce:4427456950\nx-api-timestamp:1670305063559\n"
        );
        let headers = SignatureHeaders::sign(
            "205022",
            "f2adcfef73369bfc4e1384677d38a0ff",
            "GET",
            TOKEN_PATH,
            &params,
            "4427456950",
            "1670305063559",
        );
        assert_eq!(
            headers.signature,
            "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ=="
        );
    }

    #[test]
    fn tv_c_app_signature_of_a_forty_char_secret() {
        assert_eq!(
            app_signature("AbCd1234", "fedcba9876543210fedcba9876543210fedcba98"),
            "NTJiNzk5ZmY5ZGFiZTE3MGNhNzM0OWVjN2EzZDZhNTk3NDEzNGY2ZDU4ZmQzNDhkODYxZmMyZDNlMmI3MjNmMw=="
        );
    }

    #[test]
    fn tv_d_token_request_encodes_base64_padding_twice() {
        let app_sig = app_signature("AbCd1234", "fedcba9876543210fedcba9876543210fedcba98");
        let (text, signature) = sign(
            "GET",
            TOKEN_PATH,
            &[("app_key", "AbCd1234"), ("app_signature", &app_sig)],
        );
        assert!(
            text.contains("ZmQzNDhkODYxZmMyZDNlMmI3MjNmMw%253D%253D\n"),
            "{text}"
        );
        assert_eq!(
            signature,
            "Yjc0ZWQ1ZDJjM2E3NmRhNGI3MjFkMWFiN2JhZTQ5MzkxMDgxM2ZmNDdmNmJhMWYyZTYwYTU1NWY5ZGEzMWM1Zg=="
        );
    }

    #[test]
    fn tv_e_push_app_authorize_signs_the_outer_instance_id() {
        let (text, signature) = sign(
            "post",
            "/jdyconnector/app_management/push_app_authorize",
            &[("outerInstanceId", "509132114453729280")],
        );
        assert_eq!(
            text,
            "POST\n%2Fjdyconnector%2Fapp_management%2Fpush_app_authorize\n\
             outerInstanceId=509132114453729280\nx-api-nonce:1234567890\n\
             x-api-timestamp:1700000000000\n"
        );
        assert_eq!(
            signature,
            "MzkzMDYzNDgxMWE5NTc3ZDEwNTAzZWQwMWUzMDZjNmMyMTQ2MGQwOGVhYTg4ODU0ODU5ZGZiZjE2NmNmYmFhNQ=="
        );
    }

    #[test]
    fn tv_f_empty_query_keeps_its_line() {
        let (text, signature) = sign("POST", "/jdy/v2/scm/sal_out_bound", &[]);
        assert_eq!(
            text,
            "POST\n%2Fjdy%2Fv2%2Fscm%2Fsal_out_bound\n\nx-api-nonce:1234567890\n\
             x-api-timestamp:1700000000000\n"
        );
        assert_eq!(
            signature,
            "NGYxZjdhMjBlZTdiN2FhMTUyYzg0M2IwM2E3NmMyOWM4NjRkZTc0Y2M0Y2EwY2FkY2JhOThkZGE1YTM5OThmNQ=="
        );
    }

    #[test]
    fn tv_g_sorted_query_with_three_parameters() {
        let params = [("page", "1"), ("page_size", "100"), ("search", "A-001")];
        let (text, signature) = sign("GET", "/jdy/v2/bd/material", &params);
        assert!(
            text.contains("\npage=1&page_size=100&search=A-001\n"),
            "{text}"
        );
        assert_eq!(
            signature,
            "M2EzZDg4YmI5ODVjYjFkM2JkNDE5NTc0ZDlhOTk3NzgwZDgxMTQzYmM1M2RmYmYzOGRhMWNkMGJiNzMzNGZkOQ=="
        );
    }

    #[test]
    fn tv_h_insertion_order_does_not_matter() {
        let (text, signature) = sign(
            "GET",
            "/jdy/v2/bd/material",
            &[("search", "A-001"), ("page", "1")],
        );
        assert!(text.contains("\npage=1&search=A-001\n"), "{text}");
        assert_eq!(
            signature,
            "ZGI3NDM3NWQ2MjcwNjRjMmY1MjYyODI1OTYyMjkxNWZhZDJlYzljZThiNTJiNjdlYmY5OWExZTE4ZGU1ZmEyZA=="
        );
        assert_eq!(
            wire_query(&[("search", "A-001"), ("page", "1")]),
            "page=1&search=A-001"
        );
    }

    #[test]
    fn tv_i_space_and_star_follow_the_java_encoder() {
        let (text, signature) = sign(
            "GET",
            "/jdy/v2/bd/customer",
            &[("page", "1"), ("search", "上海 客户*01")],
        );
        assert!(
            text.contains(
                "search=%25E4%25B8%258A%25E6%25B5%25B7%2B%25E5%25AE%25A2%25E6%2588%25B7%2A01"
            ),
            "{text}"
        );
        assert_eq!(
            signature,
            "MWNlNzUwNDkxYTkyYzY5MGQ3MTA5ZGQ3NDJhNjAzY2Y5MDYwNzdkYmZmZGUyODUzYTI1ZjBhYjI1MDI4OTU3ZA=="
        );
    }

    #[test]
    fn headers_name_every_x_api_field() {
        let headers = SignatureHeaders::sign("c", SECRET, "POST", "/p", &[], NONCE, TS);
        let names: Vec<_> = headers.pairs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "X-Api-ClientID",
                "X-Api-Auth-Version",
                "X-Api-TimeStamp",
                "X-Api-Nonce",
                "X-Api-SignHeaders",
                "X-Api-Signature"
            ]
        );
        assert_eq!(new_nonce().len(), 10);
    }
}
