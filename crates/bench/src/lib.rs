//! `bridge bench`: how fast the bridge moves orders on this machine, and what bounds it.
//!
//! One [`run`] measures, each on a fresh private `nats-server` and fresh simulators with zero
//! added latency: the one-replica pipeline (throughput and each worker's resident memory), the
//! JetStream ceiling of the same topology with no work in it ([`ceiling`]), the pipeline with
//! two replicas of each worker, the goodput of one and of three loaders against 星辰's rate
//! limit, the publish-to-recorded latency at half the one-replica rate, the extractor's peak
//! memory over a small and a large window, and the one-replica pipeline again with the server
//! flushing before every acknowledgement. The measurements are [`phases`]'s, the worlds they run
//! in [`rig`]'s, and the figures with their arithmetic [`report`]'s; drawing the progress line
//! and writing files is left to the `bridge` command, which hands [`run`] a progress callback.

pub mod ceiling;
pub mod phases;
pub mod report;
pub mod rig;

use std::time::{Duration, Instant};

pub use report::{Latency, Report, Rss, Settings};
pub use rig::Binaries;

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Orders of each pipeline run.
    pub orders: usize,
    /// Messages of the ceiling run.
    pub ceiling_messages: usize,
    /// The 星辰 rate limit R of the goodput runs, requests per minute.
    pub rate_limit_per_minute: u32,
    /// What the goodput runs leave out at their start (the loaders starting, their first burst).
    pub goodput_warmup: Duration,
    /// How long the goodput runs are measured after the warm-up.
    pub goodput_measured: Duration,
    /// How long the paced latency run feeds orders.
    pub latency_input: Duration,
    /// The window sizes of the extractor memory figure.
    pub extractor_windows: [usize; 2],
    /// Whether this is the reduced `--quick` plan.
    pub quick: bool,
}

impl Plan {
    /// The full benchmark with `orders` orders per pipeline run (20,000 by default).
    pub fn full(orders: usize) -> Plan {
        Plan {
            orders,
            ceiling_messages: orders,
            rate_limit_per_minute: 600,
            goodput_warmup: Duration::from_secs(10),
            goodput_measured: Duration::from_secs(60),
            latency_input: Duration::from_secs(30),
            extractor_windows: [10_000, 100_000],
            quick: false,
        }
    }

    /// The same figures from small runs, for CI: well under two minutes in a debug build.
    pub fn quick(orders: Option<usize>) -> Plan {
        Plan {
            orders: orders.unwrap_or(600),
            ceiling_messages: 2_000,
            rate_limit_per_minute: 240,
            goodput_warmup: Duration::from_secs(5),
            goodput_measured: Duration::from_secs(8),
            latency_input: Duration::from_secs(4),
            extractor_windows: [500, 5_000],
            quick: true,
        }
    }

    /// Orders a goodput run needs so that the loaders never run dry: what the limit lets
    /// through over the whole run, the first minute's burst of a per-process limiter, and a
    /// margin.
    pub fn goodput_orders(&self) -> usize {
        let run_s = (self.goodput_warmup + self.goodput_measured).as_secs_f64();
        let per_minute = f64::from(self.rate_limit_per_minute);
        (per_minute * run_s / 60.0 + per_minute * 1.2 + 100.0) as usize
    }
}

/// Runs every phase of `plan` with the workers in `binaries`, calling `progress` with a short
/// description as each phase starts.
pub async fn run(
    binaries: &Binaries,
    plan: &Plan,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    rig::check_nats_server()?;
    let started = Instant::now();
    let mut report = Report::default();

    progress(&format!("pipeline, 1 replica each, {} orders", plan.orders));
    let one = phases::pipeline(binaries, plan.orders, 1, "").await?;
    report.pipeline_orders_per_s = one.orders_per_s;
    report.rss_mib = one.rss.clone();
    report.cpu_s = one.cpu_s.clone();

    progress(&format!("ceiling, {} messages", plan.ceiling_messages));
    report.ceiling_msgs_per_s = ceiling::measure(
        plan.ceiling_messages,
        one.raw_payload_bytes,
        one.bill_payload_bytes,
    )
    .await?;

    progress(&format!(
        "pipeline, 2 replicas each, {} orders",
        plan.orders
    ));
    report.pipeline2_orders_per_s = phases::pipeline(binaries, plan.orders, 2, "")
        .await?
        .orders_per_s;

    progress("pipeline with sync_interval: always");
    let synced = phases::pipeline(binaries, plan.orders, 1, "sync_interval: always").await?;
    report.sync_always_orders_per_s = synced.orders_per_s;

    let rate = one.orders_per_s / 2.0;
    let latency_orders = ((rate * plan.latency_input.as_secs_f64()) as usize).max(50);
    progress(&format!("latency at {rate:.0} orders/s"));
    report.latency_ms = phases::latency(binaries, latency_orders, rate).await?;

    for (loaders, share, rejections) in [
        (
            1,
            &mut report.goodput_share_1,
            &mut report.rejections_after_warmup_1,
        ),
        (
            3,
            &mut report.goodput_share_3,
            &mut report.rejections_after_warmup_3,
        ),
    ] {
        progress(&format!(
            "goodput at R={}/min, {loaders} loader(s)",
            plan.rate_limit_per_minute
        ));
        let measured = phases::goodput(
            binaries,
            plan.goodput_orders(),
            loaders,
            plan.rate_limit_per_minute,
            plan.goodput_warmup,
            plan.goodput_measured,
        )
        .await?;
        *share = measured.share;
        *rejections = measured.rejections;
    }

    let [small, large] = plan.extractor_windows;
    progress(&format!("extractor memory, {small} orders in one window"));
    report.extractor_peak_mib_10k = phases::extractor_peak(binaries, small).await?;
    progress(&format!("extractor memory, {large} orders in one window"));
    report.extractor_peak_mib_100k = phases::extractor_peak(binaries, large).await?;

    report.compute_ratios();
    report.settings = Settings {
        quick: plan.quick,
        orders: plan.orders,
        ceiling_messages: plan.ceiling_messages,
        rate_limit_per_minute: plan.rate_limit_per_minute,
        goodput_measured_s: plan.goodput_measured.as_secs_f64(),
        latency_input_per_s: rate,
        latency_samples: latency_orders,
        extractor_window_orders: plan.extractor_windows,
        payload_bytes: [one.raw_payload_bytes, one.bill_payload_bytes],
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodput_runs_never_run_out_of_bills() {
        for plan in [Plan::full(20_000), Plan::quick(None)] {
            let run_s = (plan.goodput_warmup + plan.goodput_measured).as_secs_f64();
            let let_through = f64::from(plan.rate_limit_per_minute) * (1.0 + run_s / 60.0);
            assert!(plan.goodput_orders() as f64 > let_through);
        }
    }

    #[test]
    fn quick_keeps_every_figure_smaller() {
        let (full, quick) = (Plan::full(20_000), Plan::quick(None));
        assert!(quick.orders < full.orders);
        assert!(quick.goodput_measured < full.goodput_measured);
        assert!(quick.extractor_windows[1] == 10 * quick.extractor_windows[0]);
        assert!(full.extractor_windows == [10_000, 100_000]);
    }
}
