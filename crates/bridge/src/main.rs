//! `bridge`, the operator's command line: look at what each remote system holds, try the scheme on
//! real orders, and (in later commands) operate the pipeline.
//!
//! Each command group lives in its own module; this file only parses the command line, sets up
//! logging and dispatches.

mod bench_cmd;
mod demo_cmd;
mod dlq_cmd;
mod masterdata_cmd;
mod probe_cmd;
mod reconcile_cmd;
mod replay_cmd;
mod scheme_cmd;
mod status_cmd;
mod trace_cmd;
mod wdt_cmd;
mod xingchen_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Operate the 旺店通 → 金蝶云星辰 bridge"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Look at what 旺店通 holds.
    Wdt(wdt_cmd::WdtArgs),
    /// Check a mapping scheme, or try it on raw orders without posting.
    #[command(subcommand)]
    Scheme(scheme_cmd::SchemeCommand),
    /// Show what 金蝶云星辰 holds for a customer, material, store or bill number.
    Xingchen(xingchen_cmd::XingchenCmd),
    /// Refresh the transformer's master-data cache from 金蝶云星辰.
    #[command(subcommand)]
    Masterdata(masterdata_cmd::MasterdataCommand),
    /// Run the whole pipeline locally against the simulators, with no Docker and no credentials.
    Demo(demo_cmd::DemoArgs),
    /// Exit 0 when a URL answers HTTP 200: the containers' health check.
    Probe(probe_cmd::ProbeArgs),
    /// Measure throughput, goodput, latency and memory against a private nats-server.
    Bench(bench_cmd::BenchArgs),
    /// Show streams, consumers, dead letters, the cursor, the ledger and the live workers.
    Status(Box<status_cmd::StatusArgs>),
    /// Feed stored raw orders (or bills) into their stage again.
    Replay(Box<replay_cmd::ReplayArgs>),
    /// List, show, redrive or purge dead letters.
    #[command(subcommand)]
    Dlq(dlq_cmd::DlqCommand),
    /// Compare a WDT window with the ledger (and 星辰), naming every order that is off.
    Reconcile(Box<reconcile_cmd::ReconcileArgs>),
    /// Print the trace ids an order left in the streams, with Jaeger links.
    Trace(Box<trace_cmd::TraceArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Wdt(args) => wdt_cmd::run(args).await,
        Command::Scheme(command) => scheme_cmd::run(command).await,
        Command::Xingchen(cmd) => xingchen_cmd::run(cmd).await,
        Command::Masterdata(command) => masterdata_cmd::run(command).await,
        Command::Demo(args) => demo_cmd::run(args).await,
        Command::Probe(args) => probe_cmd::run(args).await,
        Command::Bench(args) => bench_cmd::run(args).await,
        Command::Status(args) => status_cmd::run(*args).await,
        Command::Replay(args) => replay_cmd::run(*args).await,
        Command::Dlq(command) => dlq_cmd::run(command).await,
        Command::Reconcile(args) => reconcile_cmd::run(*args).await,
        Command::Trace(args) => trace_cmd::run(*args).await,
    }
}
