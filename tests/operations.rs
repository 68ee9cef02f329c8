//! Issue 6's "done when", end to end: several replicas of each worker, crashes and a NATS restart
//! mid-run, and the operator's `bridge` commands (`status`, `replay`, `dlq`, `reconcile`,
//! `masterdata sync`) run as processes against the bridge they operate.
//!
//! Each test builds its own [`Harness`] (servers on port 0, temporary stores), so the tests run in
//! parallel; they are sized for two shared cores. The outcome is judged from the outside: the
//! bills 星辰 holds, its request log, the ledger, the streams and the consumers' backlog, and what
//! the commands print with `--json`. The worker binaries and `bridge` must be built first
//! (`scripts/test`, or `cargo build -p extractor -p transformer -p loader -p bridge`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use e2e::{Harness, Order, WorkerId, stockout_no};
use rust_decimal::Decimal;
use serde_json::Value;
use simulator::xingchen::{self, Knobs as XingchenKnobs, SimMaterial};
use test_support::process::{binary, eventually};

/// Several days of orders.
const FROM: &str = "2024-05-01 00:00:00";
const TO: &str = "2024-05-06 23:59:59";

/// Time for a run to settle; generous because the tests share two cores.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(240);
/// Time one `bridge` command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_of_each_stage_share_5000_orders_and_a_crash_of_one_of_each_loses_none() {
    let mut h = Harness::start(21, 5000, FROM, TO).await;
    let orders = top_up_to_shipped(&h, 5000);
    let total = orders.len() as u64;
    h.set_env("BRIDGE_HEARTBEAT_INTERVAL", "1s");

    let transformers: Vec<WorkerId> = (0..3).map(|_| h.start_worker("transformer")).collect();
    let loaders: Vec<WorkerId> = (0..3).map(|_| h.start_worker("loader")).collect();
    let backfill = h.start_backfill();

    // Kill one of each once every replica has done some of the work and much is still to do.
    let pids: Vec<u32> = transformers
        .iter()
        .chain(&loaders)
        .map(|id| h.pid(*id))
        .collect();
    let what = "every replica acked some messages and a fifth of the bills loaded";
    eventually(what, SETTLE_TIMEOUT, || async {
        let acked = acked_by_pid(&h).await;
        let all_working = pids
            .iter()
            .all(|pid| acked.get(pid).is_some_and(|n| *n > 0));
        (all_working && h.bill_count() >= total / 5).then_some(())
    })
    .await;
    let (killed_transformer, killed_loader) = (pids[0], pids[3]);
    h.kill(transformers[0]);
    h.kill(loaders[0]);
    let at_kill = h.bill_count();
    assert!(
        at_kill < total * 4 / 5,
        "the run was almost over at the kill ({at_kill} of {total} bills)"
    );

    let status = h.wait_exit(backfill, SETTLE_TIMEOUT).await;
    assert!(status.success(), "extractor backfill exited with {status}");
    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;
    assert_eq!(h.bills().len() as u64, total, "exactly one bill per order");
    h.assert_bills_match(&orders);
    assert_eq!(h.ledger_len().await, total, "one ledger entry per order");

    // Every survivor took a fair part: with three pulling, none does less than a tenth.
    let acked = acked_by_pid(&h).await;
    for pid in &pids {
        let done = acked.get(pid).copied().unwrap_or_default();
        let floor = if [killed_transformer, killed_loader].contains(pid) {
            1
        } else {
            total / 10
        };
        assert!(
            done >= floor,
            "worker {pid} acked {done} of {total} messages: {acked:?}"
        );
    }
    let status = bridge_status(&h).await;
    for consumer in status["consumers"].as_array().expect("consumers") {
        assert_eq!(consumer["pending"], 0, "{consumer}");
        assert_eq!(consumer["ack_pending"], 0, "{consumer}");
    }
    assert_status_agrees(&h, &status, 4).await;
    h.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_when_nats_server_restarts_on_its_store_and_nothing_is_lost_or_doubled() {
    let mut h = Harness::start(22, 400, FROM, TO).await;
    let orders = h.shipped_orders();
    let total = orders.len() as u64;
    // Slow saves keep the loader busy across the outage.
    h.xingchen.state().set_knobs(XingchenKnobs {
        latency_ms: 30,
        ..XingchenKnobs::default()
    });
    h.set_env("XINGCHEN_MAX_IN_FLIGHT", "2");

    let (transformer, loader) = h.start_pipeline();
    h.backfill().await;
    h.wait_for_bills(total / 4, SETTLE_TIMEOUT).await;
    h.nats.stop();
    let at_stop = h.bill_count();
    // Restarted only once both workers saw the connection go, so each has to reconnect.
    eventually(
        "both workers to log the lost connection",
        SETTLE_TIMEOUT,
        || {
            let noticed = [transformer, loader]
                .iter()
                .all(|id| h.log(*id).contains("NATS connection lost"));
            async move { noticed.then_some(()) }
        },
    )
    .await;
    h.nats.restart();
    assert!(
        at_stop < total,
        "the run ended before the outage ({at_stop} of {total})"
    );

    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;
    assert_eq!(h.bills().len() as u64, total, "exactly one bill per order");
    h.assert_bills_match(&orders);
    let ledger = h.ledger_entries().await;
    let bills = h.bills();
    assert_eq!(ledger.len() as u64, total, "one ledger entry per order");
    for entry in ledger.values() {
        assert_eq!(
            Some(entry.bill_id.as_str()),
            bills[&entry.billno]["id"].as_str(),
            "the ledger of {} names the bill 星辰 holds",
            entry.billno
        );
    }
    h.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redriven_lookup_failures_load_once_goods_exist_and_one_failing_again_keeps_its_history() {
    let mut h = Harness::start(23, 200, FROM, TO).await;
    let shipped = h.shipped_orders();
    let (back, gone) = two_goods_of_separate_orders(&shipped);
    let state = h.xingchen.state();
    let material = state
        .materials()
        .into_iter()
        .find(|m| m.number == back)
        .expect("the material to add back");
    assert!(state.remove_material(&back) && state.remove_material(&gone));
    let with = |goods: &str| -> HashSet<String> {
        shipped
            .iter()
            .filter(|o| goods_numbers(o).contains(goods))
            .map(stockout_no)
            .collect()
    };
    let (healed, failing) = (with(&back), with(&gone));
    let affected = healed.len() + failing.len();
    h.set_env("BRIDGE_HEARTBEAT_INTERVAL", "1s");

    h.start_pipeline();
    h.backfill().await;
    let loadable = (shipped.len() - affected) as u64;
    h.wait_until_settled(loadable, affected as u64, SETTLE_TIMEOUT)
        .await;
    let status = bridge_status(&h).await;
    assert_eq!(
        status["dead_letters"]["by_stage"]["transform"]["lookup_not_found"], affected,
        "{}",
        status["dead_letters"]
    );
    assert_status_agrees(&h, &status, 2).await;

    // The goods come back, the cache learns it, and a redrive loads every order that can be.
    h.xingchen.state().upsert_material(material);
    bridge(&h, &["masterdata", "sync", "--json"])
        .await
        .ok_json();
    let args = ["dlq", "redrive", "--reason", "lookup_not_found", "--json"];
    let report = bridge(&h, &args).await.ok_json();
    assert_eq!(
        report["redriven"].as_array().map(Vec::len),
        Some(affected),
        "{report}"
    );
    let bills = loadable + healed.len() as u64;
    h.wait_until_settled(bills, failing.len() as u64, SETTLE_TIMEOUT)
        .await;
    let loaded: Vec<Order> = shipped
        .iter()
        .filter(|o| !failing.contains(&stockout_no(o)))
        .cloned()
        .collect();
    h.assert_bills_match(&loaded);

    // What still fails is a dead letter again, with both failures in its history: the first
    // dead letter's, then its own.
    let listed = bridge(&h, &["dlq", "list", "--json"]).await.ok_json();
    let listed = listed.as_array().expect("a list of dead letters");
    let named: HashSet<String> = listed
        .iter()
        .map(|l| l["stockout_no"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        named, failing,
        "the dead letters left are the orders whose goods are gone"
    );
    for letter in listed {
        let seq = letter["seq"].to_string();
        let detail = bridge(&h, &["dlq", "show", &seq, "--json"]).await.ok_json();
        assert_eq!(detail["redrive_count"], 1, "dead letter {seq}");
        let history: Vec<String> = detail["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|attempt| attempt["error"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(history.len(), 2, "dead letter {seq}: {detail}");
        for error in &history {
            assert!(
                error.contains(&gone),
                "a failure of {seq} names {gone:?}: {error}"
            );
        }
    }
    assert_status_agrees(&h, &bridge_status(&h).await, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_modify_exactly_the_bills_a_scheme_or_master_data_change_touches_and_no_more() {
    let mut h = Harness::start(24, 200, FROM, TO).await;
    let orders = h.shipped_orders();
    let total = orders.len() as u64;
    let raw_stream = h.names().raw_orders_stream();
    let from = whole_second(Utc::now()) - chrono::Duration::seconds(1);
    h.start_pipeline();
    h.backfill().await;
    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;
    let to = whole_second(Utc::now());
    // Copies a replay stores must fall after `to`, so that every replay selects the backfill only.
    eventually(
        "the second after the backfill's to pass",
        SETTLE_TIMEOUT,
        || async { (Utc::now() >= to + chrono::Duration::seconds(1)).then_some(()) },
    )
    .await;
    let (from, to) = (rfc3339(from), rfc3339(to));
    let replay = ["replay", "--from", &from, "--to", &to, "--json"];
    let raw_messages = h.stream_messages(&raw_stream).await;
    let saves = h.saves();
    assert_eq!(saves as u64, total);

    // A dry run selects everything and re-feeds and posts nothing.
    let dry = [&replay[..], &["--dry-run"]].concat();
    let report = bridge(&h, &dry).await.ok_json();
    assert_eq!(report["selected"], total, "{}", report["selected"]);
    assert_eq!(report["replayed"], 0);
    assert_eq!(
        h.stream_messages(&raw_stream).await,
        raw_messages,
        "a dry run re-feeds nothing"
    );
    assert!(
        h.drained().await,
        "a dry run gives the transformer nothing to do"
    );
    assert_eq!(h.saves(), saves, "a dry run posts nothing");

    // With nothing changed, a replay posts nothing.
    let before = h.bills();
    replay_and_settle(&h, &replay, total, saves).await;
    assert_eq!(h.stream_messages(&raw_stream).await, raw_messages + total);
    assert_eq!(
        h.bills(),
        before,
        "a replay with no change leaves every bill as it was"
    );

    // A new cess in the scheme modifies every bill in place.
    let scheme = scheme_with_cess_9();
    h.stop_workers().await;
    h.set_env("BRIDGE_SCHEME", scheme.display().to_string());
    h.start_pipeline();
    replay_and_settle(&h, &replay, total, saves + total as usize).await;
    let after = h.bills();
    assert_eq!(after.len(), before.len(), "no new bills");
    for (billno, bill) in &after {
        assert_eq!(bill["id"], before[billno]["id"], "{billno} keeps its id");
        for line in lines(bill) {
            assert_eq!(decimal(&line["cess"]), Decimal::from(9), "{billno}: {line}");
        }
    }

    // A new base unit, synchronised, modifies exactly the bills holding that material.
    let (material, unit_id) = material_with_a_second_unit(&h);
    let holding: HashSet<String> = after
        .iter()
        .filter(|(_, bill)| lines(bill).any(|l| l["materialid_id"] == material.id.as_str()))
        .map(|(billno, _)| billno.clone())
        .collect();
    assert!(
        holding.len() >= 2,
        "{} bills hold {}",
        holding.len(),
        material.number
    );
    h.xingchen.state().upsert_material(SimMaterial {
        base_unit_id: unit_id.clone(),
        ..material.clone()
    });
    bridge(&h, &["masterdata", "sync", "--json"])
        .await
        .ok_json();
    let saves = h.saves() + holding.len();
    replay_and_settle(&h, &replay, total, saves).await;
    let last = h.bills();
    for (billno, bill) in &last {
        if !holding.contains(billno) {
            assert_eq!(*bill, after[billno], "{billno} does not hold the material");
            continue;
        }
        assert_eq!(bill["id"], after[billno]["id"], "{billno} keeps its id");
        for line in lines(bill).filter(|l| l["materialid_id"] == material.id.as_str()) {
            assert_eq!(line["unit_id"], unit_id.as_str(), "{billno}: {line}");
        }
    }
    h.stop_workers().await;
    let _ = std::fs::remove_file(&scheme);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_loaders_sharing_the_request_budget_stay_within_xingchens_rate_limit_together() {
    // Just over a minute of saves at the rate: the gateway's sliding minute fills up and rolls.
    const REQUESTS_PER_MINUTE: u32 = 600;
    const BILLS: usize = 640;
    let mut h = Harness::start(25, BILLS, FROM, TO).await;
    let orders = top_up_to_shipped(&h, BILLS);
    // Set before the sync creates the consumers: the deployed ack wait and a small window, since
    // a bill waits for the budget in a loader, and one held past the ack wait would go to another
    // loader and spend the budget twice.
    h.set_env("BRIDGE_ACK_WAIT", "30s");
    h.set_env("BRIDGE_IN_FLIGHT", "4");
    h.set_env("BRIDGE_PULL_BATCH", "4");
    // Cached first, so the transformer's lookups spend none of the budget.
    bridge(&h, &["masterdata", "sync", "--json"])
        .await
        .ok_json();
    h.xingchen.state().clear_log();
    h.xingchen.state().update_knobs(|knobs| {
        knobs.requests_per_minute = Some(REQUESTS_PER_MINUTE);
    });
    h.set_env(
        "XINGCHEN_REQUESTS_PER_MINUTE",
        REQUESTS_PER_MINUTE.to_string(),
    );

    h.start_worker("transformer");
    for _ in 0..3 {
        h.start_worker("loader");
    }
    h.backfill().await;
    h.wait_until_settled(BILLS as u64, 0, Duration::from_secs(150))
        .await;
    h.assert_bills_match(&orders);

    let calls: Vec<_> = h
        .xingchen
        .state()
        .log()
        .into_iter()
        .filter(|entry| entry.endpoint.starts_with("/jdy/"))
        .collect();
    let saves = calls
        .iter()
        .filter(|c| c.endpoint == xingchen::SAVE_PATH && c.status != 429)
        .count();
    assert_eq!(
        saves, BILLS,
        "each bill posted once, and nothing else spent the budget"
    );
    let first_ms = calls
        .iter()
        .map(|c| c.started_ms)
        .min()
        .expect("business calls");
    let last_ms = calls
        .iter()
        .map(|c| c.started_ms)
        .max()
        .expect("business calls");
    assert!(
        last_ms - first_ms >= 60_000,
        "the run lasted {} ms, less than the gateway's minute: it proves little",
        last_ms - first_ms
    );
    let late_refusals: Vec<i64> = calls
        .iter()
        .filter(|c| c.status == 429 && c.started_ms - first_ms > 5_000)
        .map(|c| c.started_ms - first_ms)
        .collect();
    assert!(
        late_refusals.is_empty(),
        "星辰 answered 429 {} times after the first seconds, at ms {:?}",
        late_refusals.len(),
        &late_refusals[..late_refusals.len().min(10)]
    );
    let admitted: Vec<i64> = calls
        .iter()
        .filter(|c| c.status != 429)
        .map(|c| c.started_ms)
        .collect();
    let busiest = busiest_minute(&admitted);
    assert!(
        busiest <= REQUESTS_PER_MINUTE as usize,
        "{busiest} calls in one minute, above {REQUESTS_PER_MINUTE}"
    );
    h.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_no_gap_after_a_clean_run_and_names_each_order_whose_entry_or_bill_is_gone()
{
    let mut h = Harness::start(26, 200, FROM, TO).await;
    let orders = h.shipped_orders();
    let total = orders.len() as u64;
    h.start_pipeline();
    h.backfill().await;
    h.wait_until_settled(total, 0, SETTLE_TIMEOUT).await;

    let window = ["reconcile", "--from", FROM, "--to", TO, "--json"];
    let checked = [&window[..], &["--check-target"]].concat();
    for args in [&window[..], &checked[..]] {
        let report = bridge(&h, args).await.ok_json();
        assert_eq!(report["orders"], total, "{args:?}");
        for list in FINDINGS {
            assert_eq!(report[list], Value::Array(Vec::new()), "{args:?}: {list}");
        }
    }

    // Three orders lose their ledger entry, two others their bill in 星辰.
    let jetstream = async_nats::jetstream::new(h.nats.connect().await);
    let ledger = jetstream
        .get_key_value(h.names().ledger_bucket())
        .await
        .expect("the ledger bucket");
    let mut unrecorded = BTreeSet::new();
    for order in orders.iter().step_by(50).take(3) {
        let key = pipeline::key::encode(&order["stockout_id"].to_string());
        ledger.delete(&key).await.expect("delete a ledger entry");
        unrecorded.insert(stockout_no(order));
    }
    let mut unbilled = BTreeSet::new();
    for order in orders.iter().skip(25).step_by(50).take(2) {
        assert!(h.xingchen.state().delete_bill(&stockout_no(order)));
        unbilled.insert(stockout_no(order));
    }

    let ran = bridge(&h, &checked).await;
    assert!(
        !ran.status.success(),
        "reconcile exits non-zero with gaps: {}",
        ran.stdout
    );
    let report = ran.json();
    assert_eq!(named_in(&report["missing_in_ledger"]), unrecorded);
    assert_eq!(named_in(&report["missing_in_target"]), unbilled);
    for list in ["outdated", "bills_without_order", "without_identity"] {
        assert_eq!(report[list], Value::Array(Vec::new()), "{list}");
    }
    let ran = bridge(&h, &window).await;
    assert!(
        !ran.status.success(),
        "without 星辰, the ledger's gaps still count"
    );
    assert_eq!(named_in(&ran.json()["missing_in_ledger"]), unrecorded);
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

/// What one `bridge` command printed and how it ended.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Its stdout as JSON, panicking with everything it said when that is not JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "bridge printed no JSON ({err}), exit {}:\n{}\n{}",
                self.status, self.stdout, self.stderr
            )
        })
    }

    /// Asserts that it exited 0 and returns its JSON.
    fn ok_json(&self) -> Value {
        assert!(
            self.status.success(),
            "bridge exited with {}:\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.json()
    }
}

/// Runs `bridge args…` in the workers' environment to its end.
async fn bridge(h: &Harness, args: &[&str]) -> Ran {
    let mut command = Command::new(binary("bridge"));
    command.args(args);
    for (key, value) in h.env() {
        command.env(key, value);
    }
    // Off the runtime: the simulators the command talks to run on it.
    let run = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(COMMAND_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("bridge {args:?} did not end within {COMMAND_TIMEOUT:?}"))
        .expect("the command's thread")
        .expect("start bridge");
    Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `bridge status --json`, which must succeed.
async fn bridge_status(h: &Harness) -> Value {
    bridge(h, &["status", "--json"]).await.ok_json()
}

/// Messages acked by each worker, by pid, from the heartbeats `bridge status` reads.
async fn acked_by_pid(h: &Harness) -> HashMap<u32, u64> {
    let status = bridge_status(h).await;
    workers(&status)
        .filter_map(|worker| {
            let pid = worker["pid"].as_u64()?;
            let acked = worker["processed"]["acked"].as_u64()?;
            Some((u32::try_from(pid).ok()?, acked))
        })
        .collect()
}

fn workers(status: &Value) -> impl Iterator<Item = &Value> {
    status["workers"].as_array().into_iter().flatten()
}

/// Asserts that a `bridge status --json` report agrees with what the test reads itself: the
/// streams' messages, the dead letters by stage and kind, the ledger and the alive workers.
async fn assert_status_agrees(h: &Harness, status: &Value, alive: usize) {
    let names = h.names();
    let streams: BTreeMap<&str, u64> = status["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default(),
                s["messages"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for stream in [
        names.raw_orders_stream(),
        names.bills_stream(),
        names.dlq_stream(),
    ] {
        assert_eq!(
            streams.get(stream.as_str()).copied(),
            Some(h.stream_messages(&stream).await),
            "messages of {stream}"
        );
    }

    let mut by_stage: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for letter in h.dead_letters().await {
        let kinds = by_stage.entry(letter.stage.to_string()).or_default();
        *kinds
            .entry(letter.reason_kind.as_str().to_owned())
            .or_default() += 1;
    }
    let reported: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(status["dead_letters"]["by_stage"].clone())
            .expect("dead letters by stage");
    assert_eq!(reported, by_stage, "dead letters by stage and kind");
    let letters: u64 = by_stage.values().flat_map(BTreeMap::values).sum();
    assert_eq!(status["dead_letters"]["total"], letters);

    assert_eq!(
        status["ledger"]["entries"],
        h.ledger_len().await,
        "ledger entries"
    );
    let alive_now = workers(status).filter(|w| w["alive"] == true).count();
    assert_eq!(alive_now, alive, "alive workers: {}", status["workers"]);
}

/// Two goods numbers, each sold in a few orders, and never in the same order.
fn two_goods_of_separate_orders(orders: &[Order]) -> (String, String) {
    let mut orders_with: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for order in orders {
        for goods_no in goods_numbers(order) {
            orders_with
                .entry(goods_no)
                .or_default()
                .insert(stockout_no(order));
        }
    }
    let few: Vec<(&String, &HashSet<String>)> = orders_with
        .iter()
        .filter(|(_, sold_in)| (2..=orders.len() / 10).contains(&sold_in.len()))
        .collect();
    for (i, (first, first_orders)) in few.iter().enumerate() {
        for (second, second_orders) in &few[i + 1..] {
            if first_orders.is_disjoint(second_orders) {
                return ((*first).clone(), (*second).clone());
            }
        }
    }
    panic!("no two goods sold in a few separate orders");
}

fn goods_numbers(order: &Order) -> HashSet<String> {
    order["details_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|line| line["goods_no"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `bridge replay` (`args`), asserts it re-fed `count` messages, and waits until the run
/// settles with 星辰 having received `saves` saves in all.
async fn replay_and_settle(h: &Harness, args: &[&str], count: u64, saves: usize) {
    let report = bridge(h, args).await.ok_json();
    assert_eq!(
        report["replayed"], count,
        "replayed: {}",
        report["selected"]
    );
    let bills = h.bill_count();
    let what = format!("{saves} saves in all after the replay");
    eventually(&what, SETTLE_TIMEOUT, || async {
        (h.saves() >= saves && h.drained().await).then_some(())
    })
    .await;
    h.wait_until_settled(bills, 0, SETTLE_TIMEOUT).await;
    assert_eq!(h.saves(), saves, "saves after the replay");
}

/// A copy of the deployed scheme whose cess is 9 instead of 13, in a temporary file.
fn scheme_with_cess_9() -> PathBuf {
    let deployed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/schemes/wdt-stockout-to-xingchen-v1.toml");
    let text = std::fs::read_to_string(&deployed).expect("read the deployed scheme");
    let cess_13 = r#""material_entity.cess" = "13""#;
    assert!(text.contains(cess_13), "the deployed scheme sets cess 13");
    let path = std::env::temp_dir().join(format!("e2e-scheme-cess-9-{}.toml", std::process::id()));
    let changed = text.replace(cess_13, r#""material_entity.cess" = "9""#);
    std::fs::write(&path, changed).expect("write the changed scheme");
    path
}

/// A material sold in several bills with a unit besides its base unit, and that unit's id.
fn material_with_a_second_unit(h: &Harness) -> (SimMaterial, String) {
    let bills = h.bills();
    let mut sold_in: HashMap<String, usize> = HashMap::new();
    for bill in bills.values() {
        let ids: HashSet<String> = lines(bill)
            .filter_map(|l| l["materialid_id"].as_str().map(str::to_owned))
            .collect();
        for id in ids {
            *sold_in.entry(id).or_default() += 1;
        }
    }
    let mut candidates: Vec<SimMaterial> = h
        .xingchen
        .state()
        .materials()
        .into_iter()
        .filter(|m| m.unit_ids.len() >= 2)
        .filter(|m| (2..=bills.len() / 10).contains(&sold_in.get(&m.id).copied().unwrap_or(0)))
        .collect();
    candidates.sort_by(|a, b| a.number.cmp(&b.number));
    let material = candidates
        .into_iter()
        .next()
        .expect("a material with two units in a few bills");
    let unit = material
        .unit_ids
        .iter()
        .find(|u| **u != material.base_unit_id)
        .expect("a second unit")
        .clone();
    (material, unit)
}

fn lines(bill: &Value) -> impl Iterator<Item = &Value> {
    bill["material_entity"].as_array().into_iter().flatten()
}

fn decimal(value: &Value) -> Decimal {
    match value {
        Value::String(text) => text.parse().unwrap_or_else(|_| panic!("a decimal: {text}")),
        other => other
            .to_string()
            .parse()
            .unwrap_or_else(|_| panic!("a decimal: {other}")),
    }
}

fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).expect("zero nanoseconds is valid")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The most calls that started within any 60 s, given their start times in ms.
fn busiest_minute(started_ms: &[i64]) -> usize {
    let mut sorted = started_ms.to_vec();
    sorted.sort_unstable();
    let mut first = 0;
    let mut busiest = 0;
    for (last, at) in sorted.iter().enumerate() {
        while at - sorted[first] >= 60_000 {
            first += 1;
        }
        busiest = busiest.max(last + 1 - first);
    }
    busiest
}

/// The lists of a reconcile report, each empty when nothing is off.
const FINDINGS: [&str; 5] = [
    "missing_in_ledger",
    "missing_in_target",
    "outdated",
    "bills_without_order",
    "without_identity",
];

/// The order numbers a list of a reconcile report names.
fn named_in(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list of orders: {list}"))
        .iter()
        .map(|order| order["stockout_no"].as_str().unwrap_or_default().to_owned())
        .collect()
}
