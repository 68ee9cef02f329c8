//! `bridge dlq list|show|redrive|purge`: look at dead letters, send them back to their stage,
//! or remove them.
//!
//! What each does is [`ops::dlq`]'s; this module parses the flags, connects and prints. `redrive`
//! exits non-zero when it skipped a dead letter, `purge` refuses without `--yes`.

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use ops::args::CommonArgs;
use ops::dlq::{DeadLetterDetail, DlqFilter, RedriveReport, RedriveSelection};
use pipeline::Stage;
use pipeline::dead_letter::ReasonKind;

/// The `bridge dlq` commands.
// Boxed: the flattened NATS and topology flags would make every variant as large.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List(Box<ListArgs>),
    /// Show one dead letter: payload, reason, delivery history, trace id.
    Show(Box<ShowArgs>),
    /// Send dead letters back to their stage's input and remove them from the dead letters.
    Redrive(Box<RedriveArgs>),
    /// Remove every dead letter (only with --yes).
    Purge(Box<PurgeArgs>),
}

/// Filters shared by `list` and `redrive`.
#[derive(Args)]
struct FilterArgs {
    /// Only dead letters of this stage: extract, transform or load.
    #[arg(long, value_parser = parse_stage)]
    stage: Option<Stage>,

    /// Only dead letters of this reason kind, e.g. lookup_not_found.
    #[arg(long, value_parser = parse_reason)]
    reason: Option<ReasonKind>,
}

impl FilterArgs {
    fn filter(&self) -> DlqFilter {
        DlqFilter {
            stage: self.stage,
            reason: self.reason,
        }
    }
}

/// Flags of `bridge dlq list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// Flags of `bridge dlq show`.
#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The dead letter's sequence in the dead-letter stream.
    seq: u64,
}

/// Flags of `bridge dlq redrive`.
#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["seqs", "reason", "all"])))]
pub struct RedriveArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The dead letters' sequences.
    seqs: Vec<u64>,
    /// Every dead letter of this reason kind.
    #[arg(long, value_parser = parse_reason)]
    reason: Option<ReasonKind>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
    /// With --reason or --all: only this stage's dead letters.
    #[arg(long, value_parser = parse_stage, conflicts_with = "seqs")]
    stage: Option<Stage>,
}

/// Flags of `bridge dlq purge`.
#[derive(Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Confirms that every dead letter is to be removed.
    #[arg(long)]
    yes: bool,
}

/// Runs one `bridge dlq` command.
pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    crate::status_cmd::init_logging();
    match command {
        DlqCommand::List(args) => list(*args).await,
        DlqCommand::Show(args) => show(*args).await,
        DlqCommand::Redrive(args) => redrive(*args).await,
        DlqCommand::Purge(args) => purge(*args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let ops = args.common.connect().await?;
    let listed = ops
        .dlq_list(&args.filter.filter())
        .await
        .context("listing dead letters")?;
    print!(
        "{}",
        args.common
            .render(&listed, |list| ops::dlq::list_text(list))
    );
    Ok(())
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let ops = args.common.connect().await?;
    let detail = ops.dlq_show(args.seq).await?;
    print!("{}", args.common.render(&detail, DeadLetterDetail::to_text));
    Ok(())
}

async fn redrive(args: RedriveArgs) -> anyhow::Result<()> {
    let selection = if args.seqs.is_empty() {
        RedriveSelection::Matching(DlqFilter {
            stage: args.stage,
            reason: args.reason,
        })
    } else {
        RedriveSelection::Sequences(args.seqs.clone())
    };
    let ops = args.common.connect().await?;
    let report = ops
        .dlq_redrive(&selection)
        .await
        .context("redriving dead letters")?;
    print!("{}", args.common.render(&report, RedriveReport::to_text));
    if !report.skipped.is_empty() {
        bail!("{} dead letters were not redriven", report.skipped.len());
    }
    Ok(())
}

async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    let ops = args.common.connect().await?;
    let report = ops.dlq_purge(args.yes).await?;
    print!(
        "{}",
        args.common.render(&report, |report| format!(
            "{} dead letters purged\n",
            report.purged
        ))
    );
    Ok(())
}

fn parse_stage(text: &str) -> Result<Stage, String> {
    text.parse()
        .map_err(|err: pipeline::names::NameError| err.to_string())
}

fn parse_reason(text: &str) -> Result<ReasonKind, String> {
    text.parse().map_err(|_| {
        let kinds: Vec<&str> = ReasonKind::ALL.iter().map(|kind| kind.as_str()).collect();
        format!(
            "unknown reason kind {text:?}: expected one of {}",
            kinds.join(", ")
        )
    })
}
