//! `bridge wdt …`: look at what 旺店通 holds, through the same client and reader the extractor uses.
//!
//! `bridge wdt orders --from … --to …` prints every order of a range as JSON lines on stdout, one
//! order per line, exactly as WDT sent it; logs go to stderr so the output can be piped. The
//! connection settings are [`wdt::WdtConfig`]'s flags and `WDT_*` environment variables.

use std::io::{BufWriter, IsTerminal, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use wdt::{
    ReadFilter, StreamExt, TimeBasis, WdtClient, WdtConfig, WdtTime, WindowReader, parse_cli_time,
};

/// `bridge wdt`.
#[derive(Args)]
pub struct WdtArgs {
    #[command(subcommand)]
    command: WdtCommand,
}

#[derive(Subcommand)]
enum WdtCommand {
    /// Print the orders of a time range as JSON lines, exactly as WDT sent them.
    Orders(OrdersArgs),
}

#[derive(Args)]
struct OrdersArgs {
    /// First second of the range: Beijing "YYYY-MM-DD HH:MM:SS" or RFC 3339.
    #[arg(long, value_parser = parse_cli_time)]
    from: WdtTime,

    /// Last second of the range, included.
    #[arg(long, value_parser = parse_cli_time)]
    to: WdtTime,

    /// Match the range against the last-modified time instead of the consign time.
    #[arg(long)]
    by_modified: bool,

    /// Only this stock-out status (5 cancelled, 95 shipped, 110 completed…).
    #[arg(long)]
    status: Option<i32>,

    /// Only this shop.
    #[arg(long)]
    shop_no: Option<String>,

    /// Only this warehouse.
    #[arg(long)]
    warehouse_no: Option<String>,

    #[command(flatten)]
    wdt: WdtConfig,
}

impl OrdersArgs {
    fn filter(&self) -> ReadFilter {
        ReadFilter {
            basis: if self.by_modified {
                TimeBasis::Modified
            } else {
                TimeBasis::Consign
            },
            status: self.status,
            shop_no: self.shop_no.clone(),
            warehouse_no: self.warehouse_no.clone(),
        }
    }
}

/// Runs a `bridge wdt` command.
pub async fn run(args: WdtArgs) -> anyhow::Result<()> {
    init_logging();
    match args.command {
        WdtCommand::Orders(args) => print_orders(args).await,
    }
}

async fn print_orders(args: OrdersArgs) -> anyhow::Result<()> {
    let filter = args.filter();
    let client = WdtClient::new(args.wdt).context("configuring the wdt client")?;
    let reader = WindowReader::new(client);
    let mut orders = std::pin::pin!(reader.read_range(args.from, args.to, filter));

    let mut out = BufWriter::new(std::io::stdout());
    let mut printed = 0_u64;
    while let Some(order) = orders.next().await {
        let order = order.context("reading orders from wdt")?;
        writeln!(out, "{}", one_line(order.raw().get())).context("writing to stdout")?;
        printed += 1;
    }
    out.flush().context("writing to stdout")?;
    tracing::info!(orders = printed, "Printed WDT orders");
    Ok(())
}

/// The order's JSON on one line. Line breaks can only sit between JSON tokens (inside strings
/// they are escaped), so turning them into spaces keeps the JSON and its every value intact.
fn one_line(json: &str) -> std::borrow::Cow<'_, str> {
    if json.contains(['\n', '\r']) {
        json.replace(['\n', '\r'], " ").into()
    } else {
        json.into()
    }
}

/// Logs to stderr, at `RUST_LOG` or `info`; a subscriber already set by `main` is kept.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test reports failure by panicking")]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: WdtCommand,
    }

    #[test]
    fn orders_takes_a_beijing_range_and_the_wdt_flags() {
        let cli = Cli::try_parse_from([
            "bridge-wdt",
            "orders",
            "--from",
            "2024-05-01 00:00:00",
            "--to",
            "2024-05-31T15:59:59Z",
            "--by-modified",
            "--wdt-app-key",
            "1",
            "--wdt-app-secret",
            "s",
            "--wdt-target-app-key",
            "2",
            "--wdt-sid",
            "demo",
        ])
        .unwrap();
        let WdtCommand::Orders(args) = cli.command;
        assert_eq!(wdt::format_wdt_time(&args.to), "2024-05-31 23:59:59");
        assert_eq!(args.filter().basis, TimeBasis::Modified);
    }

    #[test]
    fn pretty_printed_orders_become_one_line_without_changing_values() {
        let json = "{\n  \"buyer_message\": \"a\\nb\",\r\n  \"paid\": 1.10\n}";
        let line = one_line(json);
        assert!(!line.contains('\n'));
        let before: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            before
        );
    }
}
