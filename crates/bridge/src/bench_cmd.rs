//! `bridge bench`: runs the benchmark of the `bench` crate with the worker binaries found next
//! to this executable, shows a progress line while it runs, prints the table of figures and,
//! with `--json PATH`, writes every figure there. What is measured and how is the `bench`
//! crate's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bench::{Binaries, Plan};
use indicatif::{ProgressBar, ProgressStyle};

/// Orders of each pipeline run unless `--orders` says otherwise.
const DEFAULT_ORDERS: usize = 20_000;

/// `bridge bench [--orders N] [--quick] [--json PATH]`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Orders of each pipeline run [default: 20000, or 600 with --quick].
    #[arg(long)]
    orders: Option<usize>,

    /// The same figures from small runs and short durations (under two minutes), as CI runs it.
    #[arg(long)]
    quick: bool,

    /// Also write every figure to this file as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// Runs the benchmark and reports it.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let binaries = Binaries::beside_current_exe()?;
    let plan = if args.quick {
        Plan::quick(args.orders)
    } else {
        Plan::full(args.orders.unwrap_or(DEFAULT_ORDERS))
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .context("the progress template is valid")?,
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = |phase: &str| bar.set_message(phase.to_owned());
    let result = bench::run(&binaries, &plan, &progress).await;
    bar.finish_and_clear();
    let report = result?;

    print!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, report.to_json() + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
