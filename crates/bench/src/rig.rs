//! One benchmark world: a private `nats-server` with the pipeline's topology, the 旺店通 and 星辰
//! simulators in this process with zero added latency, and the worker binaries as child
//! processes configured to reach them.
//!
//! A phase builds a [`Rig`], starts workers with [`Rig::spawn`], waits for the pipeline to have
//! recorded every bill ([`Rig::wait_recorded`]) and reads what happened from the outside: the
//! bills stream (each bill's `published_at`, the stored time of its raw order), the ledger
//! (`loaded_at`, when the bill was recorded) and the simulators' state. Resident memory is read
//! from `/proc` by [`MemoryProbe`]. What each phase measures is left to [`crate::phases`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, Context, consumer};
use chrono::{DateTime, FixedOffset, Utc};
use futures::StreamExt;
use pipeline::ledger::LedgerEntry;
use pipeline::message::header;
use pipeline::{Names, TopologyConfig};
use simulator::orders::{OrderGenConfig, format_time, parse_time};
use simulator::wdt::{self, WdtSimConfig, WdtSimulator};
use simulator::world::World;
use simulator::xingchen::{self, SimulatorConfig, XingchenSimulator};
use test_support::NatsServer;
use test_support::process::Process;
use tokio_util::sync::CancellationToken;

/// The seed of the world and the orders; fixed so that runs compare.
const SEED: u64 = 9;
/// First second of the range the generated orders are consigned in (Beijing time).
pub const RANGE_FROM: &str = "2024-05-01 00:00:00";
/// Last second of that range: one 30-day window.
pub const RANGE_TO: &str = "2024-05-30 23:59:59";
/// How often resident memory is sampled.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// How often the pipeline's progress is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The worker binaries, found next to the running `bridge`.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The directory of the running executable, if it holds every worker binary.
    pub fn beside_current_exe() -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe().context("find the running executable")?;
        let dir = exe
            .parent()
            .context("the executable has a directory")?
            .to_owned();
        for name in ["extractor", "transformer", "loader"] {
            if !dir.join(name).is_file() {
                bail!(
                    "{name} not found in {}: build the workers next to bridge first \
                     (`cargo build --release --bins`)",
                    dir.display()
                );
            }
        }
        Ok(Binaries { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Fails with installation advice when no `nats-server` can be found.
pub fn check_nats_server() -> anyhow::Result<()> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        if Path::new(&path).is_file() {
            return Ok(());
        }
        bail!("NATS_SERVER_BIN names {path:?}, which is not a file");
    }
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("nats-server").is_file())
    });
    if !on_path {
        bail!(
            "nats-server not found on PATH and NATS_SERVER_BIN is not set; install the pinned \
             version with `scripts/install-nats-server`"
        );
    }
    Ok(())
}

/// What a rig starts with.
#[derive(Clone, Debug)]
pub struct RigConfig {
    /// Orders the 旺店通 simulator holds, all shipped, consigned over [`RANGE_FROM`]..[`RANGE_TO`].
    pub orders: usize,
    /// Lines for the server's `jetstream { }` block, e.g. `sync_interval: always`.
    pub jetstream_config: String,
}

/// A server, both simulators and the workers of one phase.
pub struct Rig {
    /// The private nats-server.
    pub nats: NatsServer,
    /// The 旺店通 simulator.
    pub wdt: WdtSimulator,
    /// The 星辰 simulator over the same world.
    pub xingchen: XingchenSimulator,
    /// JetStream on the server, for reading what happened.
    pub js: Context,
    /// The topology's names.
    pub names: Names,
    binaries: Binaries,
    env: Vec<(&'static str, String)>,
    workers: Vec<Process>,
}

impl Rig {
    /// Starts the server, creates the pipeline's topology with its default settings, and starts
    /// both simulators.
    pub async fn start(binaries: &Binaries, config: &RigConfig) -> anyhow::Result<Rig> {
        let nats = NatsServer::start_with_jetstream_config(&config.jetstream_config);
        let world = World::generate(SEED);
        let (from, to) = range();
        let orders = OrderGenConfig {
            unshipped_fraction: 0.0,
            ..OrderGenConfig::new(SEED, config.orders, from, to)
        };
        let wdt = WdtSimulator::start(WdtSimConfig {
            world: Some(world.clone()),
            orders: Some(orders),
            ..WdtSimConfig::new(SEED)
        })
        .await
        .context("start the 旺店通 simulator")?;
        let xingchen = XingchenSimulator::start(&world, SimulatorConfig::default())
            .await
            .context("start the 星辰 simulator")?;
        let js = jetstream::new(nats.connect().await);
        let topology = TopologyConfig::default();
        pipeline::ensure_topology(&js, &topology)
            .await
            .context("create the pipeline's topology")?;
        let env = base_env(&nats, &wdt, &xingchen);
        Ok(Rig {
            nats,
            wdt,
            xingchen,
            js,
            names: topology.names()?,
            binaries: binaries.clone(),
            env,
            workers: Vec::new(),
        })
    }

    /// Sets (or overrides) one environment variable of every worker started from now on.
    pub fn set_env(&mut self, key: &'static str, value: impl Into<String>) {
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
    }

    /// Starts a worker binary with `args`; returns its index and pid.
    pub fn spawn(&mut self, binary: &str, args: &[String]) -> (usize, u32) {
        let process = Process::spawn_path(&self.binaries.path(binary), binary, args, &self.env);
        let pid = process.pid();
        self.workers.push(process);
        (self.workers.len() - 1, pid)
    }

    /// Starts `extractor backfill` over the whole generated range.
    pub fn spawn_backfill(&mut self) -> (usize, u32) {
        let (from, to) = range();
        let args = [
            "backfill".to_owned(),
            "--from".to_owned(),
            format_time(&from),
            "--to".to_owned(),
            format_time(&to),
        ];
        self.spawn("extractor", &args)
    }

    /// Waits until worker `index` exits; fails with its log when it does not succeed.
    pub async fn wait_exit(&mut self, index: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let process = &mut self.workers[index];
        while process.is_running() {
            if Instant::now() > deadline {
                bail!(
                    "worker did not exit within {timeout:?}; its log:\n{}",
                    tail(process)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let status = process.wait_exit(Duration::ZERO);
        if !status.success() {
            bail!("worker exited with {status}; its log:\n{}", tail(process));
        }
        Ok(())
    }

    /// Sends SIGTERM to worker `index`.
    pub fn terminate(&self, index: usize) {
        self.workers[index].terminate();
    }

    /// Mean payload of a bill in the bills stream, in bytes.
    pub async fn mean_bill_payload_bytes(&self) -> anyhow::Result<usize> {
        let bills = read_stream(&self.js, &self.names.bills_stream()).await?;
        let total: usize = bills.iter().map(|bill| bill.payload.len()).sum();
        Ok(total / bills.len().max(1))
    }

    /// Sends SIGTERM to every running worker and waits for all of them.
    pub async fn stop_workers(&mut self) -> anyhow::Result<()> {
        for process in &mut self.workers {
            if process.is_running() {
                process.terminate();
            }
        }
        for index in 0..self.workers.len() {
            if self.workers[index].is_running() {
                self.wait_exit(index, Duration::from_secs(30)).await?;
            }
        }
        Ok(())
    }

    /// The tail of every worker's log, for a failure message.
    pub fn logs(&self) -> String {
        self.workers
            .iter()
            .map(tail)
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }

    /// How many messages a stream holds; 0 while it does not exist.
    pub async fn stream_messages(&self, stream: &str) -> u64 {
        match self.js.get_stream(stream).await {
            Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        }
    }

    /// Waits until the ledger and the dead letters account for `orders` orders, or `timeout`.
    pub async fn wait_recorded(&self, orders: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let ledger = format!("KV_{}", self.names.ledger_bucket());
        loop {
            let recorded = self.stream_messages(&ledger).await;
            let dead = self.stream_messages(&self.names.dlq_stream()).await;
            if recorded + dead >= orders {
                if dead > 0 {
                    bail!("{dead} orders were dead-lettered; logs:\n{}", self.logs());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "only {recorded} of {orders} bills recorded within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Each order's publish-to-recorded span: its bill's `published_at` and its ledger entry's
    /// `loaded_at`, by `stockout_id`.
    pub async fn timings(&self) -> anyhow::Result<Vec<Timing>> {
        let published = self.published_times().await?;
        let recorded = self.recorded_times().await?;
        let mut timings: Vec<Timing> = recorded
            .into_iter()
            .filter_map(|(id, recorded)| {
                let published = *published.get(&id)?;
                Some(Timing {
                    published,
                    recorded,
                })
            })
            .collect();
        timings.sort_by_key(|t| t.published);
        Ok(timings)
    }

    async fn published_times(&self) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        let mut found = HashMap::new();
        for message in read_stream(&self.js, &self.names.bills_stream()).await? {
            let Some(headers) = &message.headers else {
                continue;
            };
            let id = headers.get(header::STOCKOUT_ID).map(|v| v.to_string());
            let at = headers
                .get(header::PUBLISHED_AT)
                .and_then(|v| DateTime::parse_from_rfc3339(v.as_str()).ok());
            if let (Some(id), Some(at)) = (id, at) {
                found.insert(id, at.with_timezone(&Utc));
            }
        }
        Ok(found)
    }

    async fn recorded_times(&self) -> anyhow::Result<HashMap<String, DateTime<Utc>>> {
        let stream = format!("KV_{}", self.names.ledger_bucket());
        let prefix = format!("$KV.{}.", self.names.ledger_bucket());
        let mut found = HashMap::new();
        for message in read_stream(&self.js, &stream).await? {
            let Some(key) = message.subject.strip_prefix(&prefix) else {
                continue;
            };
            let id = pipeline::key::decode(key).unwrap_or_else(|_| key.to_owned());
            if let Ok(entry) = serde_json::from_slice::<LedgerEntry>(&message.payload) {
                found.insert(id, entry.loaded_at);
            }
        }
        Ok(found)
    }
}

/// When one order's raw message was stored and when its bill was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The raw message's stored time, as the bill's `published_at` carries it.
    pub published: DateTime<Utc>,
    /// The ledger's `loaded_at`.
    pub recorded: DateTime<Utc>,
}

impl Timing {
    /// From publish to recorded, in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        (self.recorded - self.published)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0
    }
}

/// Orders per second from the first publish to the last bill recorded.
pub fn throughput(timings: &[Timing]) -> f64 {
    let first = timings.iter().map(|t| t.published).min();
    let last = timings.iter().map(|t| t.recorded).max();
    let (Some(first), Some(last)) = (first, last) else {
        return 0.0;
    };
    let elapsed_s = (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    crate::report::per_second(timings.len(), elapsed_s)
}

/// Every message a stream holds now, through an ordered consumer.
async fn read_stream(js: &Context, name: &str) -> anyhow::Result<Vec<async_nats::Message>> {
    let mut stream = js.get_stream(name).await?;
    let count = usize::try_from(stream.info().await?.state.messages)?;
    let ordered = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = ordered.messages().await?;
    let mut found = Vec::with_capacity(count);
    while found.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .with_context(|| format!("read {name}: no message for 10 s"))?;
        let Some(message) = next else { break };
        found.push(message?.message);
    }
    Ok(found)
}

/// The generated orders' consign range.
pub fn range() -> (DateTime<FixedOffset>, DateTime<FixedOffset>) {
    // Both are constants of this file in the format `parse_time` reads.
    let from = parse_time(RANGE_FROM).unwrap_or_default();
    let to = parse_time(RANGE_TO).unwrap_or_default();
    (from, to)
}

fn tail(process: &Process) -> String {
    let log = process.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Samples `VmHWM` and `VmRSS` of a set of processes until stopped.
pub struct MemoryProbe {
    samples: Arc<Mutex<HashMap<u32, Samples>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Debug, Default)]
struct Samples {
    peak_kib: u64,
    rss_kib: Vec<u64>,
    cpu_ticks: u64,
}

impl MemoryProbe {
    /// Starts sampling `pids` every [`MEMORY_SAMPLE_INTERVAL`].
    pub fn start(pids: Vec<u32>) -> MemoryProbe {
        let samples: Arc<Mutex<HashMap<u32, Samples>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(pids, Arc::clone(&samples), stop.clone()));
        MemoryProbe {
            samples,
            stop,
            task,
        }
    }

    /// Stops sampling and returns, per pid, the peak and the steady resident set in MiB and the
    /// CPU seconds it had used at the last sample.
    pub async fn finish(self) -> HashMap<u32, (crate::report::Rss, f64)> {
        self.stop.cancel();
        let _ = self.task.await;
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples
            .iter()
            .map(|(pid, s)| (*pid, (s.summary(), ticks_to_s(s.cpu_ticks))))
            .collect()
    }
}

impl Samples {
    fn summary(&self) -> crate::report::Rss {
        let second_half = &self.rss_kib[self.rss_kib.len() / 2..];
        let mib: Vec<f64> = second_half.iter().map(|k| *k as f64 / 1024.0).collect();
        crate::report::Rss {
            peak: self.peak_kib as f64 / 1024.0,
            steady: crate::report::median(&mib),
        }
    }
}

async fn sample(
    pids: Vec<u32>,
    samples: Arc<Mutex<HashMap<u32, Samples>>>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(MEMORY_SAMPLE_INTERVAL);
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        for pid in &pids {
            let Some((peak_kib, rss_kib)) = read_status(*pid) else {
                continue;
            };
            let mut all = samples.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = all.entry(*pid).or_default();
            entry.peak_kib = entry.peak_kib.max(peak_kib);
            entry.rss_kib.push(rss_kib);
            entry.cpu_ticks = cpu_ticks(*pid).unwrap_or(entry.cpu_ticks);
        }
    }
}

/// `VmHWM` and `VmRSS` of a live process, in KiB; `None` once it has exited.
pub fn read_status(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // A zombie has no memory lines; it has exited for our purpose.
    Some((status_kib(&text, "VmHWM:")?, status_kib(&text, "VmRSS:")?))
}

/// User plus system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks to seconds; Linux reports 100 ticks a second (`USER_HZ`) on every platform it
/// supports.
pub fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / 100.0
}

/// The pid of the `nats-server` whose configuration lives in `store_dir`.
pub fn nats_server_pid(store_dir: &Path) -> Option<u32> {
    let needle = store_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// What every worker needs to reach this rig, with call limits far above what the simulators
/// are asked to enforce, so that only the phase under measurement bounds the run.
fn base_env(
    nats: &NatsServer,
    wdt: &WdtSimulator,
    xingchen: &XingchenSimulator,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NATS_URL", nats.url()),
        ("WDT_QIMEN_URL", wdt.url()),
        ("XINGCHEN_API_URL", xingchen.url()),
    ];
    let fixed: [(&'static str, &str); 14] = [
        ("WDT_APP_KEY", wdt::DEFAULT_APP_KEY),
        ("WDT_APP_SECRET", wdt::DEFAULT_APP_SECRET),
        ("WDT_TARGET_APP_KEY", wdt::DEFAULT_TARGET_APP_KEY),
        ("WDT_SID", wdt::DEFAULT_SID),
        ("WDT_CALLS_PER_MINUTE", "600000"),
        ("XINGCHEN_CLIENT_ID", xingchen::defaults::CLIENT_ID),
        ("XINGCHEN_CLIENT_SECRET", xingchen::defaults::CLIENT_SECRET),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            xingchen::defaults::OUTER_INSTANCE_ID,
        ),
        ("XINGCHEN_REQUESTS_PER_MINUTE", "6000000"),
        ("XINGCHEN_RETRY_MIN_DELAY", "100ms"),
        ("XINGCHEN_RETRY_MAX_DELAY", "2s"),
        ("METRICS_LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "warn"),
        ("LOG_FORMAT", "json"),
    ];
    env.extend(fixed.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let status = "Name:\tloader\nVmHWM:\t   23456 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(23_456));
        assert_eq!(status_kib(status, "VmRSS:"), Some(12_345));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_resident_set_and_a_cpu_time() {
        let (peak, rss) = read_status(std::process::id()).expect("our own status");
        assert!(peak >= rss && rss > 0);
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn throughput_runs_from_the_first_publish_to_the_last_record() {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).expect("a valid instant");
        let timings = [
            Timing {
                published: at(0),
                recorded: at(500),
            },
            Timing {
                published: at(100),
                recorded: at(1000),
            },
        ];
        assert_eq!(throughput(&timings), 2.0);
        assert_eq!(timings[0].latency_ms(), 500.0);
        assert_eq!(throughput(&[]), 0.0);
    }

    #[test]
    fn the_range_is_one_window_of_thirty_days() {
        let (from, to) = range();
        assert!(to - from < chrono::Duration::days(30));
        assert!(to > from);
    }
}
