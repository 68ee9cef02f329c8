//! The two shapes of a log line, both ending with the current span's `trace_id` and `span_id`.
//!
//! `pretty` reuses `tracing-subscriber`'s full format and appends the ids, so a line read in a
//! terminal can be pasted into a trace viewer. `json` writes one flat object per event: the
//! timestamp, level, target and message, the event's own fields, the spans in scope (root first,
//! with their fields) and the ids. The ids come from the OpenTelemetry context that the tracing
//! layer makes current while a span is entered, so they are those of the span the event happened
//! in, or absent outside any span.
//!
//! Which lines are written is left to the filter in [`crate::init`]; the fields themselves come
//! from the code that logs.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{
    self, Format, FormatEvent, FormatFields, JsonFields, Writer,
};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The name of the trace id in a log line.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// The name of the span id in a log line.
pub const SPAN_ID_FIELD: &str = "span_id";

/// The trace and span ids of the current OpenTelemetry span, as lowercase hex, when there is one.
pub fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// `tracing-subscriber`'s full human format with the ids appended.
#[derive(Default)]
pub(crate) struct PrettyLines {
    inner: Format<format::Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for PrettyLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The inner format ends its line; the ids must go before that end.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(line.trim_end_matches('\n'))?;
        if let Some((trace_id, span_id)) = current_ids() {
            write!(
                writer,
                " {TRACE_ID_FIELD}={trace_id} {SPAN_ID_FIELD}={span_id}"
            )?;
        }
        writer.write_char('\n')
    }
}

/// One JSON object per event; span fields must be recorded with [`JsonFields`].
pub(crate) struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = FieldsVisitor::default();
        event.record(&mut fields);
        let target = fields
            .log_target
            .take()
            .unwrap_or_else(|| metadata.target().to_owned());

        // Keys in a fixed order, the line's own first, so lines read alike from left to right.
        let mut line = vec![
            ("timestamp".to_owned(), Value::String(timestamp())),
            (
                "level".to_owned(),
                Value::String(metadata.level().as_str().to_owned()),
            ),
            ("target".to_owned(), Value::String(target)),
        ];
        if let Some(message) = fields.values.remove("message") {
            line.push(("message".to_owned(), message));
        }
        let spans = span_objects(ctx);
        let ids = current_ids();
        for (name, value) in fields.values {
            // An event field named like one of the line's own keys would make a duplicate key.
            if !RESERVED_KEYS.contains(&name.as_str()) {
                line.push((name, value));
            }
        }
        if !spans.is_empty() {
            line.push(("spans".to_owned(), Value::Array(spans)));
        }
        if let Some((trace_id, span_id)) = ids {
            line.push((TRACE_ID_FIELD.to_owned(), Value::String(trace_id)));
            line.push((SPAN_ID_FIELD.to_owned(), Value::String(span_id)));
        }

        write_object(&mut writer, &line)?;
        writer.write_char('\n')
    }
}

/// The keys a JSON line sets itself.
const RESERVED_KEYS: [&str; 7] = [
    "timestamp",
    "level",
    "target",
    "message",
    "spans",
    TRACE_ID_FIELD,
    SPAN_ID_FIELD,
];

fn write_object(writer: &mut Writer<'_>, entries: &[(String, Value)]) -> fmt::Result {
    writer.write_char('{')?;
    for (index, (key, value)) in entries.iter().enumerate() {
        if index > 0 {
            writer.write_char(',')?;
        }
        // Serialising a string or a JSON value into text does not fail; if it did, the line would
        // end as any failed write does.
        let key = serde_json::to_string(key).map_err(|_| fmt::Error)?;
        let value = serde_json::to_string(value).map_err(|_| fmt::Error)?;
        write!(writer, "{key}:{value}")?;
    }
    writer.write_char('}')
}

fn timestamp() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an unreadable clock leaves the field empty.
    let _ = SystemTime.format_time(&mut Writer::new(&mut text));
    text
}

/// The spans in the event's scope, root first, each as `{"name": …, <fields>}`.
fn span_objects<S>(ctx: &FmtContext<'_, S, JsonFields>) -> Vec<Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(scope) = ctx.event_scope() else {
        return Vec::new();
    };
    scope
        .from_root()
        .map(|span| {
            let mut object = Map::new();
            object.insert("name".into(), Value::String(span.name().to_owned()));
            let extensions = span.extensions();
            let recorded = extensions.get::<FormattedFields<JsonFields>>();
            let parsed = recorded.and_then(|fields| serde_json::from_str::<Value>(fields).ok());
            if let Some(Value::Object(fields)) = parsed {
                for (name, value) in fields {
                    object.entry(name).or_insert(value);
                }
            }
            Value::Object(object)
        })
        .collect()
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct FieldsVisitor {
    values: Map<String, Value>,
    log_target: Option<String>,
}

impl FieldsVisitor {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "log.target" {
            self.log_target = value.as_str().map(str::to_owned);
        } else if !name.starts_with("log.") {
            self.values.insert(name.to_owned(), value);
        }
    }
}

impl Visit for FieldsVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, serde_json::json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::String(format!("{value:?}")));
    }
}
