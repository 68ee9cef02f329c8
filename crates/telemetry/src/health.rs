//! The small HTTP server each worker runs beside its work: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/metrics` renders the Prometheus text of the recorder [`crate::metrics::install`] put in
//! place. `/healthz` answers 200 for as long as the process serves at all. `/readyz` answers 200
//! only when every check registered in the worker's [`Readiness`] is true, and 503 otherwise with
//! a JSON body naming the failing checks, so an orchestrator holds traffic (and an operator knows
//! why) while NATS is unreachable, a consumer is not bound or the 星辰 credentials are refused.
//!
//! What each check means, and when it flips, is left to the workers; this module only reports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::TelemetryError;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often the recorder's histograms are drained when nobody scrapes, to bound their memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The named conditions a worker must meet to be ready, shared between the worker and the server.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Readiness with these checks registered, all false until the worker sets them.
    pub fn with_checks<'a>(names: impl IntoIterator<Item = &'a str>) -> Readiness {
        let readiness = Readiness::default();
        for name in names {
            readiness.set(name, false);
        }
        readiness
    }

    /// Sets a check, registering it if it was not.
    pub fn set(&self, name: &str, ready: bool) {
        self.lock().insert(name.to_owned(), ready);
    }

    /// Whether every registered check is true (and so whether `/readyz` answers 200).
    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|ready| *ready)
    }

    /// The registered checks that are false, in name order.
    pub fn failing(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic elsewhere cannot leave a map of booleans half-written; keep serving it.
        self.checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Option<PrometheusHandle>,
    readiness: Readiness,
}

/// The router serving the three paths; `metrics` is `None` when no recorder is installed, and
/// `/metrics` then answers 404.
pub fn router(metrics: Option<PrometheusHandle>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(report_readiness))
        .with_state(AppState { metrics, readiness })
}

/// A running health server.
pub struct HealthServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl HealthServer {
    /// Binds `addr` and serves until `shutdown` completes. Port 0 picks a free port; see
    /// [`HealthServer::local_addr`].
    pub async fn start(
        addr: SocketAddr,
        metrics: Option<PrometheusHandle>,
        readiness: Readiness,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<HealthServer, TelemetryError> {
        let bind_error = |source| TelemetryError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;

        let upkeep = metrics
            .clone()
            .map(|handle| tokio::spawn(run_upkeep(handle)));
        let app = router(metrics, readiness);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Some(upkeep) = upkeep {
                upkeep.abort();
            }
            served
        });
        Ok(HealthServer { local_addr, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the server to stop after its shutdown signal.
    pub async fn wait(self) -> Result<(), TelemetryError> {
        match self.task.await {
            Ok(served) => served.map_err(TelemetryError::Serve),
            Err(join) => Err(TelemetryError::Serve(std::io::Error::other(
                join.to_string(),
            ))),
        }
    }
}

async fn run_upkeep(handle: PrometheusHandle) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = state.metrics else {
        return (StatusCode::NOT_FOUND, "no metrics recorder is installed\n").into_response();
    };
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        handle.render(),
    )
        .into_response()
}

/// The body of `/readyz`.
#[derive(Serialize)]
struct ReadinessReport {
    ready: bool,
    failing: Vec<String>,
}

async fn report_readiness(State(state): State<AppState>) -> Response {
    let failing = state.readiness.failing();
    let ready = failing.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(ReadinessReport { ready, failing })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_registered_check() {
        let readiness = Readiness::with_checks(["nats", "consumer", "xingchen"]);
        assert!(!readiness.is_ready());
        assert_eq!(readiness.failing(), ["consumer", "nats", "xingchen"]);

        readiness.set("nats", true);
        readiness.set("consumer", true);
        assert_eq!(readiness.failing(), ["xingchen"]);

        readiness.set("xingchen", true);
        assert!(readiness.is_ready());

        readiness.set("nats", false);
        assert_eq!(
            readiness.failing(),
            ["nats"],
            "a check can turn false again"
        );
    }
}
