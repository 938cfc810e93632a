//! The ceiling: the same message flow and guarantees as jobfleet in bare lapin, with no
//! coordinator and no framework. A persistent job message published with confirms →
//! consumed with manual ack (prefetch = concurrency) by a consumer in its own process →
//! a persistent result message published with confirms, then the job acked → the result
//! consumed (and acked) by the benchmark.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use jobfleet_common::codec::{self, MSGPACK};
use jobfleet_common::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use jobfleet_common::lapin::types::FieldTable;
use jobfleet_common::lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, ExchangeKind,
};
use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use jobfleet_common::now_ms;
use jobfleet_common::topology::Topology;

/// The routing key (and `group`) of ceiling jobs.
pub const GROUP: &str = "ceiling";

/// The ceiling's AMQP names, under the benchmark's namespace.
#[derive(Debug, Clone)]
pub struct Names {
    /// Direct exchange the jobs go to.
    pub jobs_exchange: String,
    /// The durable job queue.
    pub queue: String,
    /// Topic exchange the results go to.
    pub results_exchange: String,
}

impl Names {
    /// The names for `topology`'s namespace.
    pub fn new(topology: &Topology) -> Names {
        let ns = topology.namespace();
        Names {
            jobs_exchange: format!("{ns}.ceiling.jobs"),
            queue: format!("{ns}.ceiling.jobs"),
            results_exchange: format!("{ns}.ceiling.results"),
        }
    }

    /// Declares both exchanges and the job queue (durable, like jobfleet's).
    pub async fn declare(&self, channel: &Channel) -> Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.jobs_exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.results_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.jobs_exchange.as_str().into(),
                GROUP.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }
}

async fn connect(amqp_url: &str, name: &str) -> Result<Connection> {
    Connection::connect(
        amqp_url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .context("connect to RabbitMQ")
}

fn persistent(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(MSGPACK.into())
        .with_message_id(id.into())
}

fn acked(confirmation: Confirmation) -> Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => bail!("returned: unroutable"),
        other => bail!("not confirmed: {other:?}"),
    }
}

/// The consumer process: runs until killed. Each delivery is decoded, answered with a
/// persistent result published with a confirm, then acked — one task per delivery, at
/// most `concurrency` in flight (the prefetch), as in the jobfleet worker.
pub async fn consume(amqp_url: &str, queue: &str, results_exchange: &str, concurrency: u16) -> Result<()> {
    let connection = connect(amqp_url, "jobfleet-bench ceiling consumer").await?;
    let consuming = connection.create_channel().await?;
    let publishing = connection.create_channel().await?;
    publishing.confirm_select(ConfirmSelectOptions::default()).await?;
    consuming
        .basic_qos(concurrency, BasicQosOptions::default())
        .await?;
    let mut consumer = consuming
        .basic_consume(
            queue.into(),
            "ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let publishing = publishing.clone();
        let exchange = results_exchange.to_string();
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
            let now = now_ms();
            let result = ResultMessage {
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
            };
            let published = async {
                let confirm = publishing
                    .basic_publish(
                        exchange.as_str().into(),
                        result.routing_key().into(),
                        BasicPublishOptions::default(),
                        &codec::encode(&result),
                        persistent(&result.id),
                    )
                    .await?;
                acked(confirm.await?)
            };
            match published.await {
                Ok(()) => {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) => eprintln!("ceiling consumer: result not published: {e}"),
            }
        });
    }
    Ok(())
}

/// The benchmark's side of the ceiling: publishes jobs with confirms and consumes results.
pub struct Client {
    _connection: Connection,
    channel: Channel,
    names: Names,
}

impl Client {
    /// Connects and declares the ceiling's exchanges and queue.
    pub async fn connect(amqp_url: &str, names: Names) -> Result<Client> {
        let connection = connect(amqp_url, "jobfleet-bench ceiling producer").await?;
        let channel = connection.create_channel().await?;
        names.declare(&channel).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Client {
            _connection: connection,
            channel,
            names,
        })
    }

    /// Publishes jobs (mandatory, persistent) and waits for all their confirms, like
    /// `Producer::publish_many` minus the Redis record.
    pub async fn publish_many(&self, jobs: &[JobMessage]) -> Result<()> {
        let mut confirms = Vec::with_capacity(jobs.len());
        for job in jobs {
            let body = codec::encode(job);
            let options = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            confirms.push(
                self.channel
                    .basic_publish(
                        self.names.jobs_exchange.as_str().into(),
                        GROUP.into(),
                        options,
                        &body,
                        persistent(&job.id),
                    )
                    .await?,
            );
        }
        for confirmation in futures::future::join_all(confirms).await {
            acked(confirmation?)?;
        }
        Ok(())
    }

    /// A job to publish to the ceiling.
    pub fn job(args: serde_json::Value) -> JobMessage {
        let mut job = JobMessage::new(GROUP, "echo", args);
        job.submitted_at = Some(now_ms());
        job
    }
}

/// Consumes the ceiling's results through an exclusive queue bound with `#`, like a
/// `ResultSubscriber` (prefetch 500, one ack per result).
pub struct Subscriber {
    _connection: Connection,
    consumer: Consumer,
}

impl Subscriber {
    /// Binds a fresh exclusive queue to the results exchange.
    pub async fn connect(amqp_url: &str, names: &Names) -> Result<Subscriber> {
        let connection = connect(amqp_url, "jobfleet-bench ceiling subscriber").await?;
        let channel = connection.create_channel().await?;
        names.declare(&channel).await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare("".into(), options, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                queue.name().clone(),
                names.results_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.basic_qos(500, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Subscriber {
            _connection: connection,
            consumer,
        })
    }

    /// The next result.
    pub async fn next(&mut self) -> Result<ResultMessage> {
        let delivery = self
            .consumer
            .next()
            .await
            .context("the result consumer ended")??;
        let decoded = codec::decode_result(
            delivery.properties.content_type().as_ref().map(|c| c.as_str()),
            &delivery.data,
        );
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(decoded?)
    }
}
