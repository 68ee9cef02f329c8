//! The flags every operator command shares: how to reach NATS, which bridge (its prefix), and
//! `--json`; and printing a report either as JSON or as its table.
//!
//! The NATS and topology flags are the workers' own ([`pipeline::NatsConfig`],
//! [`pipeline::TopologyConfig`]), with the same environment variables, so a command run in the
//! workers' environment finds their bridge. Only the prefix of the topology is used: commands
//! never change the streams' settings. Each command's own flags are the binary's.

use std::time::Duration;

use pipeline::{NatsConfig, TopologyConfig};
use serde::Serialize;

use crate::{Ops, OpsError};

/// How long a command waits for NATS before giving up.
pub const NATS_WAIT: Duration = Duration::from_secs(30);

/// The flags every operator command takes.
#[derive(Clone, Debug, clap::Args)]
pub struct CommonArgs {
    /// How to reach NATS.
    #[command(flatten)]
    pub nats: NatsConfig,

    /// The bridge's names (its prefix); the other topology settings are not used.
    #[command(flatten)]
    pub topology: TopologyConfig,

    /// Print the report as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// Connects to the bridge these flags name.
    pub async fn connect(&self) -> Result<Ops, OpsError> {
        Ops::connect(&self.nats, &self.topology, NATS_WAIT).await
    }

    /// `report` as these flags ask: pretty JSON with `--json`, else `text`'s table.
    pub fn render<T: Serialize>(&self, report: &T, text: impl FnOnce(&T) -> String) -> String {
        if self.json {
            // Reports are plain structs of strings, numbers and times.
            let json = serde_json::to_string_pretty(report).unwrap_or_default();
            format!("{json}\n")
        } else {
            text(report)
        }
    }
}
