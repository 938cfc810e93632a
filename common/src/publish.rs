//! Publishing on the broker, in one place: the properties of every persistent MessagePack
//! message, waiting for a confirm, publishing jobs and result messages, and a queue's depth.

use crate::client::ClientError;
use crate::codec::{self, MSGPACK};
use crate::message::{JobMessage, ResultMessage};
use crate::topology::Topology;
use crate::trace::TRACEPARENT;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{self, BasicProperties, Channel, Confirmation};

/// Properties of a jobfleet message: persistent, MessagePack, `message_id` = `id`, and a
/// W3C `traceparent` header when there is one (a job's `priority` is added when it is sent).
pub fn persistent_properties(id: &str, traceparent: Option<&str>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(MSGPACK.into())
        .with_message_id(id.into());
    match traceparent {
        Some(value) => {
            let mut headers = FieldTable::default();
            headers.insert(TRACEPARENT.into(), AMQPValue::LongString(value.into()));
            properties.with_headers(headers)
        }
        None => properties,
    }
}

/// Waits for a publish's confirm: an ack is success, a nack or a returned message an error.
pub async fn confirmed(confirm: lapin::PublisherConfirm, id: &str, group: &str) -> Result<(), ClientError> {
    match confirm.await? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(ClientError::Unroutable {
            id: id.to_string(),
            group: group.to_string(),
        }),
        Confirmation::Nack(_) => Err(ClientError::Nacked(id.to_string())),
    }
}

/// The header that marks the result of a workflow step or a batch's job (`workflow` or
/// `batch`): `NS.results` passes those on to the master's workflow driver
/// ([`Topology::declare_flows`]).
pub const FLOW_HEADER: &str = "x-jobfleet-flow";

/// The properties of `result`'s message: [`persistent_properties`], plus [`FLOW_HEADER`]
/// for a workflow step's or batch job's result.
fn result_properties(result: &ResultMessage, traceparent: Option<&str>) -> BasicProperties {
    let properties = persistent_properties(&result.id, traceparent);
    let flow = match (&result.member.workflow, &result.member.batch) {
        (Some(_), _) => "workflow",
        (None, Some(_)) => "batch",
        (None, None) => return properties,
    };
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(FLOW_HEADER.into(), AMQPValue::LongString(flow.into()));
    properties.with_headers(headers)
}

/// Publishes `result` to `NS.results` on a confirm-mode `channel` and waits for its confirm.
pub async fn publish_result(
    channel: &Channel,
    topology: &Topology,
    result: &ResultMessage,
    traceparent: Option<&str>,
) -> Result<(), ClientError> {
    let confirm = channel
        .basic_publish(
            topology.results_exchange().into(),
            result.routing_key().into(),
            BasicPublishOptions::default(),
            &codec::encode(result),
            result_properties(result, traceparent),
        )
        .await?;
    confirmed(confirm, &result.id, &result.group).await
}

/// Messages ready (not delivered) in `queue`, from a passive declare. A failed passive
/// declare closes the channel: callers holding it open a fresh one next time.
pub async fn queue_depth(channel: &Channel, queue: &str) -> Result<u64, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    Ok(u64::from(declared.message_count()))
}

/// Publishes `job` to `NS.jobs` (routing key = its group, `mandatory`: a missing group
/// queue is an error, not a silent drop) with `properties`, and waits for the confirm.
pub async fn publish_job(
    channel: &Channel,
    topology: &Topology,
    job: &JobMessage,
    properties: BasicProperties,
) -> Result<(), ClientError> {
    let confirm = send_job(channel, topology, job, properties).await?;
    confirmed(confirm, &job.id, &job.group).await
}

/// Publishes `jobs` like [`publish_job`] (persistent, with `traceparent` when given), then
/// waits for all their confirms at once: a batch costs about one round trip, not one a job.
pub async fn publish_jobs(
    channel: &Channel,
    topology: &Topology,
    jobs: &[JobMessage],
    traceparent: Option<&str>,
) -> Result<(), ClientError> {
    let batch: Vec<(&JobMessage, BasicProperties)> = jobs
        .iter()
        .map(|job| (job, persistent_properties(&job.id, traceparent)))
        .collect();
    publish_batch(channel, topology, batch)
        .await?
        .into_iter()
        .collect()
}

/// Sends every job of `batch` with its properties as [`publish_job`] does, then waits for
/// all their confirms at once. The outer error is a send that failed (nothing after it was
/// sent); otherwise each job's own confirm, in order.
pub async fn publish_batch(
    channel: &Channel,
    topology: &Topology,
    batch: Vec<(&JobMessage, BasicProperties)>,
) -> Result<Vec<Result<(), ClientError>>, ClientError> {
    let mut confirms = Vec::with_capacity(batch.len());
    for (job, properties) in batch {
        confirms.push((job, send_job(channel, topology, job, properties).await?));
    }
    let waits = confirms
        .into_iter()
        .map(|(job, confirm)| confirmed(confirm, &job.id, &job.group));
    Ok(futures::future::join_all(waits).await)
}

/// Sends `job` as [`publish_job`] does and returns its confirm, still to be waited for.
/// A job with a `priority` gets it as the AMQP `priority` property too: every publish of a
/// job message goes through here, so a group queue with `x-max-priority` orders them all.
async fn send_job(
    channel: &Channel,
    topology: &Topology,
    job: &JobMessage,
    properties: BasicProperties,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let properties = match job.priority {
        Some(priority) => properties.with_priority(priority),
        None => properties,
    };
    channel
        .basic_publish(
            topology.jobs_exchange().into(),
            job.group.as_str().into(),
            mandatory,
            &codec::encode(job),
            properties,
        )
        .await
}
