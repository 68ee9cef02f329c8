//! Every metric the bridge exports, in one place: names, descriptions, labels and the calls that
//! record them.
//!
//! Workers record through the functions here (never through `metrics::counter!` with a name of
//! their own), so each metric has one spelling and every label value comes from a fixed enum:
//! a label can never take an order number, a subject or an error text, and the number of series
//! stays bounded. Recording goes through the `metrics` facade; [`install`] puts the Prometheus
//! recorder behind it and returns the handle whose text [`crate::health`] serves at `/metrics`.
//! Before [`install`] (in unit tests of the workers, say) recording is a no-op.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `bridge_orders_read_total` | counter | |
//! | `bridge_bills_published_total` | counter | |
//! | `bridge_bills_loaded_total` | counter | `outcome` |
//! | `bridge_dead_letters_total` | counter | `stage`, `reason` |
//! | `bridge_api_calls_total` | counter | `endpoint`, `outcome` |
//! | `bridge_api_call_duration_seconds` | histogram | `endpoint`, `outcome` |
//! | `bridge_lookups_total` | counter | `collection`, `cache` |
//! | `bridge_consumer_pending_messages` | gauge | `consumer` |
//! | `bridge_consumer_ack_pending_messages` | gauge | `consumer` |
//! | `bridge_extractor_lag_seconds` | gauge | |

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// Orders read from WDT and published raw.
pub const ORDERS_READ: &str = "bridge_orders_read_total";
/// Bill payloads published by the transformer.
pub const BILLS_PUBLISHED: &str = "bridge_bills_published_total";
/// Bills the loader finished with, by [`LoadOutcome`].
pub const BILLS_LOADED: &str = "bridge_bills_loaded_total";
/// Dead letters published, by [`Stage`] and [`DeadLetterReason`].
pub const DEAD_LETTERS: &str = "bridge_dead_letters_total";
/// Calls to WDT and 星辰, by [`ApiEndpoint`] and [`ApiOutcome`].
pub const API_CALLS: &str = "bridge_api_calls_total";
/// How long calls to WDT and 星辰 took, by [`ApiEndpoint`] and [`ApiOutcome`].
pub const API_CALL_DURATION: &str = "bridge_api_call_duration_seconds";
/// Master-data lookups, by [`Collection`] and [`CacheOutcome`].
pub const LOOKUPS: &str = "bridge_lookups_total";
/// Messages a durable consumer has not yet been delivered, by [`Consumer`].
pub const CONSUMER_PENDING: &str = "bridge_consumer_pending_messages";
/// Messages delivered to a durable consumer and not yet acknowledged, by [`Consumer`].
pub const CONSUMER_ACK_PENDING: &str = "bridge_consumer_ack_pending_messages";
/// How far the end of the extractor's last finished window is behind now.
pub const EXTRACTOR_LAG: &str = "bridge_extractor_lag_seconds";

/// Histogram buckets for API call durations, in seconds: 5 ms to a minute.
pub const API_DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Declares a label enum: its variants, their label values, and the list of all of them.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, for describing and for tests.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// The value whose label is `label`.
            pub fn from_label(label: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|value| value.as_label() == label)
            }
        }
    };
}

label_enum! {
    /// What the loader's save did to a bill.
    LoadOutcome {
        /// 星辰 created the bill.
        Created => "created",
        /// 星辰 had the bill and took the new content.
        Modified => "modified",
        /// The ledger shows the same content was already saved; nothing was posted.
        Unchanged => "unchanged",
        /// A newer version of the order was already saved; this older one was dropped.
        Stale => "stale",
    }
}

label_enum! {
    /// A step of the pipeline, spelled as the pipeline's dead-letter subjects spell it.
    Stage {
        /// The extractor.
        Extract => "extract",
        /// The transformer.
        Transform => "transform",
        /// The loader.
        Load => "load",
    }
}

label_enum! {
    /// Why a message was given up on; the labels are the pipeline's dead-letter reason kinds.
    DeadLetterReason {
        /// The payload is not an order.
        MalformedOrder => "malformed_order",
        /// A field the mapping needs is absent.
        MissingField => "missing_field",
        /// A field's value cannot be used.
        InvalidValue => "invalid_value",
        /// A master-data number has no record in 星辰.
        LookupNotFound => "lookup_not_found",
        /// 星辰 refused the bill for good.
        TargetRejected => "target_rejected",
        /// 星辰 has the bill number and the bill could not be found to record it.
        DuplicateBill => "duplicate_bill",
        /// Handling the message fails in a way no retry fixes.
        PoisonMessage => "poison_message",
        /// Every allowed delivery failed with a transient error.
        MaxDeliveries => "max_deliveries",
        /// A kind this list does not know yet.
        Other => "other",
    }
}

impl DeadLetterReason {
    /// The reason for a dead-letter reason kind as the pipeline spells it (`lookup_not_found`);
    /// [`DeadLetterReason::Other`] for one this list does not know, so the label set stays fixed.
    pub fn of_kind(kind: &str) -> DeadLetterReason {
        DeadLetterReason::from_label(kind).unwrap_or(DeadLetterReason::Other)
    }
}

label_enum! {
    /// A remote endpoint the bridge calls.
    ApiEndpoint {
        /// WDT `wdt.stockout.order.query.trade`.
        WdtStockoutQuery => "wdt.stockout.order.query.trade",
        /// 星辰 `push_app_authorize`.
        XingchenAuthorize => "push_app_authorize",
        /// 星辰 `kingdee_auth_token`.
        XingchenToken => "kingdee_auth_token",
        /// 星辰 `customer_list`.
        XingchenCustomerList => "customer_list",
        /// 星辰 `customer_detail`.
        XingchenCustomerDetail => "customer_detail",
        /// 星辰 `material_list`.
        XingchenMaterialList => "material_list",
        /// 星辰 `material_detail`.
        XingchenMaterialDetail => "material_detail",
        /// 星辰 `store_list`.
        XingchenStoreList => "store_list",
        /// 星辰 `store_detail`.
        XingchenStoreDetail => "store_detail",
        /// 星辰 `sal_outbound_save`.
        XingchenSaveBill => "sal_outbound_save",
        /// 星辰 `sal_outbound_list`.
        XingchenListBills => "sal_outbound_list",
        /// Any endpoint not listed here.
        Other => "other",
    }
}

impl ApiEndpoint {
    /// The endpoint a WDT method or a 星辰 path names (`/jdy/sal/sal_outbound_save` and
    /// `sal_outbound_save` alike); [`ApiEndpoint::Other`] for an unknown one.
    pub fn from_name(name: &str) -> ApiEndpoint {
        let last = name
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(name);
        ApiEndpoint::ALL
            .iter()
            .copied()
            .find(|endpoint| endpoint.as_label() == last)
            .unwrap_or(ApiEndpoint::Other)
    }
}

label_enum! {
    /// How a remote call ended.
    ApiOutcome {
        /// The call succeeded.
        Ok => "ok",
        /// The call failed in a way worth retrying.
        TransientError => "transient_error",
        /// The call failed for good.
        PermanentError => "permanent_error",
    }
}

impl ApiOutcome {
    /// The outcome of a call that returned `result`, with `is_transient` the error's answer.
    pub fn of<T, E>(result: &Result<T, E>, is_transient: impl FnOnce(&E) -> bool) -> ApiOutcome {
        match result {
            Ok(_) => ApiOutcome::Ok,
            Err(error) if is_transient(error) => ApiOutcome::TransientError,
            Err(_) => ApiOutcome::PermanentError,
        }
    }
}

label_enum! {
    /// A master-data collection a bill refers to.
    Collection {
        /// Customers, found by shop number.
        Customer => "customer",
        /// Materials (goods), found by goods number.
        Material => "material",
        /// Warehouses (星辰 stores), found by warehouse number.
        Warehouse => "warehouse",
        /// A material's base unit.
        Unit => "unit",
    }
}

label_enum! {
    /// Where a lookup's answer came from.
    CacheOutcome {
        /// A fresh cached entry.
        Hit => "hit",
        /// Nothing cached; 星辰 was asked.
        Miss => "miss",
        /// A cached entry too old to use; 星辰 was asked again.
        Expired => "expired",
    }
}

label_enum! {
    /// A durable consumer of the pipeline.
    Consumer {
        /// The transformer's consumer on raw orders.
        Transformer => "transformer",
        /// The loader's consumer on bill payloads.
        Loader => "loader",
    }
}

/// Installs the Prometheus recorder for the process, describes every metric, and returns the
/// handle that renders them. Fails when a recorder is already installed.
pub fn install() -> Result<PrometheusHandle, TelemetryError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(API_CALL_DURATION.to_owned()),
            &API_DURATION_BUCKETS,
        )
        .map_err(|error| TelemetryError::Metrics(error.to_string()))?
        .install_recorder()
        .map_err(|error| TelemetryError::Metrics(error.to_string()))?;
    describe();
    Ok(handle)
}

/// Gives every metric its description and unit, so each appears with `# HELP` and `# TYPE`.
pub fn describe() {
    describe_counter!(
        ORDERS_READ,
        Unit::Count,
        "Orders read from WDT and published raw."
    );
    describe_counter!(
        BILLS_PUBLISHED,
        Unit::Count,
        "Bill payloads published by the transformer."
    );
    describe_counter!(
        BILLS_LOADED,
        Unit::Count,
        "Bills the loader finished with, by outcome."
    );
    describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Dead letters published, by stage and reason."
    );
    describe_counter!(
        API_CALLS,
        Unit::Count,
        "Calls to WDT and 星辰, by endpoint and outcome."
    );
    describe_histogram!(
        API_CALL_DURATION,
        Unit::Seconds,
        "Duration of calls to WDT and 星辰."
    );
    describe_counter!(
        LOOKUPS,
        Unit::Count,
        "Master-data lookups, by collection and cache outcome."
    );
    describe_gauge!(
        CONSUMER_PENDING,
        Unit::Count,
        "Messages not yet delivered to the consumer."
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        Unit::Count,
        "Messages delivered to the consumer and not yet acknowledged."
    );
    describe_gauge!(
        EXTRACTOR_LAG,
        Unit::Seconds,
        "How far the end of the extractor's last finished window is behind now."
    );
}

/// Counts orders read from WDT and published.
pub fn orders_read(count: u64) {
    counter!(ORDERS_READ).increment(count);
}

/// Counts a bill payload published.
pub fn bill_published() {
    counter!(BILLS_PUBLISHED).increment(1);
}

/// Counts a bill the loader finished with.
pub fn bill_loaded(outcome: LoadOutcome) {
    counter!(BILLS_LOADED, "outcome" => outcome.as_label()).increment(1);
}

/// Counts a dead letter.
pub fn dead_letter(stage: Stage, reason: DeadLetterReason) {
    counter!(DEAD_LETTERS, "stage" => stage.as_label(), "reason" => reason.as_label()).increment(1);
}

/// Counts a remote call and records how long it took.
pub fn api_call(endpoint: ApiEndpoint, outcome: ApiOutcome, elapsed: Duration) {
    let labels = [
        ("endpoint", endpoint.as_label()),
        ("outcome", outcome.as_label()),
    ];
    counter!(API_CALLS, &labels).increment(1);
    histogram!(API_CALL_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts a master-data lookup.
pub fn lookup(collection: Collection, cache: CacheOutcome) {
    counter!(LOOKUPS, "collection" => collection.as_label(), "cache" => cache.as_label())
        .increment(1);
}

/// Sets a consumer's backlog as JetStream last reported it.
pub fn consumer_backlog(consumer: Consumer, pending: u64, ack_pending: u64) {
    // Counts of messages are far below 2^53, so they are exact as f64.
    gauge!(CONSUMER_PENDING, "consumer" => consumer.as_label()).set(pending as f64);
    gauge!(CONSUMER_ACK_PENDING, "consumer" => consumer.as_label()).set(ack_pending as f64);
}

/// Sets how far the extractor is behind now.
pub fn extractor_lag(lag: Duration) {
    gauge!(EXTRACTOR_LAG).set(lag.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(record: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(API_CALL_DURATION.to_owned()),
                &API_DURATION_BUCKETS,
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        handle.render()
    }

    #[test]
    fn endpoint_is_found_from_a_path_or_a_method_and_unknown_ones_fold_into_other() {
        assert_eq!(
            ApiEndpoint::from_name("/jdy/sal/sal_outbound_save"),
            ApiEndpoint::XingchenSaveBill
        );
        assert_eq!(
            ApiEndpoint::from_name("sal_outbound_save"),
            ApiEndpoint::XingchenSaveBill
        );
        assert_eq!(
            ApiEndpoint::from_name("wdt.stockout.order.query.trade"),
            ApiEndpoint::WdtStockoutQuery
        );
        assert_eq!(
            ApiEndpoint::from_name("/jdyconnector/app_management/kingdee_auth_token"),
            ApiEndpoint::XingchenToken
        );
        assert_eq!(
            ApiEndpoint::from_name("/jdy/v2/anything/else"),
            ApiEndpoint::Other
        );
    }

    #[test]
    fn recorded_metrics_render_with_help_type_and_fixed_labels() {
        let text = render_with(|| {
            orders_read(3);
            bill_loaded(LoadOutcome::Stale);
            dead_letter(
                Stage::Transform,
                DeadLetterReason::of_kind("lookup_not_found"),
            );
            api_call(
                ApiEndpoint::XingchenSaveBill,
                ApiOutcome::Ok,
                Duration::from_millis(30),
            );
            lookup(Collection::Customer, CacheOutcome::Hit);
            consumer_backlog(Consumer::Loader, 5, 2);
            extractor_lag(Duration::from_secs(90));
        });

        assert!(
            text.contains("# TYPE bridge_orders_read_total counter"),
            "{text}"
        );
        assert!(text.contains("bridge_orders_read_total 3"), "{text}");
        assert!(
            text.contains(r#"bridge_bills_loaded_total{outcome="stale"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bridge_dead_letters_total{stage="transform",reason="lookup_not_found"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE bridge_api_call_duration_seconds histogram"),
            "{text}"
        );
        let bucket = r#"{endpoint="sal_outbound_save",outcome="ok",le="0.05"} 1"#;
        assert!(text.contains(&format!("bridge_api_call_duration_seconds_bucket{bucket}")));
        assert!(text.contains(r#"bridge_consumer_ack_pending_messages{consumer="loader"} 2"#));
        assert!(text.contains("bridge_extractor_lag_seconds 90"), "{text}");
        assert!(text.contains("# HELP bridge_lookups_total"), "{text}");
    }

    #[test]
    fn unknown_labels_fold_into_other_and_known_ones_round_trip() {
        assert_eq!(
            DeadLetterReason::of_kind("brand_new_kind"),
            DeadLetterReason::Other
        );
        for reason in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::of_kind(reason.as_label()), *reason);
        }
        assert_eq!(Stage::from_label("load"), Some(Stage::Load));
    }

    #[test]
    fn outcome_follows_the_errors_own_answer() {
        let transient: Result<(), &str> = Err("timeout");
        assert_eq!(
            ApiOutcome::of(&transient, |_| true),
            ApiOutcome::TransientError
        );
        assert_eq!(
            ApiOutcome::of(&transient, |_| false),
            ApiOutcome::PermanentError
        );
        assert_eq!(
            ApiOutcome::of(&Ok::<(), &str>(()), |_| false),
            ApiOutcome::Ok
        );
    }
}
