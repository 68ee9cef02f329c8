//! Issue 7's metrics, health and alerting, end to end.
//!
//! One run of `extractor run`, `transformer` and `loader` as processes over fifty recent orders,
//! two of which name goods 星辰 does not know: each worker's `/metrics` must then count exactly
//! that outcome, with label values from the fixed sets only, and each `/readyz` must fail while
//! nats-server is down and recover once it is back. Two more tests hold the alert rules in
//! `deploy/prometheus/alerts.yml` and the Grafana dashboard to the metrics the workers export
//! (and run `promtool check rules` when `promtool` is on PATH). The servers are
//! [`e2e::Harness`]'s; what the metrics mean is the `telemetry` crate's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Duration as Span;
use e2e::Harness;
use serde_json::{Map, Value};
use simulator::orders::{format_time, now_beijing};
use telemetry::metrics::{
    self as m, ApiEndpoint, ApiOutcome, CacheOutcome, Collection, Consumer, DeadLetterReason,
    LoadOutcome, Stage,
};
use test_support::process::{Process, eventually};

const ORDERS: usize = 50;
const DEAD_LETTERED: usize = 2;
const UNKNOWN_GOODS: &str = "NO-SUCH-GOODS-7";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a gauge or a readiness check may take to follow: a few heartbeats of a second.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_a_run_did_and_readiness_follows_the_nats_connection() {
    let now = now_beijing();
    let from = format_time(&(now - Span::days(2)));
    let to = format_time(&(now - Span::hours(1)));
    let mut h = Harness::start(72, ORDERS, &from, &to).await;
    let orders = h.exactly_shipped(ORDERS);
    h.give_unknown_goods(&orders, DEAD_LETTERED, UNKNOWN_GOODS);
    h.set_env("BRIDGE_HEARTBEAT_INTERVAL", "1s");

    let transformer = h.start_worker("transformer");
    let loader = h.start_worker("loader");
    let run = ["run", "--start", from.as_str(), "--interval", "1s"];
    let mut extractor = Process::spawn("extractor", run, h.env());
    let loaded = (ORDERS - DEAD_LETTERED) as u64;
    h.wait_until_settled(loaded, DEAD_LETTERED as u64, SETTLE_TIMEOUT)
        .await;

    let workers = [
        Worker::new("extractor", &extractor.log()),
        Worker::new("transformer", &h.log(transformer)),
        Worker::new("loader", &h.log(loader)),
    ];
    let http = client();
    let [extract, transform, load] = &workers;
    let scraped = [
        extract.scrape_until(&http, extractor_counted_the_run).await,
        transform
            .scrape_until(&http, transformer_counted_the_run)
            .await,
        load.scrape_until(&http, loader_counted_the_run).await,
    ];
    for scrape in &scraped {
        assert_labels_from_fixed_sets(scrape);
    }
    let exported: BTreeSet<String> = scraped.iter().flat_map(Scrape::names).collect();
    for name in rule_metric_names() {
        assert!(
            exported.contains(&name),
            "alerts.yml names {name}, which no worker exported after a run"
        );
    }

    for worker in &workers {
        worker
            .wait_readiness(&http, true, "ready after the run")
            .await;
    }
    h.nats.stop();
    for worker in &workers {
        worker
            .wait_readiness(&http, false, "not ready without nats")
            .await;
    }
    h.nats.restart();
    for worker in &workers {
        worker
            .wait_readiness(&http, true, "ready once nats is back")
            .await;
    }

    extractor.terminate();
    let what = "extractor run to exit after SIGTERM";
    eventually(what, EXIT_TIMEOUT, || {
        let running = extractor.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    assert!(
        extractor.wait_exit(Duration::ZERO).success(),
        "extractor exits 0"
    );
    h.stop_workers().await;
}

#[test]
fn alert_rules_are_valid_and_name_only_metrics_the_workers_export() {
    let rules = alert_rules();
    let exported = exported_metric_names();
    let mut alerts = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap_or_default();
        assert!(!name.is_empty(), "every rule is an alert: {rule}");
        assert!(alerts.insert(name.to_owned()), "{name} is defined twice");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name} says whom it wakes: {rule}"
        );
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty(), "{name} has a summary");
        let expr = rule["expr"].as_str().unwrap_or_default();
        for metric in metric_names(expr) {
            assert!(
                exported.contains(metric.as_str()),
                "{name} uses {metric}, which no worker exports"
            );
        }
    }

    // The alerts issue 7 asks for, each on the metric that shows it.
    let uses = |alert: &str, metric: &str| {
        rules.iter().any(|rule| {
            rule["alert"] == alert
                && metric_names(rule["expr"].as_str().unwrap_or("")).contains(metric)
        })
    };
    assert!(uses("BridgeDeadLettersRising", m::DEAD_LETTERS));
    assert!(uses("BridgeConsumerLagGrowing", m::CONSUMER_PENDING));
    assert!(uses("BridgeExtractorCursorStuck", m::EXTRACTOR_LAG));
    assert!(uses("BridgeXingchenAuthFailing", m::API_CALLS));

    promtool_check_rules();
}

#[test]
fn the_dashboard_charts_every_shared_metric_and_only_exported_ones() {
    let text = std::fs::read_to_string(repo_file("deploy/grafana/bridge-dashboard.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has its queries: {exprs:?}"
    );

    let exported = exported_metric_names();
    let mut charted = BTreeSet::new();
    for expr in &exprs {
        for metric in metric_names(expr) {
            assert!(exported.contains(metric.as_str()), "{metric} in {expr:?}");
            charted.insert(metric);
        }
    }
    for metric in shared_metric_names() {
        assert!(charted.contains(metric), "the dashboard charts {metric}");
    }
}

/// One worker's health server, found in its log.
struct Worker {
    name: &'static str,
    addr: String,
}

impl Worker {
    fn new(name: &'static str, log: &str) -> Worker {
        let addr =
            health_addr(log).unwrap_or_else(|| panic!("{name} logged its health address:\n{log}"));
        Worker { name, addr }
    }

    /// Scrapes `/metrics` until `counted` finds nothing wrong, and returns the scrape; panics
    /// with the last complaint and the scrape after [`FOLLOW_TIMEOUT`].
    async fn scrape_until(
        &self,
        http: &reqwest::Client,
        counted: fn(&Scrape) -> Result<(), String>,
    ) -> Scrape {
        let mut last = (String::new(), String::new());
        let deadline = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
        loop {
            let text = self.get(http, "/metrics").await.map(|(_, body)| body);
            if let Some(text) = text {
                let scrape = Scrape::parse(&text);
                match counted(&scrape) {
                    Ok(()) => return scrape,
                    Err(complaint) => last = (complaint, text),
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}'s /metrics: {}\n{}",
                self.name,
                last.0,
                last.1
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_readiness(&self, http: &reqwest::Client, ready: bool, what: &str) {
        let what = format!("{} {what}", self.name);
        eventually(&what, FOLLOW_TIMEOUT, || async {
            let (status, body) = self.get(http, "/readyz").await?;
            if ready {
                return (status == 200).then_some(());
            }
            // Not ready because of nats, and saying so.
            (status == 503 && body.contains("nats")).then_some(())
        })
        .await;
    }

    async fn get(&self, http: &reqwest::Client, path: &str) -> Option<(u16, String)> {
        let url = format!("http://{}{path}", self.addr);
        let response = http.get(url).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }
}

/// One `/metrics` text: each sample by metric name and labels.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(sample)
            .collect();
        Scrape { samples }
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, have, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// The metric names present, histogram and summary series folded into their metric.
    fn names(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .map(|(name, _, _)| {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| is_distribution(base));
                base.unwrap_or(name).to_owned()
            })
            .collect()
    }

    fn expect(&self, name: &str, labels: &[(&str, &str)], wanted: f64) -> Result<(), String> {
        let found = self.value(name, labels);
        if found == wanted {
            Ok(())
        } else {
            Err(format!("{name}{labels:?} is {found}, not {wanted}"))
        }
    }

    fn expect_some(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), String> {
        self.expect_at_least(name, labels, 1.0)
    }

    fn expect_at_least(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        least: f64,
    ) -> Result<(), String> {
        let found = self.value(name, labels);
        if found >= least {
            Ok(())
        } else {
            Err(format!("{name}{labels:?} is {found}, less than {least}"))
        }
    }
}

/// `name{k="v",…} value` as its parts.
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    Some((name.to_owned(), labels, value))
}

fn extractor_counted_the_run(s: &Scrape) -> Result<(), String> {
    s.expect(m::ORDERS_READ, &[], ORDERS as f64)?;
    s.expect(
        extractor::stats::ORDERS_PUBLISHED,
        &[("result", "stored")],
        ORDERS as f64,
    )?;
    s.expect(extractor::stats::WINDOWS, &[("outcome", "failed")], 0.0)?;
    s.expect_some(extractor::stats::WINDOWS, &[("outcome", "ok")])?;
    let wdt = [
        ("endpoint", ApiEndpoint::WdtStockoutQuery.as_label()),
        ("outcome", "ok"),
    ];
    s.expect_some(m::API_CALLS, &wdt)?;
    let calls = s.value(m::API_CALLS, &wdt);
    s.expect(&format!("{}_count", m::API_CALL_DURATION), &wdt, calls)?;
    // The cursor stands at now minus the 2m lag, give or take an interval and a slow machine.
    let lag = s.value(m::EXTRACTOR_LAG, &[]);
    if !(110.0..=300.0).contains(&lag) {
        return Err(format!("extractor lag {lag}s, expected about 120s"));
    }
    Ok(())
}

fn transformer_counted_the_run(s: &Scrape) -> Result<(), String> {
    s.expect(m::BILLS_PUBLISHED, &[], (ORDERS - DEAD_LETTERED) as f64)?;
    let lookup_not_found = [("stage", "transform"), ("reason", "lookup_not_found")];
    s.expect(m::DEAD_LETTERS, &lookup_not_found, DEAD_LETTERED as f64)?;
    s.expect(m::DEAD_LETTERS, &[], DEAD_LETTERED as f64)?;
    // A customer and a warehouse for every order, each from the cache or from 星辰.
    s.expect_at_least(m::LOOKUPS, &[("collection", "customer")], ORDERS as f64)?;
    s.expect_at_least(m::LOOKUPS, &[("collection", "warehouse")], ORDERS as f64)?;
    s.expect_some(m::LOOKUPS, &[("collection", "material"), ("cache", "miss")])?;
    s.expect_some(m::LOOKUPS, &[("collection", "material"), ("cache", "hit")])?;
    let material = [("endpoint", "material_detail"), ("outcome", "ok")];
    s.expect_some(m::API_CALLS, &material)?;
    let misses = s.value(m::LOOKUPS, &[("cache", "miss")]);
    if s.value(m::API_CALLS, &[("endpoint", "material_detail")]) > misses {
        return Err("more material calls than lookups that missed the cache".to_owned());
    }
    s.expect_some(
        m::API_CALLS,
        &[("endpoint", "push_app_authorize"), ("outcome", "ok")],
    )?;
    let consumer = [("consumer", "transformer")];
    s.expect(m::CONSUMER_PENDING, &consumer, 0.0)?;
    s.expect(m::CONSUMER_ACK_PENDING, &consumer, 0.0)?;
    if s.names().contains(m::CONSUMER_PENDING) {
        Ok(())
    } else {
        Err("the transformer's backlog gauges are not set".to_owned())
    }
}

fn loader_counted_the_run(s: &Scrape) -> Result<(), String> {
    let loaded = (ORDERS - DEAD_LETTERED) as f64;
    s.expect(m::BILLS_LOADED, &[("outcome", "created")], loaded)?;
    s.expect(m::BILLS_LOADED, &[], loaded)?;
    s.expect(m::DEAD_LETTERS, &[], 0.0)?;
    let saves = [("endpoint", "sal_outbound_save"), ("outcome", "ok")];
    s.expect(m::API_CALLS, &saves, loaded)?;
    s.expect(m::API_CALLS, &[("endpoint", "sal_outbound_save")], loaded)?;
    s.expect(&format!("{}_count", m::API_CALL_DURATION), &saves, loaded)?;
    s.expect_some(
        m::API_CALLS,
        &[("endpoint", "push_app_authorize"), ("outcome", "ok")],
    )?;
    let consumer = [("consumer", "loader")];
    s.expect(m::CONSUMER_ACK_PENDING, &consumer, 0.0)?;
    s.expect(m::CONSUMER_PENDING, &consumer, 0.0)?;
    if s.names().contains(m::CONSUMER_PENDING) {
        Ok(())
    } else {
        Err("the loader's backlog gauges are not set".to_owned())
    }
}

/// Every label of a shared metric takes a value of its fixed set.
fn assert_labels_from_fixed_sets(scrape: &Scrape) {
    for (name, labels, _) in &scrape.samples {
        for (label, value) in labels {
            let known = match (label.as_str(), name.as_str()) {
                ("outcome", n) if n == m::BILLS_LOADED => LoadOutcome::from_label(value).is_some(),
                ("outcome", n) if n.starts_with("bridge_api_call") => {
                    ApiOutcome::from_label(value).is_some()
                }
                ("outcome", n) if n == extractor::stats::WINDOWS => {
                    matches!(value.as_str(), "ok" | "failed")
                }
                ("result", _) => matches!(value.as_str(), "stored" | "duplicate"),
                ("endpoint", _) => ApiEndpoint::from_label(value).is_some(),
                ("stage", _) => Stage::from_label(value).is_some(),
                ("reason", _) => DeadLetterReason::from_label(value).is_some(),
                ("collection", _) => Collection::from_label(value).is_some(),
                ("cache", _) => CacheOutcome::from_label(value).is_some(),
                ("consumer", _) => Consumer::from_label(value).is_some(),
                ("le" | "quantile", _) => true,
                _ => false,
            };
            assert!(known, "{name} has {label}={value:?}, outside its fixed set");
        }
    }
}

/// The address a worker's health server logged, from its JSON log lines.
fn health_addr(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Map<String, Value>>(line).ok())
        .filter(|line| {
            let message = line
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            message.contains("/metrics") || message.contains("Health server")
        })
        .find_map(|line| line.get("addr").and_then(Value::as_str).map(str::to_owned))
}

fn client() -> reqwest::Client {
    telemetry::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("build the HTTP client")
}

/// Every metric some worker exports: telemetry's shared ones and the workers' own.
fn exported_metric_names() -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&str> = shared_metric_names().into_iter().collect();
    names.extend([
        extractor::stats::ORDERS_PUBLISHED,
        extractor::stats::WINDOWS,
        loader::stats::LOAD_LATENCY,
    ]);
    names
}

fn shared_metric_names() -> [&'static str; 10] {
    [
        m::ORDERS_READ,
        m::BILLS_PUBLISHED,
        m::BILLS_LOADED,
        m::DEAD_LETTERS,
        m::API_CALLS,
        m::API_CALL_DURATION,
        m::LOOKUPS,
        m::CONSUMER_PENDING,
        m::CONSUMER_ACK_PENDING,
        m::EXTRACTOR_LAG,
    ]
}

fn is_distribution(name: &str) -> bool {
    name == m::API_CALL_DURATION || name == loader::stats::LOAD_LATENCY
}

/// The bridge metrics a PromQL expression names, histogram series folded into their metric.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("bridge_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        let folded = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix))
            .filter(|base| is_distribution(base))
            .map(str::to_owned);
        names.insert(folded.unwrap_or(word));
    }
    names
}

/// Every rule of every group in `alerts.yml`.
fn alert_rules() -> Vec<Value> {
    let text = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml"))
        .expect("read the alert rules");
    let file: Value = serde_yaml_ng::from_str(&text).expect("the alert rules are YAML");
    let groups = file["groups"].as_array().expect("a list of groups");
    assert!(!groups.is_empty());
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn rule_metric_names() -> BTreeSet<String> {
    alert_rules()
        .iter()
        .flat_map(|rule| metric_names(rule["expr"].as_str().unwrap_or_default()))
        .collect()
}

/// `promtool check rules`, when promtool is installed (`.ci/run` installs it where it can).
fn promtool_check_rules() {
    let path = repo_file("deploy/prometheus/alerts.yml");
    let checked = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output();
    match checked {
        Ok(output) => assert!(
            output.status.success(),
            "promtool check rules failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("promtool is not on PATH; the rules were checked by this test only");
        }
        Err(error) => panic!("run promtool: {error}"),
    }
}

fn collect_exprs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => collect_exprs(inner, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, into)),
        _ => {}
    }
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}
