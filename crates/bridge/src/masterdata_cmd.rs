//! `bridge masterdata sync`: refresh the transformer's master-data cache from 金蝶云星辰.
//!
//! It reads every customer, material (with its base unit) and store from 星辰's paged lists,
//! writes them into the `bridge_masterdata` bucket, drops cached misses and deletes entries whose
//! number 星辰 no longer holds, then prints what changed per collection: a table, or one JSON
//! object with `--json`. Running transformers resolve with the new data from their next message.
//! The sync itself is the `transformer` crate's ([`transformer::sync_masterdata`]); this module
//! only connects, runs it and prints.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use pipeline::{NatsConfig, TopologyConfig};
use transformer::SyncReport;
use xingchen::{Client, XingchenConfig};

/// How long the command waits for NATS before giving up.
const NATS_WAIT: Duration = Duration::from_secs(30);

/// The `bridge masterdata` commands.
#[derive(Subcommand)]
pub enum MasterdataCommand {
    /// Refresh the whole cache from 星辰's lists and report the counts per collection.
    // Boxed: three flattened configs would make every other command as large.
    Sync(Box<SyncArgs>),
}

/// Flags of `bridge masterdata sync`.
#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    nats: NatsConfig,

    #[command(flatten)]
    topology: TopologyConfig,

    #[command(flatten)]
    xingchen: XingchenConfig,

    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs one `bridge masterdata` command.
pub async fn run(command: MasterdataCommand) -> anyhow::Result<()> {
    match command {
        MasterdataCommand::Sync(args) => sync(*args).await,
    }
}

async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let client = Client::new(args.xingchen).context("configuring the 星辰 client")?;
    let Ok(nats) = tokio::time::timeout(NATS_WAIT, pipeline::connect(&args.nats)).await else {
        bail!(
            "NATS at {} did not answer within {NATS_WAIT:?}",
            args.nats.redacted_url()
        );
    };
    let nats = nats.context("connecting to NATS")?;
    let jetstream = async_nats::jetstream::new(nats.clone());
    let topology = pipeline::ensure_topology(&jetstream, &args.topology)
        .await
        .context("opening the master-data bucket")?;

    let report = transformer::sync_masterdata(&client, &topology.masterdata)
        .await
        .context("synchronising master data from 星辰")?;
    nats.flush().await.context("flushing NATS")?;

    if args.json {
        let text = serde_json::to_string_pretty(&report).context("printing the report")?;
        println!("{text}");
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The report as an aligned table, one row per collection.
fn table(report: &SyncReport) -> String {
    let header = [
        "COLLECTION",
        "RECORDS",
        "ADDED",
        "UPDATED",
        "UNCHANGED",
        "REMOVED",
        "MISSES_DROPPED",
    ];
    let rows: Vec<[String; 7]> = report
        .collections
        .iter()
        .map(|c| {
            [
                c.collection.clone(),
                c.records.to_string(),
                c.added.to_string(),
                c.updated.to_string(),
                c.unchanged.to_string(),
                c.removed.to_string(),
                c.misses_dropped.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| match i {
                0 => format!("{cell:<width$}"),
                _ => format!("{cell:>width$}"),
            })
            .collect();
        format!("{}\n", padded.join("  "))
    };
    let mut text = line(header.to_vec());
    for row in &rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text.push_str(&format!("synchronised in {} ms\n", report.elapsed_ms));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use transformer::CollectionSync;

    #[test]
    fn the_table_aligns_every_column_under_its_header() {
        let report = SyncReport {
            collections: vec![
                CollectionSync {
                    collection: "customer".into(),
                    records: 6,
                    unchanged: 6,
                    ..CollectionSync::default()
                },
                CollectionSync {
                    collection: "material".into(),
                    records: 1234,
                    added: 1,
                    misses_dropped: 12,
                    ..CollectionSync::default()
                },
            ],
            elapsed_ms: 42,
        };
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("COLLECTION  RECORDS"), "{text}");
        assert_eq!(lines[1].len(), lines[0].len(), "{text}");
        assert!(
            lines[2].starts_with("material") && lines[2].ends_with("12"),
            "{text}"
        );
        assert!(lines[2].contains("   1234"), "{text}");
        assert_eq!(lines[3], "synchronised in 42 ms");
    }
}
