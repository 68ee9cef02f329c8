//! `bridge trace <stockout_no>`: the trace ids an order left in the raw-order and bill streams
//! and in the dead letters, each with its Jaeger link.
//!
//! The search is [`ops::trace`]'s; this module parses the flags, connects and prints, and exits
//! non-zero when no message of the order is found.

use anyhow::{Context, bail};
use clap::Args;
use ops::args::CommonArgs;
use ops::trace::{DEFAULT_JAEGER_URL, TraceReport};

/// Flags of `bridge trace`.
#[derive(Args)]
pub struct TraceArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// The order's number (`stockout_no`).
    stockout_no: String,

    /// Base URL of the Jaeger UI the links point to.
    #[arg(long = "jaeger-url", env = "JAEGER_UI_URL", default_value = DEFAULT_JAEGER_URL)]
    jaeger_url: String,
}

/// Runs `bridge trace`.
pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    crate::status_cmd::init_logging();
    let ops = args.common.connect().await?;
    let report = ops
        .trace(&args.stockout_no, &args.jaeger_url)
        .await
        .context("searching the streams")?;
    print!("{}", args.common.render(&report, TraceReport::to_text));
    if report.messages.is_empty() {
        bail!("no message of order {} found", args.stockout_no);
    }
    Ok(())
}
