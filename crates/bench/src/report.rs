//! The figures one benchmark run produces, and the arithmetic behind them: percentiles, rates,
//! ratios and shares, the JSON document `--json` writes, and the table printed on the terminal.
//!
//! Everything here is pure, so that it is unit-tested; measuring is left to [`crate::phases`]
//! and [`crate::ceiling`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Resident memory of one worker, in MiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rss {
    /// The largest resident set the kernel saw (`VmHWM`).
    pub peak: f64,
    /// The median resident set (`VmRSS`) over the second half of the worker's run.
    pub steady: f64,
}

/// Publish-to-recorded latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Latency {
    /// The percentiles of `samples_ms`; zeros for no samples.
    pub fn of(samples_ms: &mut [f64]) -> Latency {
        samples_ms.sort_by(f64::total_cmp);
        Latency {
            p50: percentile(samples_ms, 50.0),
            p90: percentile(samples_ms, 90.0),
            p99: percentile(samples_ms, 99.0),
        }
    }
}

/// What was run, beside the figures, so that a reader can tell a quick run from a full one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Settings {
    /// `--quick` was given.
    pub quick: bool,
    /// Orders of each pipeline run.
    pub orders: usize,
    /// Messages of the ceiling run.
    pub ceiling_messages: usize,
    /// The rate limit R of the goodput runs, requests per minute.
    pub rate_limit_per_minute: u32,
    /// How long each goodput run was measured after its warm-up, in seconds.
    pub goodput_measured_s: f64,
    /// The input rate of the latency run, orders per second.
    pub latency_input_per_s: f64,
    /// Bills the latency percentiles are taken over.
    pub latency_samples: usize,
    /// The two window sizes of the extractor memory figure, in orders.
    pub extractor_window_orders: [usize; 2],
    /// Mean payload of a raw order and of a bill, in bytes.
    pub payload_bytes: [usize; 2],
    /// Wall time of the whole run, in seconds.
    pub elapsed_s: f64,
}

/// Every figure of one run; the field names are the JSON contract.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Raw JetStream throughput of the topology with no work in it, messages per second.
    pub ceiling_msgs_per_s: f64,
    /// Pipeline throughput with one transformer and one loader, orders per second.
    pub pipeline_orders_per_s: f64,
    /// `pipeline_orders_per_s` over `ceiling_msgs_per_s`.
    pub pipeline_ratio: f64,
    /// Pipeline throughput with two transformers and two loaders, orders per second.
    pub pipeline2_orders_per_s: f64,
    /// `pipeline2_orders_per_s` over `ceiling_msgs_per_s`.
    pub pipeline2_ratio: f64,
    /// Bills per minute over R with one loader.
    pub goodput_share_1: f64,
    /// Bills per minute over R with three loaders.
    pub goodput_share_3: f64,
    /// 429 answers after the warm-up with one loader.
    pub rejections_after_warmup_1: u64,
    /// 429 answers after the warm-up with three loaders.
    pub rejections_after_warmup_3: u64,
    /// Publish-to-recorded latency at half the one-replica pipeline rate.
    pub latency_ms: Latency,
    /// Resident memory per worker (`extractor`, `transformer`, `loader`) in the one-replica run.
    pub rss_mib: BTreeMap<String, Rss>,
    /// CPU seconds per process in the one-replica run (workers, `nats-server`, the simulators).
    pub cpu_s: BTreeMap<String, f64>,
    /// The extractor's peak with the smaller window (10,000 orders in a full run).
    pub extractor_peak_mib_10k: f64,
    /// The extractor's peak with the larger window (100,000 orders in a full run).
    pub extractor_peak_mib_100k: f64,
    /// One-replica pipeline throughput with `sync_interval: always`, orders per second.
    pub sync_always_orders_per_s: f64,
    /// `sync_always_orders_per_s` over `pipeline_orders_per_s`.
    pub sync_always_ratio: f64,
    /// What was run.
    pub settings: Settings,
}

impl Report {
    /// Fills the ratios from the measured rates.
    pub fn compute_ratios(&mut self) {
        self.pipeline_ratio = ratio(self.pipeline_orders_per_s, self.ceiling_msgs_per_s);
        self.pipeline2_ratio = ratio(self.pipeline2_orders_per_s, self.ceiling_msgs_per_s);
        self.sync_always_ratio = ratio(self.sync_always_orders_per_s, self.pipeline_orders_per_s);
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and maps with string keys always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The table printed on the terminal.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            (
                "ceiling".into(),
                format!("{:.0} msg/s", self.ceiling_msgs_per_s),
            ),
            (
                "pipeline, 1 replica each".into(),
                format!(
                    "{:.0} orders/s ({:.2} × ceiling)",
                    self.pipeline_orders_per_s, self.pipeline_ratio
                ),
            ),
            (
                "pipeline, 2 replicas each".into(),
                format!(
                    "{:.0} orders/s ({:.2} × ceiling)",
                    self.pipeline2_orders_per_s, self.pipeline2_ratio
                ),
            ),
        ];
        let r = self.settings.rate_limit_per_minute;
        for (loaders, share, rejected) in [
            (1, self.goodput_share_1, self.rejections_after_warmup_1),
            (3, self.goodput_share_3, self.rejections_after_warmup_3),
        ] {
            rows.push((
                format!("goodput at R={r}/min, {loaders} loader(s)"),
                format!(
                    "{:.1} % of R, {rejected} × 429 after warm-up",
                    share * 100.0
                ),
            ));
        }
        let l = self.latency_ms;
        rows.push((
            format!(
                "latency at {:.0} orders/s",
                self.settings.latency_input_per_s
            ),
            format!(
                "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms",
                l.p50, l.p90, l.p99
            ),
        ));
        for (worker, rss) in &self.rss_mib {
            rows.push((
                format!("{worker} resident"),
                format!("peak {:.1} MiB, steady {:.1} MiB", rss.peak, rss.steady),
            ));
        }
        if !self.cpu_s.is_empty() {
            let cpu: Vec<String> = self
                .cpu_s
                .iter()
                .map(|(name, s)| format!("{name} {s:.1}"))
                .collect();
            rows.push(("CPU s, 1 replica each".into(), cpu.join(", ")));
        }
        let [small, large] = self.settings.extractor_window_orders;
        rows.push((
            "extractor peak, one window".into(),
            format!(
                "{:.1} MiB at {small}, {:.1} MiB at {large} orders",
                self.extractor_peak_mib_10k, self.extractor_peak_mib_100k
            ),
        ));
        rows.push((
            "sync_interval: always".into(),
            format!(
                "{:.0} orders/s ({:.2} × default)",
                self.sync_always_orders_per_s, self.sync_always_ratio
            ),
        ));
        render(&rows)
    }
}

fn render(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        let pad = width - key.chars().count();
        let _ = writeln!(out, "{key}{}  {value}", " ".repeat(pad));
    }
    out
}

/// `part / whole`, or 0 when `whole` is not positive.
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

/// `count` events over `elapsed_s` seconds, per second; 0 for no time.
pub fn per_second(count: usize, elapsed_s: f64) -> f64 {
    ratio(count as f64, elapsed_s)
}

/// The `p`th percentile (0 to 100) of `sorted`, by the nearest-rank method; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `samples`, 0 when empty.
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// The bench's share of R: `bills` recorded in `elapsed_s` seconds, per minute, over
/// `per_minute`.
pub fn goodput_share(bills: u64, elapsed_s: f64, per_minute: u32) -> f64 {
    ratio(bills as f64 * 60.0, elapsed_s * f64::from(per_minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 90.0), 90.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn latency_sorts_its_samples_first() {
        let mut samples = vec![30.0, 10.0, 20.0, 40.0];
        let latency = Latency::of(&mut samples);
        assert_eq!(latency.p50, 20.0);
        assert_eq!(latency.p99, 40.0);
    }

    #[test]
    fn ratios_guard_against_a_missing_denominator() {
        assert_eq!(ratio(1.0, 4.0), 0.25);
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(per_second(500, 2.0), 250.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn goodput_share_is_bills_per_minute_over_the_limit() {
        // 590 bills in 60 s against 600 a minute.
        let share = goodput_share(590, 60.0, 600);
        assert!((share - 590.0 / 600.0).abs() < 1e-9);
        assert_eq!(goodput_share(10, 0.0, 600), 0.0);
    }

    #[test]
    fn ratios_follow_the_rates() {
        let mut report = Report {
            ceiling_msgs_per_s: 1000.0,
            pipeline_orders_per_s: 500.0,
            pipeline2_orders_per_s: 800.0,
            sync_always_orders_per_s: 250.0,
            ..Report::default()
        };
        report.compute_ratios();
        assert_eq!(report.pipeline_ratio, 0.5);
        assert_eq!(report.pipeline2_ratio, 0.8);
        assert_eq!(report.sync_always_ratio, 0.5);
    }

    #[test]
    fn json_holds_every_contract_key() {
        let mut report = Report::default();
        for worker in ["extractor", "transformer", "loader"] {
            report.rss_mib.insert(worker.into(), Rss::default());
        }
        let json: serde_json::Value =
            serde_json::from_str(&report.to_json()).expect("the report is JSON");
        for key in CONTRACT_KEYS {
            assert!(json.get(key).is_some(), "{key} is missing");
        }
        for key in ["p50", "p90", "p99"] {
            assert!(json["latency_ms"][key].is_number(), "latency_ms.{key}");
        }
        for worker in ["extractor", "transformer", "loader"] {
            for key in ["peak", "steady"] {
                assert!(json["rss_mib"][worker][key].is_number(), "{worker}.{key}");
            }
        }
    }

    #[test]
    fn the_table_names_every_figure() {
        let mut report = Report::default();
        report.rss_mib.insert("loader".into(), Rss::default());
        let table = report.table();
        for word in [
            "ceiling",
            "2 replicas",
            "3 loader",
            "p99",
            "loader resident",
            "always",
        ] {
            assert!(table.contains(word), "{word} is not in\n{table}");
        }
    }

    /// The top-level keys `bridge bench --json` promises.
    const CONTRACT_KEYS: [&str; 13] = [
        "ceiling_msgs_per_s",
        "pipeline_orders_per_s",
        "pipeline_ratio",
        "pipeline2_orders_per_s",
        "goodput_share_1",
        "goodput_share_3",
        "rejections_after_warmup_1",
        "rejections_after_warmup_3",
        "latency_ms",
        "rss_mib",
        "extractor_peak_mib_10k",
        "extractor_peak_mib_100k",
        "sync_always_ratio",
    ];
}
