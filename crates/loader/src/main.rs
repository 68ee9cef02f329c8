//! The `loader` binary: parse the flags, set up telemetry and the shutdown signal, and run the
//! loader until SIGTERM. Everything else is the library's ([`loader::run`]).

use std::process::ExitCode;

use clap::Parser;
use loader::{LoaderConfig, SERVICE_NAME};
use tracing::{error, info};

/// Posts bill payloads from NATS JetStream to 金蝶云星辰 as sales outbound bills, once per order
/// version; runs until SIGTERM.
#[derive(Parser)]
#[command(name = "loader", version)]
struct Cli {
    #[command(flatten)]
    config: LoaderConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = cli.config.validate() {
        eprintln!("loader: {error:#}");
        return ExitCode::from(2);
    }
    let telemetry = match telemetry::init(SERVICE_NAME, &cli.config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("loader: set up telemetry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match pipeline::shutdown::install() {
        Ok(token) => token,
        Err(error) => {
            error!(error = %error, "Shutdown signal could not be installed");
            return ExitCode::FAILURE;
        }
    };

    let result = loader::run(cli.config, shutdown).await;
    let code = match result {
        Ok(report) => {
            info!(?report, "Loader stopped");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            error!(error = format!("{failure:#}"), "Loader failed");
            ExitCode::FAILURE
        }
    };
    if let Err(error) = telemetry.shutdown().await {
        eprintln!("loader: flush telemetry: {error}");
    }
    code
}
