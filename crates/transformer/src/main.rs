//! `transformer`: turns raw orders into bill payloads until SIGTERM.
//!
//! This binary only parses the flags (each with its environment fallback), checks them, sets up
//! telemetry, installs the shutdown signal and calls [`transformer::run`]; it exits 0 after a
//! clean shutdown, 2 on unusable flags and 1 when the worker could not run.

use std::process::ExitCode;

use clap::Parser;
use transformer::TransformerConfig;

#[derive(Parser)]
#[command(
    name = "transformer",
    version,
    about = "Turn raw 旺店通 orders into 星辰 bill payloads"
)]
struct Cli {
    #[command(flatten)]
    config: TransformerConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = cli.config.validate() {
        eprintln!("transformer: {error}");
        return ExitCode::from(2);
    }
    let telemetry = match telemetry::init("transformer", &cli.config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("transformer: {error}");
            return ExitCode::from(2);
        }
    };
    let shutdown = match pipeline::shutdown::install() {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "Shutdown signal could not be installed");
            return ExitCode::FAILURE;
        }
    };

    let result = transformer::run(cli.config, shutdown).await;
    let code = match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "Transformer failed");
            ExitCode::FAILURE
        }
    };
    if let Err(error) = telemetry.shutdown().await {
        eprintln!("transformer: {error}");
    }
    code
}
