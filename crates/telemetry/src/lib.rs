//! What every worker of the bridge does to be observable: log lines, traces, metrics, health.
//!
//! A worker flattens [`TelemetryConfig`] into its flags and calls [`init`] first thing in
//! `main`. That installs the `tracing` subscriber (the log filter, JSON or pretty lines that carry
//! `trace_id` and `span_id`, and the OpenTelemetry layer), the W3C trace-context propagator and,
//! when an OTLP endpoint is configured, a batch exporter over gRPC or HTTP/protobuf. The returned
//! [`TelemetryGuard`] flushes the exporter on [`TelemetryGuard::shutdown`] (or on drop).
//!
//! Without an endpoint nothing is exported and no exporter thread runs, but spans still get ids:
//! a worker that exports nothing must still pass each order's context on in its NATS headers, or
//! a worker downstream that does export would see the trace broken, and dead letters would lose
//! the trace id operators look them up by.
//!
//! The other modules are used while the worker runs: [`propagation`] moves the context through
//! NATS headers, [`span`] names the attributes and opens the usual spans, [`metrics`] describes
//! and records every metric, and [`health`] serves `/metrics`, `/healthz` and `/readyz`. Which
//! spans to open, what to count and when a worker is ready are the workers' decisions.

mod config;
mod format;
pub mod health;
mod init;
pub mod metrics;
pub mod propagation;
pub mod span;

pub use config::{
    DEFAULT_LOG_FILTER, DEFAULT_TRACE_FILTER, LogFormat, OtlpProtocol, TelemetryConfig,
};
pub use format::{SPAN_ID_FIELD, TRACE_ID_FIELD, current_ids};
pub use init::{
    ExportTarget, SHUTDOWN_TIMEOUT, TelemetryGuard, dispatch, init, install_tls_provider,
};

/// What the macros of [`span`] expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

/// Why telemetry could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` or `TRACE_FILTER` is not a valid filter.
    #[error("invalid {variable} filter {filter:?}: {message}")]
    InvalidFilter {
        /// The variable the filter came from.
        variable: &'static str,
        /// The filter as given.
        filter: String,
        /// What the parser objected to.
        message: String,
    },
    /// The OTLP exporter could not be built from the configuration.
    #[error("build the OTLP {protocol} exporter for {endpoint}: {message}")]
    Exporter {
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// The traces endpoint.
        endpoint: String,
        /// The exporter's complaint.
        message: String,
    },
    /// gRPC export was asked for outside a Tokio runtime, which its client needs.
    #[error("export over gRPC to {endpoint}: init must be called inside a Tokio runtime")]
    GrpcNeedsRuntime {
        /// The traces endpoint.
        endpoint: String,
    },
    /// A global `tracing` subscriber was already installed in this process.
    #[error("install the tracing subscriber: one is already installed")]
    SubscriberAlreadySet,
    /// The Prometheus recorder could not be built or installed.
    #[error("install the metrics recorder: {0}")]
    Metrics(String),
    /// The health server could not listen on its address.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The health server stopped with an error.
    #[error("serve health endpoints: {0}")]
    Serve(std::io::Error),
    /// Spans could not all be flushed before the deadline, or the provider failed to stop.
    #[error("shut down the span exporter: {0}")]
    Shutdown(String),
}

impl TelemetryError {
    /// Whether trying again may succeed: only a busy address or an export that ran out of time
    /// may; everything else is a configuration or programming mistake.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TelemetryError::Bind { .. } | TelemetryError::Shutdown(_)
        )
    }
}
