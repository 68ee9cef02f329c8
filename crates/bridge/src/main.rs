//! `bridge`, the operator's command line: look at what each remote system holds, try the scheme on
//! real orders, and (in later commands) operate the pipeline.
//!
//! Each command group lives in its own module; this file only parses the command line, sets up
//! logging and dispatches.

mod bench_cmd;
mod demo_cmd;
mod masterdata_cmd;
mod probe_cmd;
mod scheme_cmd;
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
    /// Measure throughput, goodput, latency and memory against a private nats-server.
    Bench(bench_cmd::BenchArgs),
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
    }
}
