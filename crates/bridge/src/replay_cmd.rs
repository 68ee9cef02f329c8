//! `bridge replay`: feed stored raw orders into the transformer again (or, with `--stage load`,
//! stored bills into the loader), chosen by store time, sequence or order number.
//!
//! What is replayed, with which headers, and why it is safe is [`ops::replay`]'s; this module
//! parses the flags, connects, runs the replay and prints how many messages it re-fed.

use anyhow::Context;
use clap::{ArgGroup, Args, ValueEnum};
use ops::args::CommonArgs;
use ops::replay::{ReplayReport, ReplayRequest, Selector, SeqRange};
use pipeline::Stage;
use wdt::{WdtTime, parse_cli_time};

/// Flags of `bridge replay`.
#[derive(Args)]
#[command(group(ArgGroup::new("selection").required(true).args(["from", "seq", "stockout_no"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Messages stored from this time on: Beijing "YYYY-MM-DD HH:MM:SS" or RFC 3339.
    #[arg(long, value_parser = parse_cli_time, requires = "to")]
    from: Option<WdtTime>,

    /// Messages stored up to this time, included (a whole second covers that second).
    #[arg(long, value_parser = parse_cli_time, requires = "from")]
    to: Option<WdtTime>,

    /// Messages with these stream sequences, A..B included.
    #[arg(long)]
    seq: Option<SeqRange>,

    /// Messages of this order; repeat for more.
    #[arg(long = "stockout-no")]
    stockout_no: Vec<String>,

    /// The stage fed: transform (raw orders) or load (bills).
    #[arg(long, value_enum, default_value_t = StageArg::Transform)]
    stage: StageArg,

    /// Print what would be replayed and publish nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The stages a replay can feed.
#[derive(Clone, Copy, ValueEnum)]
enum StageArg {
    Transform,
    Load,
}

/// Runs `bridge replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    crate::status_cmd::init_logging();
    let selector = match (args.from, args.to, args.seq) {
        (Some(from), Some(to), _) => Selector::Stored { from, to },
        (_, _, Some(range)) => Selector::Sequences(range),
        _ => Selector::Orders(args.stockout_no.clone()),
    };
    let request = ReplayRequest {
        stage: match args.stage {
            StageArg::Transform => Stage::Transform,
            StageArg::Load => Stage::Load,
        },
        selector,
        dry_run: args.dry_run,
    };
    let ops = args.common.connect().await?;
    let report = ops.replay(&request).await.context("replaying")?;
    print!("{}", args.common.render(&report, ReplayReport::to_text));
    Ok(())
}
