//! Reading the Qimen answer to `wdt.stockout.order.query.trade`: the envelope, then the orders.
//!
//! A call failed when the HTTP status is not 200, when the body holds `error_response`, when
//! `response.flag` is `failure`, or when `response.errorcode` is missing or not zero. The exact
//! codes the real router uses for each failure are not public (reference `wdt-qimen.md` §6 marks
//! them open), so [`classify`] is the one place that maps codes and texts to [`WdtError`]
//! variants: it knows the TOP codes, the `1012` rate limit, and the codes the project's simulator
//! sends. Any body, however odd, gives orders or a typed error, never a panic.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Credential, Failure, WdtError};
use crate::lenient::Lenient;
use crate::order::StockoutOrder;

/// One page of orders.
#[derive(Debug)]
pub struct Page {
    /// `total_count`: how many orders match the query over all pages (meaningful on page 0).
    pub total_count: Option<u64>,
    /// The page's orders, in the order WDT sent them.
    pub orders: Vec<StockoutOrder>,
}

#[derive(Deserialize)]
struct Envelope {
    response: Option<Box<RawValue>>,
    error_response: Option<Value>,
}

#[derive(Deserialize)]
struct Body {
    flag: Option<Value>,
    code: Option<Value>,
    message: Option<Value>,
    msg: Option<Value>,
    sub_code: Option<Value>,
    sub_message: Option<Value>,
    sub_msg: Option<Value>,
    errorcode: Option<Value>,
    total_count: Option<Box<RawValue>>,
    stockout_list: Option<Box<RawValue>>,
}

/// Reads an answer of the Qimen router: HTTP status and body.
pub fn parse_page(http_status: u16, body: &[u8]) -> Result<Page, WdtError> {
    check_status(http_status)?;
    let envelope: Envelope = serde_json::from_slice(body).map_err(malformed("answer"))?;
    if let Some(error) = envelope.error_response {
        return Err(classify(failure_of_error_response(&error)));
    }
    let raw = envelope.response.ok_or_else(|| WdtError::Malformed {
        detail: "answer has neither response nor error_response".into(),
    })?;
    let body: Body = serde_json::from_str(raw.get()).map_err(malformed("response"))?;
    check_success(&body)?;
    Ok(Page {
        total_count: total_count(&body)?,
        orders: orders(body.stockout_list)?,
    })
}

fn check_status(http_status: u16) -> Result<(), WdtError> {
    match http_status {
        200 => Ok(()),
        429 => Err(WdtError::RateLimited {
            failure: Failure {
                code: "429".into(),
                message: "http 429".into(),
                ..Failure::default()
            },
        }),
        500..=599 => Err(WdtError::ServerError {
            status: http_status,
        }),
        _ => Err(WdtError::HttpStatus {
            status: http_status,
        }),
    }
}

fn malformed(what: &'static str) -> impl Fn(serde_json::Error) -> WdtError {
    move |e| WdtError::Malformed {
        detail: format!("{what} is not the expected json: {e}"),
    }
}

fn check_success(body: &Body) -> Result<(), WdtError> {
    let either = |a: &Option<Value>, b: &Option<Value>| {
        let first = text(a.as_ref());
        if first.is_empty() {
            text(b.as_ref())
        } else {
            first
        }
    };
    let failure = Failure {
        code: text(body.code.as_ref()),
        message: either(&body.message, &body.msg),
        sub_code: text(body.sub_code.as_ref()),
        sub_message: either(&body.sub_message, &body.sub_msg),
    };
    if text(body.flag.as_ref()).eq_ignore_ascii_case("failure") {
        return Err(classify(failure));
    }
    match body.errorcode.as_ref().map(|code| text(Some(code))) {
        Some(code) if code.trim() == "0" => Ok(()),
        Some(code) => Err(classify(Failure { code, ..failure })),
        None => Err(WdtError::Malformed {
            detail: "response has no errorcode".into(),
        }),
    }
}

fn total_count(body: &Body) -> Result<Option<u64>, WdtError> {
    let Some(raw) = &body.total_count else {
        return Ok(None);
    };
    let count = i64::from_json(raw.get()).map_err(|e| WdtError::Malformed {
        detail: format!("total_count: {e}"),
    })?;
    count
        .map(|count| {
            u64::try_from(count).map_err(|_| WdtError::Malformed {
                detail: format!("total_count is negative: {count}"),
            })
        })
        .transpose()
}

fn orders(list: Option<Box<RawValue>>) -> Result<Vec<StockoutOrder>, WdtError> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let items: Vec<Box<RawValue>> = match list.get().trim() {
        "null" | "\"\"" => return Ok(Vec::new()),
        text => serde_json::from_str(text).map_err(malformed("stockout_list"))?,
    };
    items.into_iter().map(StockoutOrder::from_raw).collect()
}

fn failure_of_error_response(error: &Value) -> Failure {
    let field = |name: &str| text(error.get(name));
    Failure {
        code: field("code"),
        message: field("msg"),
        sub_code: field("sub_code"),
        sub_message: field("sub_msg"),
    }
}

/// A scalar's text: a string's content, any other JSON value as written.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Decides what a failure envelope means.
///
/// The order matters: a rate limit wins over everything because it is the one failure that says
/// "same request, later"; then the credential and window failures, which name what to fix.
pub fn classify(failure: Failure) -> WdtError {
    let codes = [failure.code.as_str(), failure.sub_code.as_str()];
    let words = format!(
        "{} {} {} {}",
        failure.code, failure.message, failure.sub_code, failure.sub_message
    )
    .to_lowercase();
    let said = |needles: &[&str]| needles.iter().any(|needle| words.contains(needle));

    let rate_words = [
        "频繁",
        "too frequent",
        "call-limited",
        "call limited",
        "accesscontrol.limited",
    ];
    if codes.contains(&"1012") || codes.contains(&"7") || said(&rate_words) {
        WdtError::RateLimited { failure }
    } else if codes.contains(&"25") || said(&["sign-check", "signature", "签名"]) {
        WdtError::Signature { failure }
    } else if let Some(credential) = refused_credential(&failure, &words) {
        WdtError::Unauthorized {
            credential,
            failure,
        }
    } else if said(&["timestamp", "时间戳"]) {
        WdtError::Clock { failure }
    } else if said(&["30天", "30 days", "时间跨度", "time-range", "time range"]) {
        WdtError::WindowTooLong { failure }
    } else if failure.sub_code.starts_with("isp.") {
        WdtError::ServiceFailure { failure }
    } else {
        WdtError::Rejected { failure }
    }
}

fn refused_credential(failure: &Failure, words: &str) -> Option<Credential> {
    let said = |needles: &[&str]| needles.iter().any(|needle| words.contains(needle));
    if said(&[
        "target_app_key",
        "target-app-key",
        "target app key",
        "target-appkey",
    ]) {
        Some(Credential::TargetAppKey)
    } else if failure.code == "29" || said(&["app_key", "app-key", "app key", "appkey"]) {
        Some(Credential::AppKey)
    } else if said(&["isv.sid", "invalid sid", "sid-", "卖家账号"]) {
        Some(Credential::Sid)
    } else if failure.code == "27" || said(&["unauthorized", "未授权", "无权"]) {
        Some(Credential::Unspecified)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(body: &str) -> Result<Page, WdtError> {
        parse_page(200, body.as_bytes())
    }

    #[test]
    fn success_gives_total_and_orders_with_ids_as_numbers_or_strings() {
        let page = parse(
            r#"{"response":{"errorcode":0,"total_count":"2",
                "stockout_list":[{"stockout_id":1},{"stockout_id":"2"}]}}"#,
        )
        .unwrap();
        assert_eq!(page.total_count, Some(2));
        let ids: Vec<_> = page.orders.iter().map(StockoutOrder::stockout_id).collect();
        assert_eq!(ids, [1, 2]);
        let empty = parse(r#"{"response":{"errorcode":"0","total_count":0}}"#).unwrap();
        assert!(empty.orders.is_empty());
    }

    #[test]
    fn missing_or_non_zero_errorcode_is_a_failure() {
        assert!(matches!(
            parse(r#"{"response":{"total_count":1}}"#),
            Err(WdtError::Malformed { .. })
        ));
        let error =
            parse(r#"{"response":{"errorcode":2900,"message":"时间范围与订单编号不能全部为空"}}"#)
                .unwrap_err();
        assert!(matches!(error, WdtError::Rejected { .. }), "{error}");
        assert!(error.to_string().contains("2900"));
    }

    #[test]
    fn failure_envelopes_are_classified_by_cause() {
        let failure = |code: &str, message: &str, sub_code: &str, sub_message: &str| {
            parse(&format!(
                r#"{{"response":{{"flag":"failure","code":"{code}","message":"{message}",
                    "sub_code":"{sub_code}","sub_message":"{sub_message}"}}}}"#
            ))
            .unwrap_err()
        };
        let limited = failure("7", "App Call Limited", "1012", "系统调用频繁");
        assert!(matches!(limited, WdtError::RateLimited { .. }) && limited.is_transient());
        let sign = failure(
            "25",
            "Invalid signature",
            "sign-check-failure",
            "Illegal request",
        );
        assert!(matches!(sign, WdtError::Signature { .. }) && !sign.is_transient());
        let target = failure(
            "50",
            "Invalid target app key",
            "isv.invalid-target-app-key",
            "",
        );
        assert!(matches!(
            target,
            WdtError::Unauthorized {
                credential: Credential::TargetAppKey,
                ..
            }
        ));
        let sid = failure(
            "50",
            "Invalid sid",
            "isv.sid-not-authorized",
            "卖家账号未授权",
        );
        assert!(matches!(
            sid,
            WdtError::Unauthorized {
                credential: Credential::Sid,
                ..
            }
        ));
        let window = failure(
            "40",
            "Invalid arguments",
            "isv.invalid-parameter",
            "查询时间跨度不能超过30天",
        );
        assert!(matches!(window, WdtError::WindowTooLong { .. }) && !window.is_transient());
        let isp = failure(
            "15",
            "Remote service error",
            "isp.remote-service-timeout",
            "",
        );
        assert!(isp.is_transient());
    }

    #[test]
    fn error_response_and_http_status_are_failures() {
        let error = parse(r#"{"error_response":{"code":29,"msg":"Invalid app Key"}}"#).unwrap_err();
        assert!(matches!(
            error,
            WdtError::Unauthorized {
                credential: Credential::AppKey,
                ..
            }
        ));
        assert!(parse_page(503, b"busy").unwrap_err().is_transient());
        assert!(matches!(
            parse_page(404, b"{}"),
            Err(WdtError::HttpStatus { status: 404 })
        ));
        assert!(matches!(parse("[]"), Err(WdtError::Malformed { .. })));
    }

    fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[0-9a-z_ .:-]{0,12}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("0000-00-00 00:00:00")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop_oneof![
                Just("response".to_owned()),
                Just("errorcode".to_owned()),
                Just("flag".to_owned()),
                Just("total_count".to_owned()),
                Just("stockout_list".to_owned()),
                Just("stockout_id".to_owned()),
                Just("details_list".to_owned()),
                Just("position_list".to_owned()),
                Just("paid".to_owned()),
                Just("modified".to_owned()),
                "[a-z_]{1,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_gives_orders_or_a_typed_error(
            value in arbitrary_json(),
            status in 100u16..600,
        ) {
            let body = value.to_string();
            let _ = parse_page(status, body.as_bytes());
            let _ = parse_page(200, body.as_bytes());
            let wrapped = format!(r#"{{"response":{{"errorcode":0,"stockout_list":[{body}]}}}}"#);
            let _ = parse_page(200, wrapped.as_bytes());
        }

        #[test]
        fn any_bytes_give_orders_or_a_typed_error(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = parse_page(200, &bytes);
        }
    }
}
