//! The names every span of the bridge uses, and macros that open the usual spans with them.
//!
//! Attribute names follow the OpenTelemetry messaging conventions where one exists
//! (`messaging.system`, `messaging.destination.name`, …); the order's `stockout_no` and `billno`
//! keep the names the log lines use. The span kind is the `otel.kind` field that the tracing layer
//! turns into the OpenTelemetry kind. The macros expand at the caller, so the span's target is the
//! worker's module and its log filter applies; each declares every field it may carry, since a
//! `tracing` span can only record fields declared when it opens (pass
//! `tracing::field::Empty` for a value known later and `span.record(..)` it then).
//!
//! Which spans a worker opens, and when, is left to the workers; linking them into one trace per
//! order is [`crate::propagation`]'s.

/// `messaging.system`: always [`NATS`].
pub const MESSAGING_SYSTEM: &str = "messaging.system";

/// The value of [`MESSAGING_SYSTEM`].
pub const NATS: &str = "nats";

/// `messaging.destination.name`: the subject published to or consumed from.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";

/// `messaging.message.id`: the message's `Nats-Msg-Id`, the key of the de-duplication window.
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";

/// `messaging.operation.type`: [`OPERATION_SEND`] or [`OPERATION_PROCESS`].
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";

/// The operation type of a publish.
pub const OPERATION_SEND: &str = "send";

/// The operation type of handling a consumed message.
pub const OPERATION_PROCESS: &str = "process";

/// `messaging.consumer.group.name`: the durable consumer a message was pulled from.
pub const MESSAGING_CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";

/// How many times JetStream has delivered the message, 1 on the first delivery (named like the
/// conventions' per-system delivery counts, since they define no NATS one).
pub const MESSAGING_NATS_DELIVERY_COUNT: &str = "messaging.nats.message.delivery_count";

/// The message's sequence number in its stream.
pub const MESSAGING_NATS_STREAM_SEQUENCE: &str = "messaging.nats.message.stream_sequence";

/// The WDT stock-out order number.
pub const STOCKOUT_NO: &str = "stockout_no";

/// The 星辰 bill number.
pub const BILLNO: &str = "billno";

/// The field `tracing-opentelemetry` reads the span kind from.
pub const OTEL_KIND: &str = "otel.kind";

/// The span-kind values the tracing layer understands.
pub mod kind {
    /// Sends a message (a publish).
    pub const PRODUCER: &str = "producer";
    /// Handles a received message.
    pub const CONSUMER: &str = "consumer";
    /// Calls a remote service and waits for it (a WDT page read, a 星辰 save).
    pub const CLIENT: &str = "client";
    /// Work inside the process (a lookup served from cache).
    pub const INTERNAL: &str = "internal";
}

/// A count as the signed integer OpenTelemetry attributes hold, saturating.
///
/// `tracing-opentelemetry` 0.34 records `u64` fields as strings, so numeric fields meant as
/// numbers (delivery counts, sequences, attempts) go through this, or are `i64` to begin with.
pub fn as_i64(count: impl TryInto<i64>) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}

/// Opens a producer span for publishing one message to NATS.
///
/// ```
/// use tracing::field::Empty;
/// let (subject, msg_id, stockout_no) = ("bridge.orders.raw", "17:ab12", "CK0001");
/// let span = telemetry::producer_span!("publish order", destination = subject,
///     message_id = msg_id, stockout_no = stockout_no, billno = Empty);
/// ```
#[macro_export]
macro_rules! producer_span {
    ($name:literal, destination = $destination:expr, message_id = $message_id:expr,
     stockout_no = $stockout_no:expr, billno = $billno:expr $(, $($fields:tt)+)?) => {
        $crate::__private::tracing::info_span!(
            $name,
            otel.kind = $crate::span::kind::PRODUCER,
            messaging.system = $crate::span::NATS,
            messaging.operation.type = $crate::span::OPERATION_SEND,
            messaging.destination.name = $destination,
            messaging.message.id = $message_id,
            stockout_no = $stockout_no,
            billno = $billno,
            $($($fields)+)?
        )
    };
}

/// Opens a consumer span for processing one message pulled from a durable consumer.
///
/// ```
/// use tracing::field::Empty;
/// let headers = async_nats::HeaderMap::new();
/// let (delivered, stream_sequence) = (2_u64, 41_u64);
/// let span = telemetry::consumer_span!("process order", destination = "bridge.orders.raw",
///     message_id = "17:ab12", consumer = "transformer", delivery_count = delivered,
///     stream_sequence = stream_sequence, stockout_no = Empty, billno = Empty);
/// telemetry::propagation::set_parent_from_headers(&span, &headers);
/// span.record("stockout_no", "CK0001");
/// ```
#[macro_export]
macro_rules! consumer_span {
    ($name:literal, destination = $destination:expr, message_id = $message_id:expr,
     consumer = $consumer:expr, delivery_count = $delivery_count:expr,
     stream_sequence = $stream_sequence:expr, stockout_no = $stockout_no:expr,
     billno = $billno:expr $(, $($fields:tt)+)?) => {
        $crate::__private::tracing::info_span!(
            $name,
            otel.kind = $crate::span::kind::CONSUMER,
            messaging.system = $crate::span::NATS,
            messaging.operation.type = $crate::span::OPERATION_PROCESS,
            messaging.destination.name = $destination,
            messaging.message.id = $message_id,
            messaging.consumer.group.name = $consumer,
            messaging.nats.message.delivery_count = $crate::span::as_i64($delivery_count),
            messaging.nats.message.stream_sequence = $crate::span::as_i64($stream_sequence),
            stockout_no = $stockout_no,
            billno = $billno,
            $($($fields)+)?
        )
    };
}

/// Opens a client span for one call to WDT or 星辰; `endpoint` is the method or path.
#[macro_export]
macro_rules! client_span {
    ($name:literal, endpoint = $endpoint:expr $(, $($fields:tt)+)?) => {
        $crate::__private::tracing::info_span!(
            $name,
            otel.kind = $crate::span::kind::CLIENT,
            endpoint = $endpoint,
            $($($fields)+)?
        )
    };
}

/// Opens an internal span for one master-data lookup; record `cache` (see
/// [`crate::metrics::CacheOutcome`]) once known.
#[macro_export]
macro_rules! lookup_span {
    ($name:literal, collection = $collection:expr, key = $key:expr $(, $($fields:tt)+)?) => {
        $crate::__private::tracing::info_span!(
            $name,
            otel.kind = $crate::span::kind::INTERNAL,
            lookup.collection = $collection,
            lookup.key = $key,
            lookup.cache = $crate::__private::tracing::field::Empty,
            $($($fields)+)?
        )
    };
}

#[cfg(test)]
mod tests {
    use tracing::field::Empty;

    #[test]
    fn macros_declare_the_convention_field_names() {
        let subject = "bridge.orders.raw";
        let publish = crate::producer_span!(
            "publish order",
            destination = subject,
            message_id = "T1",
            stockout_no = "CK1",
            billno = Empty
        );
        let process = crate::consumer_span!(
            "process order",
            destination = subject,
            message_id = "T1",
            consumer = "transformer",
            delivery_count = 2_u64,
            stream_sequence = 7_u64,
            stockout_no = Empty,
            billno = Empty
        );
        let save = crate::client_span!("save bill", endpoint = "/jdy/sal/sal_outbound_save");
        let lookup = crate::lookup_span!("lookup", collection = "customer", key = "SHOP1");

        // Without a subscriber the spans are disabled, but their callsites keep the field names.
        let names = |span: &tracing::Span| -> Vec<String> {
            let metadata = span.metadata().expect("a callsite");
            metadata
                .fields()
                .iter()
                .map(|field| field.name().to_owned())
                .collect()
        };
        for span in [&publish, &process] {
            let names = names(span);
            for expected in [
                super::MESSAGING_SYSTEM,
                super::MESSAGING_DESTINATION_NAME,
                super::MESSAGING_MESSAGE_ID,
                super::MESSAGING_OPERATION_TYPE,
                super::STOCKOUT_NO,
                super::BILLNO,
                super::OTEL_KIND,
            ] {
                assert!(
                    names.iter().any(|name| name == expected),
                    "{expected} in {names:?}"
                );
            }
        }
        assert!(
            names(&process)
                .iter()
                .any(|n| n == super::MESSAGING_NATS_DELIVERY_COUNT)
        );
        assert!(names(&save).iter().any(|n| n == super::OTEL_KIND));
        assert!(names(&lookup).iter().any(|n| n == "lookup.cache"));
    }
}
