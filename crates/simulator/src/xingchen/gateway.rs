//! The gateway in front of the simulated 星辰: signature checks, the two auth endpoints, token
//! checks, injected faults, and the V1 envelopes every business answer uses.
//!
//! Business endpoints themselves are answered by the sibling modules `masterdata` and `bills`;
//! this module decides whether a request gets that far, and logs every answer.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use super::signature::{self, Expected, parse_query};
use super::state::{Data, LogEntry, TokenRecord, XingchenState};
use super::{bills, masterdata};

/// The authorisation endpoint.
pub const AUTHORIZE_PATH: &str = "/jdyconnector/app_management/push_app_authorize";
/// The token endpoint.
pub const TOKEN_PATH: &str = "/jdyconnector/app_management/kingdee_auth_token";

/// The errcode of a token request signed with a stale app secret.
const STALE_SECRET_ERRCODE: i64 = 1_030_002_006;
/// The errcode of a request naming an unknown app key or outer instance.
const UNKNOWN_APP_ERRCODE: i64 = 1_030_002_001;

/// The code a response carries into the request log.
#[derive(Clone, Copy)]
struct LoggedCode(i64);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The 519 answer for a gateway code, with the texts the real gateway sends.
pub(super) fn refusal(code: i64) -> Response {
    let (english, chinese) = match code {
        4001 => ("X-Api-Auth-Version is not supported", "不支持的认证版本"),
        4002 => ("X-Api-ClientID is empty", "X-Api-ClientID为空"),
        4003 => ("X-Api-ClientID is invalid", "X-Api-ClientID无效"),
        4006 => ("X-Api-TimeStamp is invalid", "X-Api-TimeStamp无效或已超时"),
        4007 => ("X-Api-SignHeaders is invalid", "X-Api-SignHeaders无效"),
        4008 => ("X-Api-Signature is invalid", "X-Api-Signature签名无效"),
        4009 => ("access_token is empty", "access_token为空"),
        4010 => ("access_token is invalid", "access_token无效"),
        4011 => ("access_token is expired", "access_token已过期"),
        4012 => ("no permission to invoke api", "无权限调用该接口"),
        5001 => ("API Not Found", "接口不存在"),
        5002 => ("Method Not Allowed", "请求方法不允许"),
        5003 => ("API Unavailable", "接口暂不可用"),
        5007 => ("API Request Overload", "请求过载，请稍后重试"),
        _ => ("Internal Service Fail", "服务内部错误"),
    };
    let body = json!({ "code": code, "description": english, "description_cn": chinese });
    let status = StatusCode::from_u16(519).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    with_code((status, Json(body)).into_response(), code)
}

fn with_code(mut response: Response, code: i64) -> Response {
    response.extensions_mut().insert(LoggedCode(code));
    response
}

fn too_many_requests() -> Response {
    let body = json!({ "success": false, "message": "已被限流，请稍后重试", "errorCode": "429" });
    (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
}

/// A V1 success.
pub(super) fn v1_ok(data: Value) -> Response {
    Json(json!({ "success": true, "message": "", "errorCode": "", "data": data })).into_response()
}

/// A V1 failure at the top level (bad request, unknown record).
pub(super) fn v1_fail(message: &str) -> Response {
    let body = json!({
        "success": false, "message": message, "description_cn": message,
        "errorCode": "", "data": null,
    });
    Json(body).into_response()
}

fn auth_reply(state: &XingchenState, data: Value) -> Response {
    if state.lock().knobs.authorize_code_envelope {
        Json(json!({ "code": 200, "msg": "success", "data": data })).into_response()
    } else {
        Json(json!({ "errcode": 0, "description": "success", "data": data })).into_response()
    }
}

fn auth_fail(errcode: i64, description: &str) -> Response {
    let body = json!({ "errcode": errcode, "description": description, "data": null });
    with_code(Json(body).into_response(), errcode)
}

/// The status logged for a request whose client went away before the answer.
pub const CLIENT_CLOSED: u16 = 499;

/// Logs every gateway request on arrival and completes the entry with its answer, or with
/// [`CLIENT_CLOSED`] when the client gave up first (admin calls are not gateway traffic).
pub(super) async fn log_requests(
    State(state): State<XingchenState>,
    request: Request,
    next: Next,
) -> Response {
    let endpoint = request.uri().path().to_owned();
    if endpoint.starts_with("/admin") {
        return next.run(request).await;
    }
    let entry = LogEntry {
        seq: 0,
        method: request.method().to_string(),
        endpoint,
        status: 0,
        code: None,
        started_ms: now_ms(),
        finished_ms: 0,
    };
    let seq = state.lock().record(entry);
    let mut pending = PendingEntry {
        seq,
        state,
        done: false,
    };
    let response = next.run(request).await;
    let code = response.extensions().get::<LoggedCode>().map(|c| c.0);
    pending.finish(response.status().as_u16(), code);
    response
}

/// A logged request still waiting for its answer.
struct PendingEntry {
    state: XingchenState,
    seq: u64,
    done: bool,
}

impl PendingEntry {
    fn finish(&mut self, status: u16, code: Option<i64>) {
        self.done = true;
        self.state.lock().finish(self.seq, status, code, now_ms());
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        // Axum drops the handler when the client disconnects; the log should still say so.
        if !self.done {
            self.finish(CLIENT_CLOSED, None);
        }
    }
}

async fn add_latency(state: &XingchenState) {
    let latency_ms = state.lock().knobs.latency_ms;
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
}

fn verified(
    state: &XingchenState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), i64> {
    let config = state.config();
    let expected = Expected {
        client_id: &config.client_id,
        client_secret: &config.client_secret,
        now_ms: now_ms(),
        tolerance_ms: config.timestamp_tolerance.as_millis() as i64,
    };
    signature::verify(&expected, method.as_str(), uri.path(), uri.query(), headers)
        .map_err(|refused| refused as i64)
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    parse_query(uri.query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `POST push_app_authorize?outerInstanceId=`: the authorised account sets.
pub(super) async fn authorize(
    State(state): State<XingchenState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    add_latency(&state).await;
    state.lock().authorize_calls += 1;
    if let Err(code) = verified(&state, &method, &uri, &headers) {
        return refusal(code);
    }
    if method != Method::POST {
        return refusal(5002);
    }
    let config = state.config();
    if query_param(&uri, "outerInstanceId").as_deref() != Some(config.outer_instance_id.as_str()) {
        return auth_fail(UNKNOWN_APP_ERRCODE, "第三方实例不存在或未授权");
    }
    let account_set = |account_id: &str, status: u8, app_secret: &str| {
        json!({
            "accountId": account_id, "accountName": "模拟账套", "agreementCompanyName": "模拟公司",
            "appKey": config.app_key, "appSecret": app_secret, "clientId": config.client_id,
            "domain": config.domain, "groupName": config.group_name,
            "outerInstanceId": config.outer_instance_id, "serviceId": "sim-service",
            "status": status,
        })
    };
    // A disabled set comes first, so a client that takes the first row without looking at
    // `status` is caught.
    let data = json!([
        account_set(
            "1000000000000000001",
            0,
            "0000000000000000000000000000000000000000"
        ),
        account_set(&config.account_id, 1, &state.app_secret()),
    ]);
    auth_reply(&state, data)
}

/// `GET kingdee_auth_token?app_key=&app_signature=`: issues tokens.
pub(super) async fn token(
    State(state): State<XingchenState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    add_latency(&state).await;
    state.lock().token_calls += 1;
    if let Err(code) = verified(&state, &method, &uri, &headers) {
        return refusal(code);
    }
    if method != Method::GET {
        return refusal(5002);
    }
    let config = state.config();
    if query_param(&uri, "app_key").as_deref() != Some(config.app_key.as_str()) {
        return auth_fail(UNKNOWN_APP_ERRCODE, "app_key不存在");
    }
    let expected = signature::sign(&state.app_secret(), &config.app_key);
    if query_param(&uri, "app_signature").as_deref() != Some(expected.as_str()) {
        return auth_fail(STALE_SECRET_ERRCODE, "授权密钥校验失败，请获取最新密钥加密");
    }
    let (access_token, app_token, expires_ms) = issue_token(&state);
    let data = json!({
        "access_token": access_token, "app-token": app_token, "expires": expires_ms,
        "uid": 173053163,
    });
    Json(json!({ "errcode": 0, "description": "成功", "data": data })).into_response()
}

fn issue_token(state: &XingchenState) -> (String, String, i64) {
    let (access_token, app_token) = {
        let mut rng = rand::rng();
        let hex: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        let tail: String = (0..48)
            .map(|_| char::from(rng.random_range(b'a'..=b'z')))
            .collect();
        (hex, format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.{tail}"))
    };
    let expires_ms = now_ms() + state.config().token_lifetime.as_millis() as i64;
    let record = TokenRecord {
        app_token: app_token.clone(),
        expires_ms,
        calls: 0,
        revoked: false,
    };
    state.lock().tokens.insert(access_token.clone(), record);
    (access_token, app_token, expires_ms)
}

/// Every `/jdy/...` call: gateway checks, injected faults, then the business answer.
pub(super) async fn business(
    State(state): State<XingchenState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    add_latency(&state).await;
    if let Err(code) = verified(&state, &method, &uri, &headers) {
        return refusal(code);
    }
    if method != Method::POST {
        return refusal(5002);
    }
    if let Some(fault) = injected_fault(&mut state.lock()) {
        return fault;
    }
    if let Err(code) = check_access(&state, &uri, &headers) {
        return refusal(code);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return v1_fail("请求参数格式错误，应为JSON");
    };
    match uri.path() {
        bills::SAVE_PATH => bills::save(&state, body).await,
        bills::LIST_PATH => bills::list(&state, &body),
        path => masterdata::answer(&state, path, &body).unwrap_or_else(|| refusal(5001)),
    }
}

/// The rate limit and the random overload answers the knobs ask for.
fn injected_fault(data: &mut Data) -> Option<Response> {
    let knobs = data.knobs.clone();
    if let Some(limit) = knobs.requests_per_minute {
        let now = Instant::now();
        while data
            .recent_calls
            .front()
            .is_some_and(|t| now - *t >= Duration::from_secs(60))
        {
            data.recent_calls.pop_front();
        }
        if data.recent_calls.len() >= limit as usize {
            return Some(too_many_requests());
        }
        data.recent_calls.push_back(now);
    }
    let mut rng = rand::rng();
    if rng.random::<f64>() < knobs.fraction_429 {
        return Some(too_many_requests());
    }
    if rng.random::<f64>() < knobs.fraction_519 {
        return Some(refusal(if rng.random::<bool>() { 5003 } else { 5007 }));
    }
    None
}

/// Token, router address and account headers of a business call.
fn check_access(state: &XingchenState, uri: &Uri, headers: &HeaderMap) -> Result<(), i64> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let Some(access_token) = query_param(uri, "access_token").filter(|t| !t.is_empty()) else {
        return Err(4009);
    };
    {
        let mut data = state.lock();
        let limit = data.knobs.token_expires_after_calls;
        let Some(record) = data.tokens.get_mut(&access_token) else {
            return Err(4010);
        };
        if record.app_token != header("app-token") {
            return Err(4010);
        }
        let used_up = limit.is_some_and(|calls| record.calls >= calls);
        if record.revoked || now_ms() >= record.expires_ms || used_up {
            return Err(4011);
        }
        record.calls += 1;
    }
    let config = state.config();
    if header("X-GW-Router-Addr") != config.domain {
        return Err(5001);
    }
    if header("accountId") != config.account_id || header("groupName") != config.group_name {
        return Err(4012);
    }
    Ok(())
}
