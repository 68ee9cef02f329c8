//! The ceiling: what JetStream itself allows through the pipeline's topology when the stages do
//! no work. One task publishes raw-order-sized messages into the raw stream the way the
//! extractor does (page-sized batches, publish acknowledgements awaited with the extractor's
//! bound), a relay consumes them and publishes a bill-sized message for each the way the
//! transformer does, and a sink consumes the bills and acks. The relay and the sink are
//! [`pipeline::worker::Worker`]s with the workers' default pull settings, each on its own
//! connection as the workers are, so the only thing missing is the work: WDT reads, the scheme,
//! lookups, 星辰 posts and the ledger. The stages' real work is measured by [`crate::phases`].

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chrono::Utc;
use pipeline::message::{self, OrderIdentity, OutgoingMessage, TraceContext};
use pipeline::worker::{Delivery, Handler, Outcome, Worker};
use pipeline::{Names, NatsConfig, PullConfig, Stage, TopologyConfig};
use test_support::NatsServer;
use tokio_util::sync::CancellationToken;

/// Orders per page, as the extractor publishes them.
const PAGE_SIZE: usize = 100;
/// Publish acknowledgements awaited at once, the extractor's default.
const PUBLISH_IN_FLIGHT: usize = 64;
/// How long the whole ceiling run may take.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Publishes `messages` raw messages of `raw_bytes` through a relay that answers each with a
/// bill of `bill_bytes` into a sink, and returns messages per second from the first publish to
/// the last ack of the sink.
pub async fn measure(messages: usize, raw_bytes: usize, bill_bytes: usize) -> anyhow::Result<f64> {
    let server = NatsServer::start();
    let config = NatsConfig::for_url(server.url());
    let topology_config = TopologyConfig::default();
    let names = topology_config.names()?;
    let pull = PullConfig::default();

    // Three connections, as three worker processes would have.
    let relay = connect(&config, &topology_config).await?;
    let sink = connect(&config, &topology_config).await?;
    let bill = Bytes::from(vec![b'b'; bill_bytes]);
    let relay_handler = Relay {
        publisher: relay.publisher(),
        names: names.clone(),
        bill,
    };
    let stop = CancellationToken::new();
    let relay_worker = Worker::new(worker_spec(&relay, Stage::Transform, &pull)?, relay_handler);
    let sink_worker = Worker::new(worker_spec(&sink, Stage::Load, &pull)?, Sink);
    let sunk = sink_worker.stats();
    let relay_task = tokio::spawn(relay_worker.run(stop.clone()));
    let sink_task = tokio::spawn(sink_worker.run(stop.clone()));

    let source = connect(&config, &topology_config).await?;
    let started = Instant::now();
    let publish = publish_raw(source.publisher(), &names, messages, raw_bytes);
    let published = tokio::time::timeout(TIMEOUT, publish).await;
    let finished = wait_for(&sunk, messages as u64, started + TIMEOUT).await;
    let elapsed_s = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = relay_task.await;
    let _ = sink_task.await;
    published.context("publishing the ceiling's messages timed out")??;
    finished?;
    Ok(crate::report::per_second(messages, elapsed_s))
}

async fn connect(
    config: &NatsConfig,
    topology: &TopologyConfig,
) -> anyhow::Result<pipeline::Topology> {
    let client = pipeline::connect(config).await?;
    let js = async_nats::jetstream::new(client);
    Ok(pipeline::ensure_topology(&js, topology).await?)
}

fn worker_spec(
    topology: &pipeline::Topology,
    stage: Stage,
    pull: &PullConfig,
) -> anyhow::Result<pipeline::worker::WorkerSpec> {
    topology
        .worker_spec(stage, pull)
        .context("the stage consumes a stream")
}

async fn publish_raw(
    publisher: pipeline::publisher::Publisher,
    names: &Names,
    messages: usize,
    raw_bytes: usize,
) -> anyhow::Result<()> {
    let raw = Bytes::from(vec![b'r'; raw_bytes]);
    let modified = Utc::now().with_timezone(&message::beijing());
    let trace = TraceContext::default();
    let ids: Vec<usize> = (0..messages).collect();
    for page in ids.chunks(PAGE_SIZE) {
        let mut batch: Vec<OutgoingMessage> = Vec::with_capacity(page.len());
        for id in page {
            let identity = OrderIdentity {
                stockout_id: format!("{}", 1_000_000 + id),
                stockout_no: format!("CK{id:08}"),
                modified,
            };
            batch.push(message::raw_order_message(
                names,
                &identity,
                raw.clone(),
                &trace,
            )?);
        }
        publisher.publish_all(batch, PUBLISH_IN_FLIGHT).await?;
    }
    Ok(())
}

async fn wait_for(
    stats: &pipeline::worker::WorkerStats,
    count: u64,
    deadline: Instant,
) -> anyhow::Result<()> {
    while stats.snapshot().acked < count {
        if Instant::now() > deadline {
            bail!(
                "the sink acked {} of {count} messages in time",
                stats.snapshot().acked
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Answers each raw message with a bill-sized message, as the transformer does minus the work.
struct Relay {
    publisher: pipeline::publisher::Publisher,
    names: Names,
    bill: Bytes,
}

impl Handler for Relay {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let meta = match delivery.meta() {
            Ok(meta) => meta,
            Err(error) => return Outcome::retry(error),
        };
        let bill = message::bill_message(
            &self.names,
            &meta.identity,
            self.bill.clone(),
            &meta.trace,
            Utc::now(),
        );
        let bill = match bill {
            Ok(bill) => bill,
            Err(error) => return Outcome::retry(error),
        };
        match self.publisher.publish(bill).await {
            Ok(_) => Outcome::Ack,
            Err(error) => Outcome::retry(error),
        }
    }
}

/// Acks every bill, as the loader does once the bill is recorded.
struct Sink;

impl Handler for Sink {
    async fn handle(&self, _delivery: &Delivery) -> Outcome {
        Outcome::Ack
    }
}
