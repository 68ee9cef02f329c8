//! `bridge xingchen …`: what 金蝶云星辰 holds for a number, printed as JSON.
//!
//! `customer`, `material` and `store` show the master-data record behind a shop, goods or
//! warehouse number, which is what the transformer's look-ups will find; `bill` shows a saved
//! sales outbound bill. The client and its configuration come from the `xingchen` crate; this
//! module only parses the subcommand and prints.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use xingchen::{Client, XingchenConfig};

/// Look up 星辰 records by number.
#[derive(Args)]
pub struct XingchenCmd {
    #[command(flatten)]
    config: XingchenConfig,

    #[command(subcommand)]
    what: Lookup,
}

#[derive(Subcommand)]
enum Lookup {
    /// The customer whose number is this WDT `shop_no`.
    Customer {
        /// The customer number.
        #[arg(long)]
        number: String,
    },
    /// The material whose number is this WDT `goods_no`, with its base unit.
    Material {
        /// The material number.
        #[arg(long)]
        number: String,
    },
    /// The store whose number is this WDT `warehouse_no`.
    Store {
        /// The store number.
        #[arg(long)]
        number: String,
    },
    /// The sales outbound bill with this number (the WDT `stockout_no`).
    Bill {
        /// The bill number.
        #[arg(long)]
        number: String,
    },
}

/// Awaits a look-up, prints its record as JSON, or fails when 星辰 has none.
macro_rules! show {
    ($kind:literal, $number:expr, $lookup:expr) => {{
        let number = $number;
        let found = $lookup
            .await
            .with_context(|| format!("looking up {} {number:?} in 星辰", $kind))?;
        let Some(record) = found else {
            bail!("星辰 has no {} with number {number:?}", $kind);
        };
        let text = serde_json::to_string_pretty(&record).context("printing the record")?;
        println!("{text}");
        Ok(())
    }};
}

/// Runs one look-up and prints the record, or fails when 星辰 has none.
pub async fn run(cmd: XingchenCmd) -> anyhow::Result<()> {
    let client = Client::new(cmd.config).context("configuring the 星辰 client")?;
    match cmd.what {
        Lookup::Customer { number } => show!("customer", &number, client.customer(&number)),
        Lookup::Material { number } => show!("material", &number, client.material(&number)),
        Lookup::Store { number } => show!("store", &number, client.store(&number)),
        Lookup::Bill { number } => show!("bill", &number, client.find_bill_by_number(&number)),
    }
}
