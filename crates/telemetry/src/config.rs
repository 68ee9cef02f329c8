//! The flags and environment variables every worker shares for logs, traces and metrics.
//!
//! [`TelemetryConfig`] is a `clap::Args` block a worker flattens into its own command line. Each
//! flag falls back to the variable the OpenTelemetry specification (or common practice, for
//! `RUST_LOG` and `LOG_FORMAT`) defines. Only what decides *whether* and *where* to export lives
//! here; the variables the SDK and the exporter already read themselves are left to them, so that
//! each has one reader:
//!
//! - `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`: `always_on`, `always_off`,
//!   `traceidratio`, `parentbased_always_on` (the default), `parentbased_always_off`,
//!   `parentbased_traceidratio`;
//! - `OTEL_BSP_SCHEDULE_DELAY` (5000 ms), `OTEL_BSP_MAX_QUEUE_SIZE` (2048 spans, the bound past
//!   which spans are dropped), `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512 spans); the SDK's threaded
//!   processor ignores `OTEL_BSP_EXPORT_TIMEOUT`, so the exporter's timeout bounds each export:
//! - `OTEL_EXPORTER_OTLP_TIMEOUT` (10000 ms), `OTEL_EXPORTER_OTLP_HEADERS`,
//!   `OTEL_EXPORTER_OTLP_COMPRESSION` and their `OTEL_EXPORTER_OTLP_TRACES_*` forms;
//! - `OTEL_RESOURCE_ATTRIBUTES` and the `OTEL_SPAN_*_COUNT_LIMIT` span limits.
//!
//! Building the subscriber and the exporter from this configuration is left to [`crate::init`].

use std::net::SocketAddr;

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// One human-readable line per event, for terminals.
    Pretty,
}

/// The OTLP transport for exported spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (usually port 4317).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (usually port 4318), the specification's default.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The protocol's name as `OTEL_EXPORTER_OTLP_PROTOCOL` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Logging, tracing and metrics settings shared by every worker.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct TelemetryConfig {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Which log lines to write, in `tracing-subscriber`'s `EnvFilter` syntax.
    #[arg(long, env = "RUST_LOG", default_value = DEFAULT_LOG_FILTER)]
    pub log_filter: String,

    /// Which spans to export, in the same syntax; independent of the log filter so that quiet
    /// logs do not cut traces. The OTLP client's own crates are always excluded.
    #[arg(long, env = "TRACE_FILTER", default_value = DEFAULT_TRACE_FILTER)]
    pub trace_filter: String,

    /// Base URL of the OTLP receiver (`/v1/traces` is appended for HTTP); without it, or the
    /// traces-specific URL, nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Full URL for traces, used as given; wins over the base URL.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,

    /// OTLP transport [default: http/protobuf].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum)]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// OTLP transport for traces; wins over the general one.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value_enum)]
    pub otlp_traces_protocol: Option<OtlpProtocol>,

    /// `service.name` of exported spans [default: the worker's name, or `service.name` from
    /// `OTEL_RESOURCE_ATTRIBUTES`].
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// Address serving `/metrics`, `/healthz` and `/readyz` [default: the worker's own].
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The log filter when `RUST_LOG` is unset; the SDK's own INFO lines are start-up chatter.
pub const DEFAULT_LOG_FILTER: &str = "info,opentelemetry=warn";

/// The span filter when `TRACE_FILTER` is unset.
pub const DEFAULT_TRACE_FILTER: &str = "info";

impl Default for TelemetryConfig {
    /// The configuration of an empty command line and environment: pretty logs at INFO, no
    /// export, the worker's default metrics address.
    fn default() -> Self {
        TelemetryConfig {
            log_format: LogFormat::Pretty,
            log_filter: DEFAULT_LOG_FILTER.to_owned(),
            trace_filter: DEFAULT_TRACE_FILTER.to_owned(),
            otlp_endpoint: None,
            otlp_traces_endpoint: None,
            otlp_protocol: None,
            otlp_traces_protocol: None,
            service_name: None,
            metrics_listen: None,
        }
    }
}

impl TelemetryConfig {
    /// The transport for traces: the traces-specific one, else the general one, else HTTP.
    pub fn protocol(&self) -> OtlpProtocol {
        self.otlp_traces_protocol
            .or(self.otlp_protocol)
            .unwrap_or(OtlpProtocol::HttpProtobuf)
    }

    /// The URL spans go to, or `None` when no endpoint is configured and nothing is exported.
    ///
    /// A traces-specific URL is used as given. A base URL gets `/v1/traces` appended for HTTP,
    /// as the specification says; gRPC takes it as is, its path coming from the service.
    pub fn traces_endpoint(&self) -> Option<String> {
        if let Some(url) = non_empty(&self.otlp_traces_endpoint) {
            return Some(url.to_owned());
        }
        let base = non_empty(&self.otlp_endpoint)?;
        Some(match self.protocol() {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        })
    }

    /// The metrics address, or the worker's `default` when none is configured.
    pub fn metrics_listen_or(&self, default: SocketAddr) -> SocketAddr {
        self.metrics_listen.unwrap_or(default)
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        telemetry: TelemetryConfig,
    }

    fn parse(args: &[&str]) -> TelemetryConfig {
        let args = std::iter::once("worker").chain(args.iter().copied());
        Cli::try_parse_from(args)
            .expect("the flags parse")
            .telemetry
    }

    #[test]
    fn http_base_endpoint_gets_the_traces_path_once() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".to_owned()),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            config.traces_endpoint().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }

    #[test]
    fn grpc_base_endpoint_is_used_as_given() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4317".to_owned()),
            otlp_protocol: Some(OtlpProtocol::Grpc),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            config.traces_endpoint().as_deref(),
            Some("http://collector:4317")
        );
    }

    #[test]
    fn traces_specific_endpoint_and_protocol_win_over_the_general_ones() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://general:4318".to_owned()),
            otlp_traces_endpoint: Some("http://traces:9999/custom".to_owned()),
            otlp_protocol: Some(OtlpProtocol::HttpProtobuf),
            otlp_traces_protocol: Some(OtlpProtocol::Grpc),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            config.traces_endpoint().as_deref(),
            Some("http://traces:9999/custom")
        );
        assert_eq!(config.protocol(), OtlpProtocol::Grpc);
    }

    #[test]
    fn blank_endpoint_means_no_export() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("  ".to_owned()),
            ..TelemetryConfig::default()
        };
        assert_eq!(config.traces_endpoint(), None);
    }

    #[test]
    fn flags_accept_both_protocol_spellings_and_reject_others() {
        let grpc = parse(&["--otlp-protocol", "grpc", "--log-format", "json"]);
        assert_eq!(grpc.otlp_protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(grpc.log_format, LogFormat::Json);
        let http = parse(&["--otlp-protocol", "http/protobuf"]);
        assert_eq!(http.otlp_protocol, Some(OtlpProtocol::HttpProtobuf));

        let args = ["worker", "--otlp-protocol", "http/json"];
        assert!(
            Cli::try_parse_from(args).is_err(),
            "http/json is not built in"
        );
    }

    #[test]
    fn metrics_address_falls_back_to_the_workers_default() {
        let default: SocketAddr = "0.0.0.0:9101".parse().expect("address");
        assert_eq!(
            TelemetryConfig::default().metrics_listen_or(default),
            default
        );
        let configured = parse(&["--metrics-listen", "127.0.0.1:9000"]);
        assert_eq!(configured.metrics_listen_or(default).port(), 9000);
    }
}
