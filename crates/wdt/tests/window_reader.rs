//! The window reader against the Qimen router simulator, on port 0: every order exactly once
//! through rate limits and changes mid-read, and permanent failures that spend no retries.

#![allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Duration as Span;
use serde_json::json;
use simulator::orders::{OrderGenConfig, format_time};
use simulator::wdt::{
    CallOutcome, DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_SID, DEFAULT_TARGET_APP_KEY, Knobs,
    WdtSimConfig, WdtSimulator,
};
use wdt::fields::{DETAIL_FIELDS, HEADER_FIELDS, POSITION_FIELDS};
use wdt::{
    Credential, ReadFilter, Secret, StockoutOrder, StockoutQuery, TimeBasis, TryStreamExt,
    WdtClient, WdtConfig, WdtError, WdtTime, WindowReader, parse_cli_time,
};

fn at(text: &str) -> WdtTime {
    parse_cli_time(text).unwrap()
}

/// A client of `simulator` with the default credentials, a high call rate and tiny backoff.
fn config(simulator: &WdtSimulator) -> WdtConfig {
    let secret = Secret::new(DEFAULT_APP_SECRET);
    let mut config = WdtConfig::new(
        simulator.url(),
        DEFAULT_APP_KEY,
        secret,
        DEFAULT_TARGET_APP_KEY,
        DEFAULT_SID,
    );
    config.calls_per_minute = 600_000;
    config.retry_min_delay_ms = 1;
    config.retry_max_delay_ms = 4;
    config.max_retries = 25;
    config.timeout_ms = 20_000;
    config
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn read_all(
    reader: &WindowReader,
    from: WdtTime,
    to: WdtTime,
    filter: ReadFilter,
) -> Result<Vec<StockoutOrder>, WdtError> {
    within(
        "the range to be read",
        reader.read_range(from, to, filter).try_collect(),
    )
    .await
}

fn count_ids(orders: &[StockoutOrder]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for order in orders {
        *counts.entry(order.stockout_id()).or_insert(0) += 1;
    }
    counts
}

fn assert_has_every_seed_field(order: &StockoutOrder) {
    let raw: serde_json::Value = serde_json::from_str(order.raw().get()).unwrap();
    let missing = |value: &serde_json::Value, fields: &[wdt::fields::Field]| -> Vec<&'static str> {
        fields
            .iter()
            .map(|f| f.name)
            .filter(|name| value.get(name).is_none())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        missing(&raw, HEADER_FIELDS),
        Vec::<&str>::new(),
        "header fields"
    );
    for detail in raw["details_list"].as_array().unwrap() {
        assert_eq!(
            missing(detail, DETAIL_FIELDS),
            Vec::<&str>::new(),
            "detail fields"
        );
        for position in detail["position_list"].as_array().unwrap() {
            assert_eq!(
                missing(position, POSITION_FIELDS),
                Vec::<&str>::new(),
                "position fields"
            );
        }
    }
}

#[tokio::test]
async fn forty_days_of_orders_arrive_exactly_once_through_rate_limits() {
    let (from, to) = (at("2024-05-01 00:00:00"), at("2024-06-09 23:59:59"));
    let orders = OrderGenConfig {
        unshipped_fraction: 0.0,
        ..OrderGenConfig::new(11, 2_000, from, to)
    };
    let knobs = Knobs {
        rate_limit_fraction: 0.2,
        ..Knobs::default()
    };
    let sim_config = WdtSimConfig {
        orders: Some(orders),
        knobs,
        ..WdtSimConfig::new(11)
    };
    let simulator = WdtSimulator::start(sim_config).await.unwrap();
    // Two more orders on either side of the boundary between the two 30-day windows.
    let boundary = from + Span::days(30);
    simulator
        .state()
        .generate_one(1, boundary - Span::seconds(1));
    simulator.state().generate_one(2, boundary);
    let expected: BTreeSet<i64> = simulator
        .state()
        .orders()
        .iter()
        .map(|o| o["stockout_id"].as_i64().unwrap())
        .collect();
    assert_eq!(expected.len(), 2_002);

    let reader = WindowReader::new(WdtClient::new(config(&simulator)).unwrap());
    let orders = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap();

    let counts = count_ids(&orders);
    assert!(counts.values().all(|&n| n == 1), "an order arrived twice");
    assert_eq!(counts.keys().copied().collect::<BTreeSet<_>>(), expected);
    orders.iter().take(50).for_each(assert_has_every_seed_field);

    let calls = simulator.state().calls();
    let limited = calls.iter().filter(
        |c| matches!(&c.outcome, CallOutcome::Failure { sub_code, .. } if sub_code == "1012"),
    );
    assert!(
        limited.count() > 0,
        "the simulator injected no rate-limit failure"
    );
    for call in &calls {
        let span = call.window_span().expect("every call carries a window");
        assert!(span <= Span::days(30), "call {} spans {span}", call.seq);
    }
    let windows: BTreeSet<_> = calls
        .iter()
        .map(|c| (c.start_time.clone().unwrap(), c.end_time.clone().unwrap()))
        .collect();
    let expected_windows = BTreeSet::from([
        (
            "2024-05-01 00:00:00".to_owned(),
            "2024-05-30 23:59:59".to_owned(),
        ),
        (
            "2024-05-31 00:00:00".to_owned(),
            "2024-06-09 23:59:59".to_owned(),
        ),
    ]);
    assert_eq!(windows, expected_windows);
}

#[tokio::test]
async fn orders_leaving_the_window_mid_read_do_not_hide_the_others() {
    let (from, to) = (at("2024-05-01 00:00:00"), at("2024-05-10 23:59:59"));
    let orders = OrderGenConfig {
        unshipped_fraction: 0.0,
        ..OrderGenConfig::new(12, 350, from, to)
    };
    let simulator = WdtSimulator::start(WdtSimConfig {
        orders: Some(orders),
        ..WdtSimConfig::new(12)
    })
    .await
    .unwrap();
    let ids = simulator
        .state()
        .orders()
        .iter()
        .map(|o| o["stockout_id"].as_i64().unwrap())
        .collect::<Vec<_>>();
    // Positions on page 0 and page 1: everything behind them moves one place forward.
    let leaving = [ids[5], ids[150]];
    let fired = Arc::new(AtomicBool::new(false));
    let hook_fired = fired.clone();
    let moved_to = format_time(&(to + Span::days(3)));
    simulator.state().set_after_call_hook(move |call, book| {
        if call.page_no.unwrap_or(0) > 0 && !hook_fired.swap(true, Ordering::SeqCst) {
            for id in leaving {
                book.update(id, |order| {
                    order.insert("consign_time".into(), json!(moved_to));
                });
            }
        }
    });

    let mut config = config(&simulator);
    config.page_size = 100;
    let reader = WindowReader::new(WdtClient::new(config).unwrap());
    let orders = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap();

    assert!(
        fired.load(Ordering::SeqCst),
        "the hook never moved an order out of the window"
    );
    let counts = count_ids(&orders);
    assert!(counts.values().all(|&n| n == 1), "an order arrived twice");
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !leaving.contains(id) && !counts.contains_key(id))
        .collect();
    assert_eq!(
        missing,
        Vec::<&i64>::new(),
        "orders that stayed in the window were skipped"
    );
}

#[tokio::test]
async fn permanent_failures_name_their_cause_and_spend_no_retries() {
    let (from, to) = (at("2024-05-01 00:00:00"), at("2024-05-05 00:00:00"));
    let simulator = WdtSimulator::start(WdtSimConfig::new(13).with_orders(20, from, to))
        .await
        .unwrap();
    let state = simulator.state();

    let mut wrong_secret = config(&simulator);
    wrong_secret.app_secret = Secret::new("not-the-secret");
    let reader = WindowReader::new(WdtClient::new(wrong_secret).unwrap());
    let error = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(error, WdtError::Signature { .. }), "{error}");
    assert!(error.to_string().contains("signature"), "{error}");
    assert_eq!(state.calls().len(), 1, "a signature failure was retried");

    state.clear_calls();
    let mut wrong_target = config(&simulator);
    wrong_target.target_app_key = "11111111".into();
    let reader = WindowReader::new(WdtClient::new(wrong_target).unwrap());
    let error = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            WdtError::Unauthorized {
                credential: Credential::TargetAppKey,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("target_app_key"), "{error}");
    assert_eq!(
        state.calls().len(),
        1,
        "a refused target app key was retried"
    );

    state.clear_calls();
    let client = WdtClient::new(config(&simulator)).unwrap();
    let too_long = StockoutQuery::window(from, from + Span::days(31), 100);
    let error = within("the long window", client.query_retrying(&too_long))
        .await
        .unwrap_err();
    assert!(matches!(error, WdtError::WindowTooLong { .. }), "{error}");
    assert!(error.to_string().contains("30 days"), "{error}");
    assert!(!error.is_transient());
    assert_eq!(state.calls().len(), 1, "a window over 30 days was retried");
}

#[tokio::test]
async fn transient_failures_stop_after_the_configured_retries() {
    let knobs = Knobs {
        server_error_fraction: 1.0,
        ..Knobs::default()
    };
    let simulator = WdtSimulator::start(WdtSimConfig {
        knobs,
        ..WdtSimConfig::new(14)
    })
    .await
    .unwrap();
    let mut config = config(&simulator);
    config.max_retries = 3;
    let reader = WindowReader::new(WdtClient::new(config).unwrap());
    let (from, to) = (at("2024-05-01 00:00:00"), at("2024-05-02 00:00:00"));
    let error = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, WdtError::ServerError { status: 503 }),
        "{error}"
    );
    assert_eq!(
        simulator.state().calls().len(),
        4,
        "one call and three retries"
    );
}

#[tokio::test]
async fn modified_time_basis_status_and_filters_reach_the_router() {
    let (from, to) = (at("2024-05-01 00:00:00"), at("2024-05-03 00:00:00"));
    let simulator = WdtSimulator::start(WdtSimConfig::new(15).with_orders(0, from, to))
        .await
        .unwrap();
    let order = simulator.state().generate_one(9, at("2024-04-20 10:00:00"));
    simulator.state().update_order(9, |o| {
        o.insert("modified".into(), json!("2024-05-02 09:30:00"));
        o.insert("status".into(), json!(110));
    });
    let shop_no = order["shop_no"].as_str().unwrap().to_owned();
    let filter = ReadFilter {
        basis: TimeBasis::Modified,
        status: Some(110),
        shop_no: Some(shop_no.clone()),
        warehouse_no: None,
    };
    let reader = WindowReader::new(WdtClient::new(config(&simulator)).unwrap());
    let orders = read_all(&reader, from, to, filter).await.unwrap();
    assert_eq!(
        orders
            .iter()
            .map(StockoutOrder::stockout_id)
            .collect::<Vec<_>>(),
        [9]
    );
    assert_eq!(orders[0].modified(), Some(at("2024-05-02 09:30:00")));

    let by_consign = read_all(&reader, from, to, ReadFilter::default())
        .await
        .unwrap();
    assert!(by_consign.is_empty(), "consign time is the default basis");
    let params = &simulator.state().calls()[0].params;
    assert_eq!(params.get("is_by_modified").map(String::as_str), Some("1"));
    assert_eq!(params.get("status").map(String::as_str), Some("110"));
    assert_eq!(params.get("shop_no"), Some(&shop_no));
    assert!(
        !params.contains_key("warehouse_no"),
        "empty parameters are never sent"
    );
}
