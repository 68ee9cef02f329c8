//! Reading 星辰's answers: the HTTP status first (519 gateway errors, 429, other failures), then
//! the envelope of the endpoint family, into data or a typed [`Error`].
//!
//! Three envelopes exist: the auth endpoints' `{errcode, description, data}` (some tenants get
//! `{code: 200, msg, data}` instead), V1's `{success, message, errorCode, data}`, and inside a V1
//! save reply `{success, successPkIds, errorInfo[{id, msg}]}`. The texts that mark a repeated
//! bill number or an unknown number live here, in one place each.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::lenient;

/// Texts with which 星辰 rejects a repeated bill number.
const DUPLICATE_BILL_MARKERS: &[&str] = &["已存在", "组合值与其他表单重复"];

/// The text with which 星辰 answers a detail request for an unknown number or id.
const NOT_FOUND_MARKER: &str = "不存在";

/// How many characters of an unreadable body an error keeps.
const BODY_EXCERPT_CHARS: usize = 200;

/// The body of an HTTP 519 answer.
#[derive(Deserialize)]
struct GatewayBody {
    #[serde(default, deserialize_with = "lenient::count")]
    code: u64,
    #[serde(default, deserialize_with = "lenient::string")]
    description_cn: String,
    #[serde(default, deserialize_with = "lenient::string")]
    description: String,
    #[serde(default, deserialize_with = "lenient::string")]
    msg: String,
}

/// Turns a non-success HTTP status into its error; `Ok` for 2xx.
pub(crate) fn check_status(endpoint: &str, status: u16, body: &str) -> Result<(), Error> {
    match status {
        200..=299 => Ok(()),
        429 => Err(Error::RateLimited {
            endpoint: endpoint.to_owned(),
        }),
        519 => Err(gateway_error(endpoint, body)),
        _ => Err(Error::Http {
            endpoint: endpoint.to_owned(),
            status,
            body: excerpt(body),
        }),
    }
}

fn gateway_error(endpoint: &str, body: &str) -> Error {
    let Ok(parsed) = serde_json::from_str::<GatewayBody>(body) else {
        return Error::Http {
            endpoint: endpoint.to_owned(),
            status: 519,
            body: excerpt(body),
        };
    };
    let message = [parsed.description_cn, parsed.description, parsed.msg]
        .into_iter()
        .find(|text| !text.is_empty())
        .unwrap_or_default();
    Error::Gateway {
        endpoint: endpoint.to_owned(),
        code: parsed.code as i64,
        message,
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(BODY_EXCERPT_CHARS).collect()
}

fn decode_error(endpoint: &str, error: impl std::fmt::Display) -> Error {
    Error::Decode {
        endpoint: endpoint.to_owned(),
        message: error.to_string(),
    }
}

/// Either auth envelope.
#[derive(Deserialize)]
struct AuthEnvelope {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    errcode: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    description: String,
    #[serde(default, deserialize_with = "lenient::string")]
    msg: String,
    #[serde(default)]
    data: Value,
}

/// The data of an auth endpoint's answer, or its error.
pub(crate) fn auth_data(endpoint: &str, body: &str) -> Result<Value, Error> {
    let envelope: AuthEnvelope =
        serde_json::from_str(body).map_err(|e| decode_error(endpoint, e))?;
    let ok = match (&envelope.errcode, &envelope.code) {
        (Some(errcode), _) => errcode == "0",
        (None, Some(code)) => code == "200" || code == "0",
        (None, None) => false,
    };
    if ok {
        return Ok(envelope.data);
    }
    let code = envelope.errcode.or(envelope.code).unwrap_or_default();
    let message = if envelope.description.is_empty() {
        envelope.msg
    } else {
        envelope.description
    };
    Err(Error::Auth {
        endpoint: endpoint.to_owned(),
        code,
        message,
    })
}

/// The V1 business envelope.
#[derive(Deserialize)]
struct V1Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default, deserialize_with = "lenient::string")]
    message: String,
    #[serde(default, deserialize_with = "lenient::string")]
    description_cn: String,
    #[serde(default, rename = "errorCode", deserialize_with = "lenient::string")]
    error_code: String,
    #[serde(default)]
    data: Value,
}

/// The data of a V1 answer, or the rejection it carries.
pub(crate) fn v1_data(endpoint: &str, body: &str) -> Result<Value, Error> {
    let envelope: V1Envelope = serde_json::from_str(body).map_err(|e| decode_error(endpoint, e))?;
    if envelope.success {
        return Ok(envelope.data);
    }
    let message = if envelope.message.is_empty() {
        envelope.description_cn
    } else {
        envelope.message
    };
    Err(Error::Rejected {
        endpoint: endpoint.to_owned(),
        code: envelope.error_code,
        message,
    })
}

/// Whether a rejection of a detail request means "no such record".
pub(crate) fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Rejected { message, .. } if message.contains(NOT_FOUND_MARKER))
}

/// The inner reply of a V1 save.
#[derive(Deserialize)]
struct SaveReply {
    #[serde(default)]
    success: bool,
    #[serde(default, rename = "successPkIds")]
    success_pk_ids: Vec<Value>,
    #[serde(default, rename = "errorInfo")]
    error_info: Vec<ErrorInfo>,
    #[serde(default, deserialize_with = "lenient::string")]
    message: String,
}

#[derive(Deserialize)]
struct ErrorInfo {
    #[serde(default, deserialize_with = "lenient::string")]
    msg: String,
}

/// The id of the saved bill, or the rejection the save reply carries.
pub(crate) fn saved_id(endpoint: &str, billno: &str, data: Value) -> Result<String, Error> {
    let reply: SaveReply = serde_json::from_value(data).map_err(|e| decode_error(endpoint, e))?;
    if reply.success {
        let id = reply.success_pk_ids.first().and_then(scalar_text);
        return id.ok_or_else(|| decode_error(endpoint, "save succeeded without successPkIds"));
    }
    let mut messages: Vec<String> = reply
        .error_info
        .into_iter()
        .map(|info| info.msg)
        .filter(|m| !m.is_empty())
        .collect();
    if messages.is_empty() {
        messages.push(reply.message);
    }
    let message = messages.join("; ");
    if DUPLICATE_BILL_MARKERS
        .iter()
        .any(|marker| message.contains(marker))
    {
        return Err(Error::DuplicateBillNo {
            endpoint: endpoint.to_owned(),
            billno: billno.to_owned(),
            message,
        });
    }
    Err(Error::Rejected {
        endpoint: endpoint.to_owned(),
        code: String::new(),
        message,
    })
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// One page of a V1 list.
pub(crate) struct Page<T> {
    /// The rows of this page.
    pub rows: Vec<T>,
    /// How many pages the list has.
    pub total_pages: u64,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    rows: Vec<Value>,
    #[serde(default, deserialize_with = "lenient::count")]
    totalpage: u64,
}

/// Reads the data of a V1 list answer.
pub(crate) fn page<T: DeserializeOwned>(endpoint: &str, data: Value) -> Result<Page<T>, Error> {
    if data.is_null() {
        return Ok(Page {
            rows: Vec::new(),
            total_pages: 0,
        });
    }
    let raw: RawPage = serde_json::from_value(data).map_err(|e| decode_error(endpoint, e))?;
    let rows = raw
        .rows
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| decode_error(endpoint, e))?;
    Ok(Page {
        rows,
        total_pages: raw.totalpage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_keep_code_and_chinese_description() {
        let body = r#"{"code":4008,"description":"X-Api-Signature is invalid","description_cn":"签名错误"}"#;
        let error = check_status("/p", 519, body).expect_err("519 is an error");
        assert_eq!(error.gateway_code(), Some(4008));
        assert!(error.to_string().contains("签名错误"));
        let overload = check_status("/p", 519, r#"{"code":"5007"}"#).expect_err("error");
        assert!(overload.is_transient());
    }

    #[test]
    fn both_auth_envelopes_are_accepted() {
        let a = auth_data("/a", r#"{"errcode":0,"description":"success","data":[1]}"#);
        let b = auth_data("/a", r#"{"code":200,"msg":"ok","data":[1]}"#);
        assert_eq!(a.expect("errcode envelope"), b.expect("code envelope"));
        let stale = auth_data(
            "/a",
            r#"{"errcode":1030002006,"description":"授权密钥校验失败"}"#,
        );
        assert!(matches!(stale, Err(Error::Auth { code, .. }) if code == "1030002006"));
    }

    #[test]
    fn save_reply_separates_duplicates_from_other_rejections() {
        let dup =
            serde_json::json!({"success":false,"errorInfo":[{"id":"","msg":"单据编号[A1]已存在"}]});
        assert!(
            saved_id("/s", "A1", dup)
                .expect_err("dup")
                .is_duplicate_bill()
        );
        let other = serde_json::json!({"success":false,"errorInfo":[{"msg":"第1行数量必须大于0"}]});
        let error = saved_id("/s", "A1", other).expect_err("rejected");
        assert!(!error.is_transient() && error.to_string().contains("数量必须大于0"));
        let ok = serde_json::json!({"success":true,"successPkIds":[178]});
        assert_eq!(saved_id("/s", "A1", ok).expect("saved"), "178");
    }

    #[test]
    fn v1_failure_carries_the_message() {
        let error = v1_data(
            "/d",
            r#"{"success":false,"message":"参数number[X]不存在","errorCode":"0"}"#,
        )
        .expect_err("rejected");
        assert!(is_not_found(&error));
    }
}
