//! `extractor`: parses the command line, sets up telemetry and the shutdown signal, and hands
//! over to the library. `extractor run` syncs until SIGTERM; `extractor backfill --from … --to …`
//! reads one range. Exit code 0 on success and on a clean stop, 1 with the cause otherwise.

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};

/// Reads 旺店通 stock-out orders and publishes each one raw to JetStream.
#[derive(Parser)]
#[command(name = "extractor", version)]
struct Cli {
    #[command(subcommand)]
    command: extractor::Command,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::init("extractor", &cli.command.settings().telemetry) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("extractor: set up telemetry: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = format!("{err:#}"), "Extractor failed");
            ExitCode::FAILURE
        }
    };
    if let Err(err) = telemetry.shutdown().await {
        eprintln!("extractor: {err}");
    }
    code
}

async fn run(command: extractor::Command) -> anyhow::Result<()> {
    let shutdown = pipeline::shutdown::install()?;
    let summary = extractor::run(command, shutdown).await?;
    info!(
        orders_read = summary.orders_read,
        stored = summary.stored,
        duplicates = summary.duplicates,
        "Extractor stopped"
    );
    Ok(())
}
