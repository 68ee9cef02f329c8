//! `bridge status`: streams, consumers, dead letters, the extractor's cursor, the ledger's size
//! and the live workers, as tables or, with `--json`, as one JSON document.
//!
//! The report is [`ops::status`]'s; this module parses the flags, connects and prints. It also
//! sets up logging to stderr for every operator command, so that warnings never mix with a
//! report on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ops::args::CommonArgs;
use ops::status::{Status, StatusOptions};

/// Flags of `bridge status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// The extractor's cursor in the cursor bucket.
    #[arg(long = "cursor", env = "EXTRACTOR_CURSOR",
          default_value = extractor::config::DEFAULT_CURSOR_NAME)]
    cursor: String,

    /// The workers' heartbeat interval; a heartbeat older than three of them counts as dead.
    #[arg(long = "heartbeat-interval", env = "BRIDGE_HEARTBEAT_INTERVAL",
          default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
}

/// Runs `bridge status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    init_logging();
    let ops = args.common.connect().await?;
    let options = StatusOptions {
        cursor_name: args.cursor,
        heartbeat_interval: args.heartbeat_interval,
    };
    let status = ops.status(&options).await.context("taking the status")?;
    print!("{}", args.common.render(&status, Status::to_text));
    Ok(())
}

/// Logs to stderr at `warn` unless `RUST_LOG` says otherwise; reports go to stdout.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}
