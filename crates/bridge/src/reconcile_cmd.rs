//! `bridge reconcile --from … --to … [--check-target]`: compare a WDT window with the ledger
//! and, on request, with 金蝶云星辰, and name every order that is off.
//!
//! WDT is read as the extractor reads it: the scheme (`BRIDGE_SCHEME`, else the built-in one)
//! says which clock the window applies to and which filters go with it. The comparison is
//! [`ops::reconcile`]'s. The command prints the exact order numbers and exits non-zero when
//! anything is off, so it can run from cron.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use ops::args::CommonArgs;
use ops::reconcile::{ReconcileReport, ReconcileRequest};
use scheme::Scheme;
use wdt::{WdtClient, WdtConfig, WdtTime, WindowReader, parse_cli_time};
use xingchen::{Client, XingchenConfig};

/// Flags of `bridge reconcile`.
// 星辰's credentials are needed only with --check-target, so they are not required here, and
// `run` checks they are there when asked for.
#[derive(Args)]
#[command(
    mut_arg("xingchen_client_id", |arg| arg.required(false).default_value("")),
    mut_arg("xingchen_client_secret", |arg| arg.required(false).default_value("")),
    mut_arg("xingchen_outer_instance_id", |arg| arg.required(false).default_value(""))
)]
pub struct ReconcileArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// First second of the window: Beijing "YYYY-MM-DD HH:MM:SS" or RFC 3339.
    #[arg(long, value_parser = parse_cli_time)]
    from: WdtTime,

    /// Last second of the window, included.
    #[arg(long, value_parser = parse_cli_time)]
    to: WdtTime,

    /// Also look every order's bill up in 星辰 by number (needs the XINGCHEN_* settings).
    #[arg(long)]
    check_target: bool,

    /// The scheme file whose `[source]` says how WDT is read; without it, the built-in scheme.
    #[arg(long, env = "BRIDGE_SCHEME")]
    scheme: Option<PathBuf>,

    #[command(flatten)]
    wdt: WdtConfig,

    /// 星辰's settings, used only with --check-target.
    #[command(flatten)]
    xingchen: XingchenConfig,
}

/// Runs `bridge reconcile`.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    crate::status_cmd::init_logging();
    let scheme = match &args.scheme {
        Some(path) => {
            Scheme::load(path).with_context(|| format!("loading the scheme {}", path.display()))?
        }
        None => Scheme::builtin(),
    };
    let query = extractor::source::query(scheme.source(), args.wdt.page_size)?;
    let mut wdt = args.wdt.clone();
    wdt.page_size = query.page_size;
    let reader = WindowReader::new(WdtClient::new(wdt).context("configuring the WDT client")?);
    let target = match args.check_target {
        false => None,
        true => Some(target_client(&args.xingchen)?),
    };

    let ops = args.common.connect().await?;
    let request = ReconcileRequest {
        from: args.from,
        to: args.to,
        filter: query.filter,
    };
    let report = ops
        .reconcile(&reader, &request, target.as_ref())
        .await
        .context("reconciling")?;
    print!("{}", args.common.render(&report, ReconcileReport::to_text));
    if !report.is_clean() {
        bail!("{} findings between WDT and the ledger", report.gaps());
    }
    Ok(())
}

/// The 星辰 client for --check-target, refusing when its credentials were not given.
fn target_client(config: &XingchenConfig) -> anyhow::Result<Client> {
    let missing: Vec<&str> = [
        ("XINGCHEN_CLIENT_ID", config.client_id.is_empty()),
        (
            "XINGCHEN_CLIENT_SECRET",
            config.client_secret.expose().is_empty(),
        ),
        (
            "XINGCHEN_OUTER_INSTANCE_ID",
            config.outer_instance_id.is_empty(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, empty)| empty.then_some(name))
    .collect();
    if !missing.is_empty() {
        bail!(
            "--check-target needs the 星辰 settings: {} not set",
            missing.join(", ")
        );
    }
    Client::new(config.clone()).context("configuring the 星辰 client")
}
