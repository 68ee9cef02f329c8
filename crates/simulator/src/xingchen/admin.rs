//! The admin endpoints under `/admin/xingchen/`, JSON in and out, for the demo, the benchmark and
//! an operator poking at a running simulator. Tests in Rust use [`XingchenState`] directly.
//!
//! | method and path | effect |
//! |---|---|
//! | `GET bills` | every bill |
//! | `GET bills/{billno}`, `DELETE bills/{billno}` | one bill |
//! | `GET`/`POST customers`, `DELETE customers/{number}` | list, add or replace, remove |
//! | `GET`/`POST materials`, `DELETE materials/{number}` | the same (POST changes a base unit) |
//! | `GET`/`POST stores`, `DELETE stores/{number}` | the same |
//! | `GET log`, `DELETE log` | the request log, or empty it |
//! | `GET stats` | token and authorisation call counts, requests, bills |
//! | `GET knobs`, `PUT knobs` | the fault knobs (PUT replaces them; absent fields take defaults) |
//! | `POST rotate-secret` | a new app secret |
//! | `POST expire-tokens` | every issued token expires |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;

use super::state::{Knobs, SimCustomer, SimMaterial, SimStore, XingchenState};

/// The admin routes, to be nested under `/admin/xingchen`.
pub(super) fn routes() -> Router<XingchenState> {
    Router::new()
        .route(
            "/bills",
            get(|State(s): State<XingchenState>| async move { Json(s.bills()) }),
        )
        .route("/bills/{billno}", get(get_bill).delete(delete_bill))
        .route(
            "/customers",
            get(|State(s): State<XingchenState>| async move { Json(s.customers()) }),
        )
        .route("/customers", post(upsert_customer))
        .route("/customers/{number}", delete(remove_customer))
        .route(
            "/materials",
            get(|State(s): State<XingchenState>| async move { Json(s.materials()) }),
        )
        .route("/materials", post(upsert_material))
        .route("/materials/{number}", delete(remove_material))
        .route(
            "/stores",
            get(|State(s): State<XingchenState>| async move { Json(s.stores()) }),
        )
        .route("/stores", post(upsert_store))
        .route("/stores/{number}", delete(remove_store))
        .route(
            "/log",
            get(|State(s): State<XingchenState>| async move { Json(s.log()) }).delete(clear_log),
        )
        .route(
            "/stats",
            get(|State(s): State<XingchenState>| async move { Json(s.stats()) }),
        )
        .route(
            "/knobs",
            get(|State(s): State<XingchenState>| async move { Json(s.knobs()) }).put(set_knobs),
        )
        .route("/rotate-secret", post(rotate_secret))
        .route("/expire-tokens", post(expire_tokens))
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("{what} not found") })),
    )
        .into_response()
}

fn removed(found: bool, what: &str) -> Response {
    if found {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found(what)
    }
}

async fn get_bill(State(state): State<XingchenState>, Path(billno): Path<String>) -> Response {
    match state.bill(&billno) {
        Some(bill) => Json(bill).into_response(),
        None => not_found(&format!("bill {billno}")),
    }
}

async fn delete_bill(State(state): State<XingchenState>, Path(billno): Path<String>) -> Response {
    removed(state.delete_bill(&billno), &format!("bill {billno}"))
}

async fn upsert_customer(
    State(state): State<XingchenState>,
    Json(customer): Json<SimCustomer>,
) -> Json<SimCustomer> {
    Json(state.upsert_customer(customer))
}

async fn remove_customer(
    State(state): State<XingchenState>,
    Path(number): Path<String>,
) -> Response {
    removed(
        state.remove_customer(&number),
        &format!("customer {number}"),
    )
}

async fn upsert_material(
    State(state): State<XingchenState>,
    Json(material): Json<SimMaterial>,
) -> Json<SimMaterial> {
    Json(state.upsert_material(material))
}

async fn remove_material(
    State(state): State<XingchenState>,
    Path(number): Path<String>,
) -> Response {
    removed(
        state.remove_material(&number),
        &format!("material {number}"),
    )
}

async fn upsert_store(
    State(state): State<XingchenState>,
    Json(store): Json<SimStore>,
) -> Json<SimStore> {
    Json(state.upsert_store(store))
}

async fn remove_store(State(state): State<XingchenState>, Path(number): Path<String>) -> Response {
    removed(state.remove_store(&number), &format!("store {number}"))
}

async fn clear_log(State(state): State<XingchenState>) -> StatusCode {
    state.clear_log();
    StatusCode::NO_CONTENT
}

async fn set_knobs(State(state): State<XingchenState>, Json(knobs): Json<Knobs>) -> Json<Knobs> {
    state.set_knobs(knobs.clone());
    Json(knobs)
}

async fn rotate_secret(State(state): State<XingchenState>) -> StatusCode {
    state.rotate_app_secret();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(state): State<XingchenState>) -> StatusCode {
    state.expire_tokens();
    StatusCode::NO_CONTENT
}
