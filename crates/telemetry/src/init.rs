//! Building the subscriber and the tracer provider from a [`TelemetryConfig`], and stopping them.
//!
//! The subscriber has two layers, each with its own filter: the log lines (`RUST_LOG`) and the
//! OpenTelemetry spans (`TRACE_FILTER`), so turning logs down never cuts a trace. The crates that
//! carry the export itself (the OTLP client, tonic, hyper, h2, reqwest, tower) are kept out of
//! the spans, or each export would produce spans to export. The tracer provider always exists so
//! that spans get ids and contexts propagate; it gets a batch exporter only when an endpoint is
//! configured. Sampling and batching settings are read from the environment by the SDK itself
//! (see [`crate::TelemetryConfig`]).
//!
//! The line formats are [`crate::format`]'s; what to trace is the workers'.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::format::{JsonLines, PrettyLines};
use crate::{LogFormat, OtlpProtocol, TelemetryConfig, TelemetryError};
use std::io::IsTerminal;

/// How long [`TelemetryGuard::shutdown`] waits for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The instrumentation scope of every span the bridge exports.
const SCOPE_NAME: &str = "wdt-xingchen-bridge";

/// Directives appended to the span filter: the export's own machinery is never traced.
const EXPORT_CRATES_OFF: &str =
    "opentelemetry=off,tonic=off,h2=off,hyper=off,tower=off,reqwest=off";

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportTarget {
    /// The OTLP transport.
    pub protocol: OtlpProtocol,
    /// The URL spans are sent to.
    pub endpoint: String,
}

/// Keeps the tracer provider; flushes and stops it on [`TelemetryGuard::shutdown`] or on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    export: Option<ExportTarget>,
    service_name: String,
}

/// Sets up logging and tracing for the process: the global subscriber writing to standard error,
/// the global W3C trace-context propagator and tracer provider.
///
/// `service_default_name` is the worker's name (`extractor`, `transformer`, `loader`), used as
/// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names another. Call it
/// inside the Tokio runtime when exporting over gRPC. It fails when a subscriber is already set.
pub fn init(
    service_default_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    let (dispatch, guard) = dispatch(service_default_name, config, std::io::stderr)?;
    dispatch
        .try_init()
        .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &guard.provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(guard)
}

/// Builds what [`init`] installs without installing it, writing log lines to `make_writer`: for
/// tests, which scope it with `tracing::dispatcher::set_default`, and for tools that need their
/// own writer.
pub fn dispatch<W>(
    service_default_name: &str,
    config: &TelemetryConfig,
    make_writer: W,
) -> Result<(Dispatch, TelemetryGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_filter = filter("RUST_LOG", &config.log_filter, &config.log_filter)?;
    let span_directives = format!("{},{EXPORT_CRATES_OFF}", config.trace_filter);
    let span_filter = filter("TRACE_FILTER", &config.trace_filter, &span_directives)?;
    let service_name = service_name(service_default_name, config);
    let (provider, export) = tracer_provider(&service_name, config)?;

    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SCOPE_NAME))
        .with_threads(false)
        .with_filter(span_filter);
    let lines = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(make_writer)
            .with_filter(log_filter)
            .boxed(),
        // Colour only for a person at a terminal; logs redirected to a file stay plain text.
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(PrettyLines::default())
            .with_writer(make_writer)
            .with_filter(log_filter)
            .boxed(),
    };
    let subscriber = Registry::default().with(spans).with(lines);

    let guard = TelemetryGuard {
        provider: Some(provider),
        export,
        service_name,
    };
    Ok((Dispatch::new(subscriber), guard))
}

fn filter(
    variable: &'static str,
    given: &str,
    directives: &str,
) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(directives).map_err(|error| TelemetryError::InvalidFilter {
        variable,
        filter: given.to_owned(),
        message: error.to_string(),
    })
}

/// The configured name, else one from `OTEL_RESOURCE_ATTRIBUTES`, else the worker's own.
fn service_name(service_default_name: &str, config: &TelemetryConfig) -> String {
    if let Some(name) = config
        .service_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        return name.to_owned();
    }
    let detected = Resource::builder().build();
    match detected.get(&Key::from_static_str("service.name")) {
        // The SDK's fallback, `unknown_service:<exe>`, is not a name anyone chose.
        Some(name) if !name.as_str().starts_with("unknown_service") => name.to_string(),
        _ => service_default_name.to_owned(),
    }
}

fn tracer_provider(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<(SdkTracerProvider, Option<ExportTarget>), TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);

    let Some(endpoint) = config.traces_endpoint() else {
        return Ok((builder.build(), None));
    };
    let target = ExportTarget {
        protocol: config.protocol(),
        endpoint,
    };
    let exporter = span_exporter(&target)?;
    // The batch processor reads OTEL_BSP_* itself and exports from a thread of its own.
    Ok((builder.with_batch_exporter(exporter).build(), Some(target)))
}

fn span_exporter(target: &ExportTarget) -> Result<SpanExporter, TelemetryError> {
    let endpoint = target.endpoint.clone();
    let built = match target.protocol {
        OtlpProtocol::Grpc => {
            // The tonic channel spawns its connection task on the current runtime.
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(TelemetryError::GrpcNeedsRuntime { endpoint });
            }
            SpanExporter::builder()
                .with_tonic()
                .with_protocol(Protocol::Grpc)
                .with_endpoint(endpoint)
                .build()
        }
        OtlpProtocol::HttpProtobuf => {
            install_tls_provider();
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build()
        }
    };
    built.map_err(|error| TelemetryError::Exporter {
        protocol: target.protocol.as_str(),
        endpoint: target.endpoint.clone(),
        message: error.to_string(),
    })
}

/// Installs ring as the process's TLS provider unless one is installed.
///
/// The workspace builds reqwest without a crypto provider of its own, and building its client
/// (the OTLP HTTP exporter's, too) panics until a provider is installed. Installing twice is
/// harmless, so every crate that builds a client may call this first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TelemetryGuard {
    /// Where spans are exported, or `None` when no endpoint is configured.
    pub fn export_target(&self) -> Option<&ExportTarget> {
        self.export.as_ref()
    }

    /// Whether an exporter is installed.
    pub fn is_exporting(&self) -> bool {
        self.export.is_some()
    }

    /// The `service.name` exported spans carry.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Exports every span ended so far, without stopping.
    pub async fn flush(&self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.clone() else {
            return Ok(());
        };
        off_the_runtime(move || provider.force_flush()).await
    }

    /// Exports the remaining spans and stops the provider, waiting at most [`SHUTDOWN_TIMEOUT`].
    ///
    /// The wait happens on a blocking thread, so the gRPC client can keep running on this
    /// runtime meanwhile, even a current-thread one.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        off_the_runtime(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)).await
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        let stop = move || {
            if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %error, "Spans may be lost: exporter did not shut down");
            }
        };
        // On a current-thread runtime, blocking here would starve the gRPC client the exporter
        // waits for; let a thread of its own wait instead.
        let on_current_thread = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
        });
        if on_current_thread {
            let _ = std::thread::Builder::new()
                .name("telemetry-shutdown".into())
                .spawn(stop);
        } else {
            stop();
        }
    }
}

async fn off_the_runtime(
    work: impl FnOnce() -> opentelemetry_sdk::error::OTelSdkResult + Send + 'static,
) -> Result<(), TelemetryError> {
    let result = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(work)
            .await
            .map_err(|join| TelemetryError::Shutdown(join.to_string()))?,
        Err(_) => work(),
    };
    match result {
        Ok(()) | Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown) => Ok(()),
        Err(error) => Err(TelemetryError::Shutdown(error.to_string())),
    }
}
