//! The ceiling: the same message flow and guarantees as jobfleet in bare lapin, with no
//! coordinator and no framework. A persistent job message published with confirms →
//! consumed with manual ack (prefetch = concurrency) by a consumer in its own process →
//! a persistent result message published with confirms, then the job acked → the result
//! consumed (and acked) by the benchmark.
//!
//! Its AMQP objects are a jobfleet topology of their own (namespace `NS.ceiling`, one
//! classic group queue) declared and published to with jobfleet's helpers, so that only
//! what runs in between differs from the jobfleet rows.

use anyhow::{Context, Result};
use futures::StreamExt;
use jobfleet_common::codec;
use jobfleet_common::config::QueueType;
use jobfleet_common::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use jobfleet_common::lapin::types::FieldTable;
use jobfleet_common::lapin::{Channel, Connection, ConnectionProperties};
use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use jobfleet_common::now_ms;
use jobfleet_common::publish::{publish_jobs, publish_result};
use jobfleet_common::topology::Topology;

/// The group of ceiling jobs: their routing key and the name of the ceiling's queue.
pub const GROUP: &str = "ceiling";

/// The ceiling's topology, `NS.ceiling`, beside the benchmark fleet's `NS`.
pub fn topology(fleet: &Topology) -> Topology {
    Topology::new(format!("{}.ceiling", fleet.namespace()))
}

/// Declares the ceiling's exchanges and its job queue, as jobfleet declares a group of
/// `queue_type`.
async fn declare(channel: &Channel, topology: &Topology, queue_type: QueueType) -> Result<()> {
    topology.declare_base(channel, queue_type).await?;
    topology.declare_group(channel, GROUP, queue_type, None).await?;
    Ok(())
}

/// Connects to the first node of `amqp_url` (the ceiling measures one broker node).
async fn connect(amqp_url: &str, name: &str) -> Result<Connection> {
    let first = jobfleet_common::config::amqp_urls(amqp_url)
        .map_err(anyhow::Error::msg)?
        .swap_remove(0);
    Connection::connect_uri(
        first,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .context("connect to RabbitMQ")
}

/// The consumer process: runs until killed. Each delivery is decoded, answered with a
/// persistent result published with a confirm, then acked — one task per delivery, at
/// most `concurrency` in flight (the prefetch), as in the jobfleet worker.
pub async fn consume(amqp_url: &str, topology: Topology, concurrency: u16) -> Result<()> {
    let connection = connect(amqp_url, "jobfleet-bench ceiling consumer").await?;
    let consuming = connection.create_channel().await?;
    let publishing = connection.create_channel().await?;
    publishing.confirm_select(ConfirmSelectOptions::default()).await?;
    consuming
        .basic_qos(concurrency, BasicQosOptions::default())
        .await?;
    let mut consumer = consuming
        .basic_consume(
            topology.group_queue(GROUP).into(),
            "ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let publishing = publishing.clone();
        let topology = topology.clone();
        tokio::spawn(async move {
            let content_type = delivery.properties.content_type().as_ref().map(|c| c.as_str());
            let job = match codec::decode_job(content_type, &delivery.data, None) {
                Ok(job) => job,
                Err(e) => {
                    eprintln!("ceiling consumer: undecodable job: {}", e.reason);
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                    return;
                }
            };
            match publish_result(&publishing, &topology, &echoed(job), None).await {
                Ok(()) => {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) => eprintln!("ceiling consumer: result not published: {e}"),
            }
        });
    }
    Ok(())
}

/// The result of `job` run as `echo`: finished at once with its args.
fn echoed(job: JobMessage) -> ResultMessage {
    let now = now_ms();
    ResultMessage {
        id: job.id,
        group: job.group,
        function: job.function,
        status: JobStatus::Finished,
        result: Some(job.args),
        error: None,
        attempts: 1,
        worker: "ceiling".into(),
        submitted_at: job.submitted_at,
        started_at: Some(now),
        finished_at: now,
        duration_ms: Some(0),
        member: Default::default(),
    }
}

/// The benchmark's side of the ceiling: publishes jobs with confirms. Its results are read
/// with a `ResultSubscriber` on the ceiling's topology, bound with `#`.
pub struct Client {
    _connection: Connection,
    channel: Channel,
    topology: Topology,
}

impl Client {
    /// Connects and declares the ceiling's exchanges and queue (of `queue_type`).
    pub async fn connect(amqp_url: &str, topology: Topology, queue_type: QueueType) -> Result<Client> {
        let connection = connect(amqp_url, "jobfleet-bench ceiling producer").await?;
        let channel = connection.create_channel().await?;
        declare(&channel, &topology, queue_type).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Client {
            _connection: connection,
            channel,
            topology,
        })
    }

    /// Publishes jobs (mandatory, persistent) and waits for all their confirms, like
    /// `Producer::publish_many` minus the Redis record.
    pub async fn publish_many(&self, jobs: &[JobMessage]) -> Result<()> {
        Ok(publish_jobs(&self.channel, &self.topology, jobs, None).await?)
    }

    /// A job to publish to the ceiling.
    pub fn job(args: serde_json::Value) -> JobMessage {
        let mut job = JobMessage::new(GROUP, "echo", args);
        job.submitted_at = Some(now_ms());
        job
    }
}
