//! The measured phases, each on a fresh [`Rig`] so that none inherits another's stream, cache or
//! ledger: the pipeline run (throughput and resident memory), the goodput run under 星辰's rate
//! limit, the paced latency run and the extractor's memory over one large window. The ceiling
//! is [`crate::ceiling`]'s; putting the figures together is [`crate::run`]'s.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream::consumer::PullConsumer;
use pipeline::names::{LOADER_CONSUMER, TRANSFORMER_CONSUMER};
use simulator::xingchen::SAVE_PATH;

use crate::report::{Latency, Rss};
use crate::rig::{Binaries, MemoryProbe, Rig, RigConfig};

/// How long a worker may take to start pulling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the pipeline may take per thousand orders before the bench gives up.
const TIMEOUT_PER_1000_ORDERS: Duration = Duration::from_secs(60);
/// Orders per WDT page in the latency run: small pages spread the input evenly.
const LATENCY_PAGE_SIZE: u32 = 10;

/// What one pipeline run measured.
#[derive(Clone, Debug, Default)]
pub struct PipelineFigures {
    /// Orders per second from the first publish to the last bill recorded.
    pub orders_per_s: f64,
    /// Resident memory per worker binary (of the first replica).
    pub rss: BTreeMap<String, Rss>,
    /// CPU seconds per process over the run: each worker (first replica), `nats-server`, and
    /// `simulators` (this process, which serves both simulators).
    pub cpu_s: BTreeMap<String, f64>,
    /// Mean payload of a raw order, in bytes.
    pub raw_payload_bytes: usize,
    /// Mean payload of a bill, in bytes.
    pub bill_payload_bytes: usize,
}

/// `extractor backfill` of `orders` orders through `replicas` transformers and loaders.
pub async fn pipeline(
    binaries: &Binaries,
    orders: usize,
    replicas: usize,
    jetstream_config: &str,
) -> anyhow::Result<PipelineFigures> {
    let config = RigConfig {
        orders,
        jetstream_config: jetstream_config.to_owned(),
    };
    let mut rig = Rig::start(binaries, &config).await?;
    let mut pids: Vec<(String, u32)> = Vec::new();
    for _ in 0..replicas {
        pids.push(("transformer".into(), rig.spawn("transformer", &[]).1));
        pids.push(("loader".into(), rig.spawn("loader", &[]).1));
    }
    wait_pulling(&rig, replicas).await?;

    let nats_pid = crate::rig::nats_server_pid(rig.nats.store_dir());
    let cpu_before = cpu_of(nats_pid);
    let (extractor, extractor_pid) = rig.spawn_backfill();
    pids.push(("extractor".into(), extractor_pid));
    let probe = MemoryProbe::start(pids.iter().map(|(_, pid)| *pid).collect());
    let timeout = timeout_for(orders);
    rig.wait_exit(extractor, timeout).await?;
    rig.wait_recorded(orders as u64, timeout).await?;
    let cpu_after = cpu_of(nats_pid);
    let memory = probe.finish().await;
    let timings = rig.timings().await?;
    rig.stop_workers().await?;

    let mut cpu_s = first_of_each(&pids, &memory, |(_, cpu)| *cpu);
    cpu_s.insert("nats-server".into(), cpu_after.0 - cpu_before.0);
    cpu_s.insert("simulators".into(), cpu_after.1 - cpu_before.1);
    if timings.len() < orders {
        bail!(
            "{} of {orders} orders have a bill and a record",
            timings.len()
        );
    }
    let raw_payload_bytes = mean_raw_order_bytes(&rig);
    Ok(PipelineFigures {
        orders_per_s: crate::rig::throughput(&timings),
        rss: first_of_each(&pids, &memory, |(rss, _)| *rss),
        cpu_s,
        raw_payload_bytes,
        bill_payload_bytes: rig.mean_bill_payload_bytes().await?,
    })
}

/// What one goodput run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Goodput {
    /// Bills per minute after the warm-up, over R.
    pub share: f64,
    /// 429 answers after the warm-up.
    pub rejections: u64,
}

/// The bills of `orders` orders, transformed first, loaded by `loaders` loaders sharing one
/// request budget of `per_minute` while the 星辰 simulator refuses requests beyond that in any
/// sliding minute; measured for `measured` after `warmup`.
pub async fn goodput(
    binaries: &Binaries,
    orders: usize,
    loaders: usize,
    per_minute: u32,
    warmup: Duration,
    measured: Duration,
) -> anyhow::Result<Goodput> {
    let config = RigConfig {
        orders,
        jetstream_config: String::new(),
    };
    let mut rig = Rig::start(binaries, &config).await?;

    // The transformer's lookups are 星辰 calls too; they are done before the limit is set, so
    // that the sliding minute counts the loaders' saves alone.
    let (transformer, _) = rig.spawn("transformer", &[]);
    let (extractor, _) = rig.spawn_backfill();
    let timeout = timeout_for(orders);
    rig.wait_exit(extractor, timeout).await?;
    wait_bills(&rig, orders as u64, timeout).await?;
    rig.terminate(transformer);
    rig.wait_exit(transformer, Duration::from_secs(30)).await?;

    rig.xingchen
        .state()
        .update_knobs(|knobs| knobs.requests_per_minute = Some(per_minute));
    // Every loader is told the account set's whole R: they spend it from the budget they share
    // in KV (`pipeline::budget`), not each a share of its own.
    rig.set_env("XINGCHEN_REQUESTS_PER_MINUTE", per_minute.to_string());
    let started = Instant::now();
    let started_ms = chrono::Utc::now().timestamp_millis();
    for _ in 0..loaders {
        rig.spawn("loader", &[]);
    }
    tokio::time::sleep_until((started + warmup).into()).await;
    let before = rig.xingchen.state().stats().bills;
    tokio::time::sleep_until((started + warmup + measured).into()).await;
    let after = rig.xingchen.state().stats().bills;
    let warm_ms = started_ms + i64::try_from(warmup.as_millis())?;
    let rejections = rig
        .xingchen
        .state()
        .log()
        .iter()
        .filter(|entry| entry.status == 429 && entry.started_ms >= warm_ms)
        .filter(|entry| entry.endpoint == SAVE_PATH)
        .count() as u64;
    rig.stop_workers().await?;
    if after >= orders as u64 {
        bail!("the loaders ran out of bills before the measurement ended; give them more orders");
    }
    Ok(Goodput {
        share: crate::report::goodput_share(after - before, measured.as_secs_f64(), per_minute),
        rejections,
    })
}

/// The latency run: `orders` orders read from WDT at `rate` orders per second (small pages,
/// WDT's own call budget spacing them evenly), through one transformer and one loader.
pub async fn latency(binaries: &Binaries, orders: usize, rate: f64) -> anyhow::Result<Latency> {
    let config = RigConfig {
        orders,
        jetstream_config: String::new(),
    };
    let mut rig = Rig::start(binaries, &config).await?;
    let pages_per_minute = (rate * 60.0 / f64::from(LATENCY_PAGE_SIZE)).max(1.0);
    rig.set_env("WDT_PAGE_SIZE", LATENCY_PAGE_SIZE.to_string());
    rig.set_env("WDT_CALLS_PER_MINUTE", format!("{pages_per_minute:.0}"));
    rig.spawn("transformer", &[]);
    rig.spawn("loader", &[]);
    wait_pulling(&rig, 1).await?;

    let (extractor, _) = rig.spawn_backfill();
    let timeout = timeout_for(orders) + Duration::from_secs_f64(orders as f64 / rate.max(1.0));
    rig.wait_exit(extractor, timeout).await?;
    rig.wait_recorded(orders as u64, timeout).await?;
    let timings = rig.timings().await?;
    rig.stop_workers().await?;
    let mut samples: Vec<f64> = timings.iter().map(crate::rig::Timing::latency_ms).collect();
    Ok(Latency::of(&mut samples))
}

/// The extractor's peak resident memory, in MiB, publishing `orders` orders from one window.
pub async fn extractor_peak(binaries: &Binaries, orders: usize) -> anyhow::Result<f64> {
    let config = RigConfig {
        orders,
        jetstream_config: String::new(),
    };
    let mut rig = Rig::start(binaries, &config).await?;
    let (extractor, pid) = rig.spawn_backfill();
    let probe = MemoryProbe::start(vec![pid]);
    rig.wait_exit(extractor, timeout_for(orders)).await?;
    let memory = probe.finish().await;
    let raw = rig.stream_messages(&rig.names.raw_orders_stream()).await;
    if raw < orders as u64 {
        bail!("the extractor published {raw} of {orders} orders");
    }
    Ok(memory.get(&pid).map_or(0.0, |(rss, _)| rss.peak))
}

/// Waits until every consumer has `replicas` pull requests waiting: the workers are up.
async fn wait_pulling(rig: &Rig, replicas: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let raw = rig.names.raw_orders_stream();
    let bills = rig.names.bills_stream();
    loop {
        let transformers = waiting(rig, &raw, TRANSFORMER_CONSUMER).await;
        let loaders = waiting(rig, &bills, LOADER_CONSUMER).await;
        if transformers >= replicas && loaders >= replicas {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the workers did not pull within {READY_TIMEOUT:?}; logs:\n{}",
                rig.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn waiting(rig: &Rig, stream: &str, consumer: &str) -> usize {
    let Ok(stream) = rig.js.get_stream(stream).await else {
        return 0;
    };
    let Ok(mut consumer) = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
        .await
    else {
        return 0;
    };
    let consumer: &mut PullConsumer = &mut consumer;
    consumer.info().await.map_or(0, |info| info.num_waiting)
}

async fn wait_bills(rig: &Rig, bills: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let stream = rig.names.bills_stream();
    while rig.stream_messages(&stream).await < bills {
        if Instant::now() > deadline {
            bail!(
                "the transformer did not publish {bills} bills in time; logs:\n{}",
                rig.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn timeout_for(orders: usize) -> Duration {
    TIMEOUT_PER_1000_ORDERS * u32::try_from(orders / 1000 + 1).unwrap_or(u32::MAX)
}

fn mean_raw_order_bytes(rig: &Rig) -> usize {
    let orders = rig.wdt.state().orders();
    let total: usize = orders
        .iter()
        .map(|order| serde_json::to_vec(order).map_or(0, |json| json.len()))
        .sum();
    total / orders.len().max(1)
}

/// One figure of the first process of each binary.
fn first_of_each<T>(
    pids: &[(String, u32)],
    memory: &HashMap<u32, (Rss, f64)>,
    figure: impl Fn(&(Rss, f64)) -> T,
) -> BTreeMap<String, T> {
    let mut found = BTreeMap::new();
    for (name, pid) in pids {
        if let Some(sampled) = memory.get(pid) {
            found.entry(name.clone()).or_insert_with(|| figure(sampled));
        }
    }
    found
}

/// CPU seconds of `nats-server` and of this process so far.
fn cpu_of(nats_pid: Option<u32>) -> (f64, f64) {
    let seconds = |pid: Option<u32>| {
        pid.and_then(crate::rig::cpu_ticks)
            .map_or(0.0, crate::rig::ticks_to_s)
    };
    (seconds(nats_pid), seconds(Some(std::process::id())))
}
