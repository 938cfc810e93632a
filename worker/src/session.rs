//! One broker session: declare the topology, consume the group queues and the control
//! queue, and hand each delivery to a task until shutdown, a broken connection or a stall.

use crate::control::{self, ControlTask};
use crate::error::WorkerError;
use crate::watchdog::StallWatchdog;
use crate::Worker;
use futures::stream::BoxStream;
use futures::StreamExt;
use jobfleet_common::client;
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use jobfleet_common::lapin::types::{FieldTable, ShortString};
use jobfleet_common::lapin::{Channel, Consumer};
use jobfleet_common::publish::queue_depth;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, Instrument};

/// What a broker session leaves for the drain when shutdown ends it.
pub(crate) struct Session {
    /// The consuming channel, kept open until the running jobs are done.
    pub(crate) channel: Channel,
    /// The control consumer, so cancels still reach jobs that run through the drain.
    pub(crate) control: ControlTask,
}

impl Worker {
    /// One broker session: declare, consume the group queues and the control queue, hand
    /// each delivery to a task. Returns the session when shutdown was requested (job
    /// consumers canceled), an error when the connection broke or a consumer failed.
    /// Sets `delivered` once a delivery arrives.
    pub(crate) async fn consume(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        delivered: &mut bool,
    ) -> Result<Session, WorkerError> {
        let channel = client::open_channel(&self.pool, false).await?;
        self.declare(&channel).await?;
        let mut control = control::start(&self.shared, &channel).await?;
        let consumers = self.start_consumers(&channel).await?;
        let tags: Vec<_> = consumers.iter().map(|c| c.tag()).collect();
        let mut deliveries = deliveries(consumers);
        let mut watchdog = StallWatchdog::new(self.stall_check);
        info!("consuming");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    for tag in tags {
                        let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                    }
                    return Ok(Session { channel, control });
                }
                ended = &mut control.handle => {
                    // Like a failed job consumer: end the session, so the worker reconnects.
                    return Err(match ended {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => WorkerError::Stalled("the control consumer stopped".into()),
                        Err(e) => WorkerError::ControlTask(e),
                    });
                }
                _ = watchdog.tick() => {
                    let idle = watchdog.idle() && tracker.len() < self.concurrency;
                    let waiting = if idle { self.ready_messages(&channel).await? } else { 0 };
                    watchdog.check(waiting)?;
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        watchdog.delivered();
                        *delivered = true;
                        let shared = self.shared.clone();
                        tracker.spawn(async move { shared.handle(delivery).await }.in_current_span());
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(WorkerError::Stalled("the broker closed the consumers".into())),
                },
            }
        }
    }

    /// Declares the base topology, each group's queue and hold-delay queue, and the
    /// prefetch.
    async fn declare(&self, channel: &Channel) -> Result<(), WorkerError> {
        let shared = &self.shared;
        shared.topology.declare_base(channel).await?;
        for group in &self.groups {
            let queue_type = shared
                .config
                .group(group)
                .map(|g| g.queue_type)
                .unwrap_or_default();
            shared.topology.declare_group(channel, group, queue_type).await?;
            shared
                .topology
                .declare_delay(channel, group, shared.hold_delay.as_millis() as u64)
                .await?;
        }
        channel
            .basic_qos(self.concurrency as u16, BasicQosOptions::default())
            .await?;
        Ok(())
    }

    /// Starts one consumer per group queue.
    async fn start_consumers(&self, channel: &Channel) -> Result<Vec<Consumer>, WorkerError> {
        let mut consumers = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let tag: ShortString = format!("{}/{group}", self.shared.worker_id).into();
            let consumer = channel
                .basic_consume(
                    self.shared.topology.group_queue(group).into(),
                    tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(consumer);
        }
        Ok(consumers)
    }

    /// Jobs ready (not delivered) in this worker's group queues.
    async fn ready_messages(&self, channel: &Channel) -> Result<u64, WorkerError> {
        let mut ready = 0;
        for group in &self.groups {
            ready += queue_depth(channel, &self.shared.topology.group_queue(group)).await?;
        }
        Ok(ready)
    }
}

/// The deliveries of all consumers as one stream. A consumer the broker cancels (its
/// queue deleted, a node lost) ends its stream with an error: that ends the session, so
/// the worker reconnects and consumes again.
fn deliveries(
    consumers: Vec<Consumer>,
) -> futures::stream::SelectAll<BoxStream<'static, Result<Delivery, WorkerError>>> {
    futures::stream::select_all(consumers.into_iter().map(|consumer| {
        let queue = consumer.queue().to_string();
        consumer
            .map(|delivery| delivery.map_err(WorkerError::from))
            .chain(futures::stream::once(async move {
                Err(WorkerError::Stalled(format!(
                    "the broker canceled the consumer of {queue}"
                )))
            }))
            .boxed()
    }))
}
