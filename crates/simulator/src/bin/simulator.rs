//! `simulator`: serves the simulated remote systems for the demo and manual testing.
//!
//! It parses flags (with `SIMULATOR_*` environment fallbacks), starts each simulator on its own
//! listen address and runs until Ctrl-C. All behaviour lives in the library ([`simulator::wdt`]).

use anyhow::Context;
use chrono::Duration;
use clap::{Args, Parser};
use simulator::orders::{now_beijing, parse_cli_time};
use simulator::wdt::{self, Credentials, Knobs, WdtSimConfig, WdtSimulator, WdtState};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "simulator",
    version,
    about = "Serve the 旺店通 and 金蝶云星辰 simulators"
)]
struct Cli {
    /// The seed of the world, the orders and the injected failures.
    #[arg(long, env = "SIMULATOR_SEED", default_value_t = 1)]
    seed: u64,

    #[command(flatten)]
    wdt: WdtArgs,

    #[command(flatten)]
    xingchen: XingchenArgs,
}

/// The 旺店通 Qimen router simulator.
#[derive(Args)]
struct WdtArgs {
    /// Where the WDT simulator listens.
    #[arg(
        long = "wdt-listen",
        env = "SIMULATOR_WDT_LISTEN",
        default_value = "127.0.0.1:9401"
    )]
    wdt_listen: String,

    /// How many orders to generate at start.
    #[arg(long = "orders", env = "SIMULATOR_WDT_ORDERS", default_value_t = 500)]
    orders: usize,

    /// Earliest generated consign time (Beijing "YYYY-MM-DD HH:MM:SS" or RFC 3339); default 30
    /// days before now.
    #[arg(long = "consign-from", env = "SIMULATOR_WDT_CONSIGN_FROM", value_parser = parse_cli_time)]
    consign_from: Option<chrono::DateTime<chrono::FixedOffset>>,

    /// Latest generated consign time; default now.
    #[arg(long = "consign-to", env = "SIMULATOR_WDT_CONSIGN_TO", value_parser = parse_cli_time)]
    consign_to: Option<chrono::DateTime<chrono::FixedOffset>>,

    /// Added latency of every call, in milliseconds.
    #[arg(
        long = "wdt-latency-ms",
        env = "SIMULATOR_WDT_LATENCY_MS",
        default_value_t = 0
    )]
    latency_ms: u64,

    /// Share of calls answered with the 1012 rate-limit failure, 0 to 1.
    #[arg(
        long = "wdt-rate-limit-fraction",
        env = "SIMULATOR_WDT_RATE_LIMIT_FRACTION",
        default_value_t = 0.0
    )]
    rate_limit_fraction: f64,

    /// Share of calls answered with HTTP 503, 0 to 1.
    #[arg(
        long = "wdt-server-error-fraction",
        env = "SIMULATOR_WDT_SERVER_ERROR_FRACTION",
        default_value_t = 0.0
    )]
    server_error_fraction: f64,

    /// Calls per rolling minute before the 1012 failure; unlimited when absent.
    #[arg(long = "wdt-calls-per-minute", env = "SIMULATOR_WDT_CALLS_PER_MINUTE")]
    calls_per_minute: Option<u32>,

    /// Show each order only once the clock passes its consign time plus a seeded delay.
    #[arg(long = "wdt-live", env = "SIMULATOR_WDT_LIVE")]
    live: bool,

    /// The largest live-mode delay, in seconds.
    #[arg(
        long = "wdt-live-delay-max-secs",
        env = "SIMULATOR_WDT_LIVE_DELAY_MAX_SECS",
        default_value_t = 120
    )]
    live_delay_max_secs: u64,

    /// The app key accepted.
    #[arg(
        long = "wdt-app-key",
        env = "SIMULATOR_WDT_APP_KEY",
        default_value = wdt::DEFAULT_APP_KEY
    )]
    app_key: String,

    /// The app secret accepted.
    #[arg(
        long = "wdt-app-secret",
        env = "SIMULATOR_WDT_APP_SECRET",
        default_value = wdt::DEFAULT_APP_SECRET,
        hide_env_values = true
    )]
    app_secret: String,

    /// The target app key accepted.
    #[arg(
        long = "wdt-target-app-key",
        env = "SIMULATOR_WDT_TARGET_APP_KEY",
        default_value = wdt::DEFAULT_TARGET_APP_KEY
    )]
    target_app_key: String,

    /// The seller account accepted.
    #[arg(long = "wdt-sid", env = "SIMULATOR_WDT_SID", default_value = wdt::DEFAULT_SID)]
    sid: String,
}

impl WdtArgs {
    fn config(&self, seed: u64) -> WdtSimConfig {
        let to = self.consign_to.unwrap_or_else(now_beijing);
        let from = self.consign_from.unwrap_or(to - Duration::days(30));
        let config = WdtSimConfig {
            credentials: Credentials {
                app_key: self.app_key.clone(),
                app_secret: self.app_secret.clone(),
                target_app_key: self.target_app_key.clone(),
                sid: self.sid.clone(),
            },
            knobs: Knobs {
                latency_ms: self.latency_ms,
                rate_limit_fraction: self.rate_limit_fraction,
                server_error_fraction: self.server_error_fraction,
                calls_per_minute: self.calls_per_minute,
                live: self.live,
                live_delay_max_secs: self.live_delay_max_secs,
            },
            ..WdtSimConfig::new(seed)
        };
        config.with_orders(self.orders, from, to)
    }
}

/// The 金蝶云星辰 gateway simulator; its credentials are `simulator::xingchen::defaults`.
#[derive(Args)]
struct XingchenArgs {
    /// Where the 星辰 simulator listens.
    #[arg(
        long = "xingchen-listen",
        env = "SIMULATOR_XINGCHEN_LISTEN",
        default_value = "127.0.0.1:9402"
    )]
    xingchen_listen: String,

    /// How long an issued token lives, in seconds.
    #[arg(
        long = "xingchen-token-lifetime-secs",
        env = "SIMULATOR_XINGCHEN_TOKEN_LIFETIME_SECS",
        default_value_t = 86_400
    )]
    xingchen_token_lifetime_secs: u64,
}

async fn start_xingchen(cli: &Cli) -> anyhow::Result<simulator::xingchen::XingchenSimulator> {
    use simulator::xingchen::{SimulatorConfig, XingchenSimulator, XingchenState};
    let args = &cli.xingchen;
    let listener = TcpListener::bind(&args.xingchen_listen)
        .await
        .with_context(|| format!("binding the xingchen simulator to {}", args.xingchen_listen))?;
    let config = SimulatorConfig {
        token_lifetime: std::time::Duration::from_secs(args.xingchen_token_lifetime_secs),
        ..SimulatorConfig::default()
    };
    let state = XingchenState::new(&simulator::world::World::generate(cli.seed), config);
    let simulator =
        XingchenSimulator::serve(listener, state).context("starting the xingchen simulator")?;
    tracing::info!(url = %simulator.url(), "星辰 simulator listening");
    Ok(simulator)
}

async fn start_wdt(cli: &Cli) -> anyhow::Result<WdtSimulator> {
    let listener = TcpListener::bind(&cli.wdt.wdt_listen)
        .await
        .with_context(|| format!("binding the wdt simulator to {}", cli.wdt.wdt_listen))?;
    let simulator = WdtSimulator::serve(listener, WdtState::new(cli.wdt.config(cli.seed)))
        .context("starting the wdt simulator")?;
    tracing::info!(url = %simulator.url(), orders = cli.wdt.orders, "WDT simulator listening");
    Ok(simulator)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();

    let wdt = start_wdt(&cli).await?;
    let xingchen = start_xingchen(&cli).await?;

    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    tracing::info!("Stopping the simulators");
    wdt.stop().await;
    drop(xingchen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_of_all_simulators_fit_together() {
        Cli::command().debug_assert();
    }
}
