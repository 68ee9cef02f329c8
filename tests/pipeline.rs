//! Issue 5's "done when", end to end: `extractor backfill`, `transformer` and `loader` as separate
//! processes against a private nats-server, the 旺店通 simulator and the 星辰 simulator.
//!
//! Each test builds its own [`Harness`] (servers on port 0, temporary stores), so the tests run in
//! parallel. They judge the outcome from the outside only: the bills 星辰 holds compared field by
//! field with bills computed from the raw orders ([`e2e::expected`]), 星辰's request log, the
//! ledger bucket, the dead-letter stream and the consumers' backlog. Building the worker
//! binaries first is the runner's job (`scripts/test`, or `cargo build -p extractor -p
//! transformer -p loader`). The live `extractor run` is tested in the extractor's own crate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use e2e::{Harness, Order, stockout_no};
use pipeline::Stage;
use pipeline::dead_letter::ReasonKind;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use simulator::orders::{format_time, now_beijing};
use simulator::wdt::{self, CallOutcome, OrderChange};
use simulator::xingchen::{self, Knobs as XingchenKnobs};
use test_support::process::eventually;

/// Several days of orders.
const FROM: &str = "2024-05-01 00:00:00";
const TO: &str = "2024-05-06 23:59:59";

/// Time for a run to settle; generous because the tests share two cores.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_loads_each_order_once_a_rerun_posts_nothing_and_changes_modify_their_bills() {
    let mut h = Harness::start(11, 1000, FROM, TO).await;
    let orders = top_up_to_shipped(&h, 1000);
    let unshipped = h.wdt.state().orders().len() - orders.len();
    assert!(
        unshipped > 0,
        "the simulator holds unshipped orders the query must skip"
    );

    // 1. A backfill of the range gives one bill per shipped order, each as the seed maps it.
    h.start_pipeline();
    h.backfill().await;
    h.wait_until_settled(1000, 0, SETTLE_TIMEOUT).await;
    h.assert_bills_match(&orders);
    assert_eq!(
        h.saves(),
        1000,
        "with no faults, every bill is posted exactly once"
    );
    assert_ledger_names_every_bill(&h, &orders).await;

    // 2. The same backfill again posts nothing, although it reads every order again.
    let before = h.bills();
    let calls = h.wdt.state().calls().len();
    h.backfill().await;
    h.wait_until_settled(1000, 0, SETTLE_TIMEOUT).await;
    let pages = h.wdt.state().calls().len() - calls;
    assert!(
        pages >= 10,
        "the second backfill read 1000 orders again, in {pages} calls"
    );
    assert_eq!(
        h.saves(),
        1000,
        "a second backfill of unchanged orders posts nothing"
    );
    assert_eq!(h.bills(), before);

    // 3. Twenty changed orders, extracted again, modify their own bills and create none.
    let changed = change_goods_counts(&h, &orders, 20);
    let orders = h.shipped_orders();
    h.backfill().await;
    h.wait_until_settled(1000, 0, SETTLE_TIMEOUT).await;
    assert_eq!(
        h.saves(),
        1020,
        "each changed order is posted once more, nothing else"
    );
    h.assert_bills_match(&orders);
    let after = h.bills();
    for (billno, bill) in &before {
        if changed.contains_key(billno) {
            assert_eq!(
                after[billno]["id"], bill["id"],
                "{billno} keeps its bill id"
            );
            assert_ne!(after[billno], *bill, "{billno} holds the new content");
        } else {
            assert_eq!(
                after[billno], *bill,
                "{billno} did not change and was not touched"
            );
        }
    }
    let ledger = h.ledger_entries().await;
    for (billno, stockout_id) in &changed {
        let entry = &ledger[stockout_id];
        assert_eq!(entry.billno, *billno);
        assert_eq!(
            entry.bill_id,
            after[billno]["id"].as_str().unwrap_or_default()
        );
    }

    // Workers stop cleanly on SIGTERM once the work is done.
    h.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_with_goods_unknown_to_xingchen_become_dead_letters_naming_the_goods() {
    let mut h = Harness::start(12, 200, FROM, TO).await;
    let shipped = h.shipped_orders();
    let goods_no = goods_of_several_orders(&shipped);
    assert!(h.xingchen.state().remove_material(&goods_no));
    let (affected, loadable): (Vec<Order>, Vec<Order>) = shipped
        .into_iter()
        .partition(|order| goods_numbers(order).contains(&goods_no));

    h.start_pipeline();
    h.backfill().await;
    let (bills, letters) = (loadable.len() as u64, affected.len() as u64);
    h.wait_until_settled(bills, letters, SETTLE_TIMEOUT).await;

    h.assert_bills_match(&loadable);
    let expected: HashSet<String> = affected.iter().map(stockout_no).collect();
    let dead_letters = h.dead_letters().await;
    let mut named = HashSet::new();
    for letter in &dead_letters {
        let no = letter.stockout_no.clone().unwrap_or_default();
        assert!(
            expected.contains(&no),
            "dead letter for {no:?}, which knows its goods"
        );
        assert_eq!(letter.stage, Stage::Transform, "{no}");
        assert_eq!(letter.reason_kind, ReasonKind::LookupNotFound, "{no}");
        assert!(
            letter.reason.contains(&goods_no),
            "the dead letter of {no} names {goods_no:?}: {}",
            letter.reason
        );
        assert!(named.insert(no.clone()), "{no} has two dead letters");
        assert!(h.xingchen.state().bill(&no).is_none(), "{no} has a bill");
        let raw: Value = serde_json::from_slice(&letter.payload).expect("the raw order as JSON");
        assert_eq!(
            raw["stockout_no"],
            no.as_str(),
            "the dead letter keeps the raw order"
        );
    }
    assert_eq!(
        named, expected,
        "every order with the goods is a dead letter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_gateway_refusals_expiring_tokens_and_stalled_saves_still_give_one_bill_each() {
    let mut h = Harness::start(13, 200, FROM, TO).await;
    let orders = h.shipped_orders();
    h.wdt.state().set_knobs(wdt::Knobs {
        rate_limit_fraction: 0.3,
        ..wdt::Knobs::default()
    });
    h.xingchen.state().set_knobs(XingchenKnobs {
        fraction_429: 0.1,
        fraction_519: 0.1,
        token_expires_after_calls: Some(25),
        fraction_stall: 0.1,
        stall_ms: 2_000,
        ..XingchenKnobs::default()
    });
    // Shorter than a stall: a stalled save stores the bill and then times out at the client.
    h.set_env("XINGCHEN_TIMEOUT", "1s");

    h.start_pipeline();
    h.backfill().await;
    h.wait_until_settled(orders.len() as u64, 0, SETTLE_TIMEOUT)
        .await;

    h.assert_bills_match(&orders);
    assert_ledger_names_every_bill(&h, &orders).await;
    assert_faults_were_injected(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_killed_mid_run_and_restarted_leaves_no_order_unloaded_and_none_doubled() {
    let mut h = Harness::start(14, 300, FROM, TO).await;
    let orders = h.shipped_orders();
    let total = orders.len() as u64;
    // Slow, partly stalling saves keep several bills stored but unanswered when the kill comes.
    h.xingchen.state().set_knobs(XingchenKnobs {
        latency_ms: 30,
        fraction_stall: 0.2,
        stall_ms: 500,
        ..XingchenKnobs::default()
    });
    h.set_env("XINGCHEN_MAX_IN_FLIGHT", "4");
    h.set_env("BRIDGE_ACK_WAIT", "2s");

    h.start_worker("transformer");
    h.backfill().await;
    let loader = h.start_worker("loader");
    // Kill once a quarter is loaded and 星辰 holds a bill the ledger does not know yet: the
    // restarted loader must find that bill instead of posting it again.
    let what = "a quarter of the bills loaded, one of them not yet in the ledger";
    eventually(what, SETTLE_TIMEOUT, || async {
        let bills = h.bill_count();
        (bills >= total / 4 && bills > h.ledger_len().await).then_some(())
    })
    .await;
    h.kill(loader);
    let (at_kill, recorded) = (h.bill_count(), h.ledger_len().await);
    assert!(
        at_kill < total,
        "the loader finished before the kill ({at_kill} of {total}); slow 星辰 down further"
    );
    assert!(
        recorded < at_kill,
        "every bill stored at the kill was recorded too ({recorded}); the crash proves little"
    );

    h.start_worker("loader");
    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;
    h.assert_bills_match(&orders);
    assert_ledger_names_every_bill(&h, &orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_stopped_with_sigterm_mid_run_exit_0_and_two_loaders_after_them_finish_the_run() {
    let mut h = Harness::start(15, 300, FROM, TO).await;
    let orders = h.shipped_orders();
    let total = orders.len() as u64;
    h.xingchen.state().set_knobs(XingchenKnobs {
        latency_ms: 30,
        ..XingchenKnobs::default()
    });
    h.set_env("XINGCHEN_MAX_IN_FLIGHT", "4");
    h.set_env("BRIDGE_SHUTDOWN_DEADLINE", "10s");

    h.start_pipeline();
    h.backfill().await;
    h.wait_for_bills(total / 4, SETTLE_TIMEOUT).await;
    // Each worker lets its in-flight messages reach an exit and leaves with status 0.
    h.stop_workers().await;
    let at_stop = h.bill_count();
    assert!(
        at_stop < total,
        "the run ended before the stop ({at_stop} of {total})"
    );

    // Two loaders share the rest without posting any bill twice.
    h.start_pipeline();
    h.start_worker("loader");
    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;
    h.assert_bills_match(&orders);
    assert_ledger_names_every_bill(&h, &orders).await;
    assert_eq!(
        h.saves() as u64,
        total,
        "a graceful stop loses no answer, so no bill is posted twice"
    );
}

/// Adds shipped orders to the 旺店通 simulator until the range holds exactly `count`; returns
/// them.
fn top_up_to_shipped(h: &Harness, count: usize) -> Vec<Order> {
    let shipped = h.shipped_orders().len();
    assert!(shipped <= count);
    h.wdt.state().generate(count - shipped, h.from, h.to);
    let orders = h.shipped_orders();
    assert_eq!(orders.len(), count);
    orders
}

/// Raises the first line's `goods_count` of `count` orders spread over the range and moves
/// their `modified` to now; returns the changed orders' `stockout_no` → `stockout_id`.
fn change_goods_counts(h: &Harness, orders: &[Order], count: usize) -> BTreeMap<String, String> {
    let step = orders.len() / count;
    let now = format_time(&now_beijing());
    let mut changed = BTreeMap::new();
    for order in orders.iter().step_by(step).take(count) {
        let id = order["stockout_id"]
            .as_i64()
            .expect("a numeric stockout_id");
        let line = &order["details_list"][0];
        let rec_id = line["rec_id"].as_i64().expect("a numeric rec_id");
        let goods_count: Decimal = line["goods_count"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .expect("a decimal goods_count");
        let mut set = Map::new();
        set.insert("modified".into(), json!(now));
        let mut fields = Map::new();
        fields.insert(
            "goods_count".into(),
            json!(format!("{:.4}", goods_count + Decimal::from(7))),
        );
        let change = OrderChange {
            set,
            details: BTreeMap::from([(rec_id, fields)]),
        };
        h.wdt
            .state()
            .modify_order(id, &change)
            .expect("modify the order");
        changed.insert(stockout_no(order), id.to_string());
    }
    assert_eq!(changed.len(), count);
    changed
}

/// Asserts that the ledger holds one entry per order, naming the bill 星辰 holds for it.
async fn assert_ledger_names_every_bill(h: &Harness, orders: &[Order]) {
    let ledger = h.ledger_entries().await;
    let bills = h.bills();
    assert_eq!(ledger.len(), orders.len(), "one ledger entry per order");
    for order in orders {
        let id = order["stockout_id"].to_string();
        let no = stockout_no(order);
        let entry = ledger
            .get(&id)
            .unwrap_or_else(|| panic!("no ledger entry for {no}"));
        assert_eq!(entry.billno, no);
        assert_eq!(
            Some(entry.bill_id.as_str()),
            bills[&no]["id"].as_str(),
            "the ledger of {no} names the bill 星辰 holds"
        );
    }
}

/// Asserts that each fault the test asked for did happen, so a passing run means something.
fn assert_faults_were_injected(h: &Harness) {
    let rate_limited = h.wdt.state().calls().iter().any(
        |call| matches!(&call.outcome, CallOutcome::Failure { sub_code, .. } if sub_code == "1012"),
    );
    assert!(rate_limited, "旺店通 rate-limited some calls");
    let log = h.xingchen.state().log();
    assert!(log.iter().any(|e| e.status == 429), "星辰 answered 429");
    assert!(log.iter().any(|e| e.status == 519), "星辰 answered 519");
    assert!(log.iter().any(|e| e.code == Some(4011)), "a token expired");
    let stalled = log.iter().any(|e| {
        e.endpoint == xingchen::SAVE_PATH
            && (e.status == 499 || e.finished_ms - e.started_ms >= 1_000)
    });
    assert!(stalled, "a save stalled past the client's timeout");
}

/// A goods number sold in at least two orders and at most a fifth of them, preferring one with a
/// dot or a space (which must survive every key encoding on the way).
fn goods_of_several_orders(orders: &[Order]) -> String {
    let mut orders_with: HashMap<String, usize> = HashMap::new();
    for order in orders {
        for goods_no in goods_numbers(order) {
            *orders_with.entry(goods_no).or_default() += 1;
        }
    }
    let mut candidates: Vec<(String, usize)> = orders_with
        .into_iter()
        .filter(|(_, n)| (2..=orders.len() / 5).contains(n))
        .collect();
    candidates.sort_by_key(|(no, _)| (!no.contains(['.', ' ']), no.clone()));
    candidates
        .first()
        .expect("some goods sold in several orders")
        .0
        .clone()
}

fn goods_numbers(order: &Order) -> HashSet<String> {
    order["details_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|line| line["goods_no"].as_str().map(str::to_owned))
        .collect()
}
