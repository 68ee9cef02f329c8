//! The heartbeat every worker writes into the `bridge_workers` bucket, for `bridge status`.
//!
//! Every interval a worker puts `<stage>.<instance>` (the instance [`crate::key`] encoded) with
//! a JSON object: who it is (`stage`, `instance`, `version`, `pid`, `host`, `started_at`), when
//! it wrote (`at`), what it has done (`processed`, counts by name), and any fields of the
//! worker's own, such as the extractor's `cursor`. The bucket forgets a key a minute after its
//! last write, so a worker that died disappears by itself; one that stops cleanly deletes its
//! key. A failed write is logged once per outage and tried again at the next beat: a heartbeat
//! never stops the work.
//!
//! This module owns the identity, the key, the loop and the JSON's common fields; what goes in
//! `processed` and the extra fields is each worker's, through [`Vitals`]. Reading heartbeats is
//! `bridge status`'s job.

use std::future::Future;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::kv::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use telemetry::health::Readiness;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::names::Stage;

/// The readiness check a watched heartbeat keeps in step with the NATS connection.
pub const NATS_READY: &str = "nats";

/// Who a worker is, as its heartbeats say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The worker's stage.
    pub stage: Stage,
    /// The instance name.
    pub instance: String,
    /// The worker's version.
    pub version: &'static str,
    /// The process id.
    pub pid: u32,
    /// The host name.
    pub host: String,
    /// When the worker started.
    pub started_at: DateTime<Utc>,
}

impl Identity {
    /// This process as a worker of `stage` at `version`, named `instance` or, without one (or
    /// with a blank one), `<host>-<pid>`.
    pub fn of_this_process(stage: Stage, instance: Option<&str>, version: &'static str) -> Self {
        let host = host_name();
        let pid = std::process::id();
        let instance = match instance.map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => format!("{host}-{pid}"),
        };
        Identity {
            stage,
            instance,
            version,
            pid,
            host,
            started_at: Utc::now(),
        }
    }

    /// The key of this worker's heartbeat.
    pub fn key(&self) -> String {
        key(self.stage, &self.instance)
    }
}

/// The heartbeat key of `instance` in `stage`: `<stage>.<encoded instance>`.
pub fn key(stage: Stage, instance: &str) -> String {
    format!("{}.{}", stage.as_str(), crate::key::encode(instance))
}

/// The default instance name of this process: `<host>-<pid>`.
pub fn default_instance() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

/// The host's name, from the kernel or `HOSTNAME`; `unknown` when neither says.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a worker adds to each beat.
pub trait Vitals: Send + Sync + 'static {
    /// The `processed` object: counts since the start, by name.
    fn processed(&self) -> Value;

    /// Fields of the worker's own beside the common ones; none unless overridden. A field
    /// named like a common one is ignored.
    fn extra(&self) -> Map<String, Value> {
        Map::new()
    }

    /// Runs at every tick before the beat, e.g. to refresh gauges read on the same schedule.
    fn on_tick(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The JSON object of one beat.
pub fn beat_value(identity: &Identity, at: DateTime<Utc>, vitals: &impl Vitals) -> Value {
    let mut object = vitals.extra();
    // Identity is strings, numbers and a time: it always serialises to an object.
    if let Ok(Value::Object(common)) = serde_json::to_value(identity) {
        object.extend(common);
    }
    object.insert("at".to_owned(), Value::String(rfc3339(at)));
    object.insert("processed".to_owned(), vitals.processed());
    Value::Object(object)
}

/// Writes one worker's heartbeats.
pub struct Heartbeat {
    store: Store,
    identity: Identity,
    key: String,
    watched: Option<(async_nats::Client, Readiness)>,
}

impl Heartbeat {
    /// Heartbeats of `identity` into `store` (the workers bucket).
    pub fn new(store: Store, identity: Identity) -> Heartbeat {
        Heartbeat {
            key: identity.key(),
            store,
            identity,
            watched: None,
        }
    }

    /// Also sets the [`NATS_READY`] check of `readiness` from `client`'s connection at every
    /// tick, and skips the beat while it is down (the write could only time out).
    pub fn watching(mut self, client: async_nats::Client, readiness: Readiness) -> Heartbeat {
        self.watched = Some((client, readiness));
        self
    }

    /// The key it writes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Beats every `interval` with what `vitals` says until `stop`, then deletes the key.
    pub async fn run(self, interval: Duration, vitals: impl Vitals, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if !self.connected() {
                continue;
            }
            vitals.on_tick().await;
            match self.beat(&vitals).await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    warn!(key = %self.key, error = %error, "Heartbeat not written; trying again");
                    failing = true;
                }
                Err(error) => debug!(key = %self.key, error = %error, "Heartbeat not written"),
            }
        }
        if let Err(error) = self.store.delete(&self.key).await {
            debug!(key = %self.key, error = %error, "Heartbeat not removed; it will expire");
        }
    }

    /// Whether the watched connection is up, after telling the readiness check; true when
    /// nothing is watched.
    fn connected(&self) -> bool {
        let Some((client, readiness)) = &self.watched else {
            return true;
        };
        let connected = client.connection_state() == State::Connected;
        readiness.set(NATS_READY, connected);
        connected
    }

    async fn beat(&self, vitals: &impl Vitals) -> Result<(), async_nats::jetstream::kv::PutError> {
        let value = beat_value(&self.identity, Utc::now(), vitals);
        let revision = self.store.put(&self.key, value.to_string().into()).await?;
        debug!(key = %self.key, revision, "Heartbeat written");
        Ok(())
    }
}

/// A time as chrono's serde writes it, so `at` reads like `started_at`.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counts;

    impl Vitals for Counts {
        fn processed(&self) -> Value {
            serde_json::json!({"acked": 3})
        }

        fn extra(&self) -> Map<String, Value> {
            let mut extra = Map::new();
            extra.insert("cursor".to_owned(), "2024-05-01T12:00:00+08:00".into());
            // A common field wins over an extra one of the same name.
            extra.insert("pid".to_owned(), 0.into());
            extra
        }
    }

    #[test]
    fn the_key_is_the_stage_and_the_encoded_instance() {
        assert_eq!(
            key(Stage::Extract, "host-1.example-42"),
            "extract.host-1=2Eexample-42"
        );
        let identity = Identity::of_this_process(Stage::Load, Some("loader 1.a"), "1.0.0");
        assert_eq!(identity.key(), "load.loader=201=2Ea");
        assert!(crate::key::is_valid_kv_key(&identity.key()));
    }

    #[test]
    fn without_an_instance_name_it_is_host_and_pid() {
        let pid_suffix = format!("-{}", std::process::id());
        for instance in [None, Some("  ")] {
            let identity = Identity::of_this_process(Stage::Transform, instance, "1.0.0");
            assert!(identity.instance.ends_with(&pid_suffix), "{identity:?}");
            assert_eq!(identity.instance, default_instance());
        }
    }

    #[test]
    fn a_beat_carries_identity_time_counts_and_the_workers_own_fields() {
        let identity = Identity::of_this_process(Stage::Extract, Some("e1"), "1.2.3");
        let at = Utc::now();
        let value = beat_value(&identity, at, &Counts);

        assert_eq!(value["stage"], "extract");
        assert_eq!(value["instance"], "e1");
        assert_eq!(value["version"], "1.2.3");
        assert_eq!(value["pid"], std::process::id());
        assert_eq!(value["host"], identity.host.as_str());
        assert_eq!(value["processed"]["acked"], 3);
        assert_eq!(value["cursor"], "2024-05-01T12:00:00+08:00");
        let started: DateTime<Utc> =
            serde_json::from_value(value["started_at"].clone()).expect("started_at");
        assert_eq!(started, identity.started_at);
        let written: DateTime<Utc> = serde_json::from_value(value["at"].clone()).expect("at");
        assert_eq!(written, at);
    }
}
