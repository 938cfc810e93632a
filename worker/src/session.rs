//! One broker session: declare the topology, consume the group queues and the control
//! queue, and hand each delivery to a task until shutdown, a broken connection or a stall.
//! The group consumers pause while the worker has no free job slot (see `intake.rs`).

use crate::control::{self, ControlTask};
use crate::error::WorkerError;
use crate::intake::Intake;
use crate::watchdog::{self, StallWatchdog};
use crate::Worker;
use jobfleet_common::client;
use jobfleet_common::lapin::options::BasicQosOptions;
use jobfleet_common::lapin::Channel;
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
    /// consumers canceled), an error when the connection broke, a consumer failed, or the
    /// session stalled (see `watchdog.rs`). Sets `delivered` once a delivery arrives.
    pub(crate) async fn consume(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        delivered: &mut bool,
    ) -> Result<Session, WorkerError> {
        let (channel, mut control, mut intake) = self.start_session().await?;
        self.shared.paused.send_replace(false);
        let mut watchdog = StallWatchdog::new(self.stall_check);
        info!("consuming");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = intake.pause().await;
                    self.shared.paused.send_replace(true);
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
                    let idle = watchdog.idle() && !intake.is_paused() && tracker.len() < self.concurrency;
                    let waiting = if idle { self.ready_messages(&channel).await? } else { 0 };
                    watchdog.check(waiting)?;
                }
                _ = self.shared.slot_wait_over.notified(), if !intake.is_paused() => {
                    info!("no free job slot: pausing the group consumers");
                    intake.pause().await?;
                    self.shared.paused.send_replace(true);
                }
                slot = self.shared.slots.acquire(), if intake.is_paused() => {
                    drop(slot);
                    info!("a job slot is free: consuming again");
                    intake.resume().await?;
                    self.shared.paused.send_replace(false);
                    watchdog.delivered();
                }
                delivery = intake.next() => {
                    let delivery = delivery?;
                    watchdog.delivered();
                    *delivered = true;
                    let shared = self.shared.clone();
                    tracker.spawn(async move { shared.handle(delivery).await }.in_current_span());
                }
            }
        }
    }

    /// Starts a session within the setup bound: one that takes longer counts as a stall,
    /// and a refusal of the topology is for good (the same error later, from a channel the
    /// broker closes for consumer_timeout, ends only the session).
    async fn start_session(&self) -> Result<(Channel, ControlTask, Intake), WorkerError> {
        let bound = watchdog::setup_bound(self.stall_check);
        match tokio::time::timeout(bound, self.open_session()).await {
            Ok(Err(WorkerError::Amqp(e))) if client::is_refusal(&e) => Err(WorkerError::Refused(e)),
            Ok(opened) => opened,
            Err(_) => Err(WorkerError::Stalled(format!(
                "the broker did not set up a session within {bound:?}"
            ))),
        }
    }

    /// Opens the session's channel, declares, and starts the control and group consumers.
    async fn open_session(&self) -> Result<(Channel, ControlTask, Intake), WorkerError> {
        let channel = client::open_channel(&self.pool, false).await?;
        self.declare(&channel).await?;
        let control = control::start(&self.shared, &channel).await?;
        let groups = self
            .groups
            .iter()
            .map(|group| (group.clone(), self.shared.topology.group_queue(group)))
            .collect();
        let intake = Intake::start(channel.clone(), groups, &self.shared.worker_id).await?;
        Ok((channel, control, intake))
    }

    /// Declares the base topology, each group's queue (a priority queue with the group's
    /// `max_priority`) and hold-delay queue (both of the group's queue type), and the
    /// prefetch of each consumer.
    async fn declare(&self, channel: &Channel) -> Result<(), WorkerError> {
        let shared = &self.shared;
        let dead_letters = shared.config.dead_letters_queue_type();
        shared.topology.declare_base(channel, dead_letters).await?;
        let hold_ms = shared.hold_delay.as_millis() as u64;
        for group in &self.groups {
            let queue_type = shared.queue_type(group);
            let max_priority = shared.config.group(group).and_then(|g| g.max_priority);
            let declared = shared
                .topology
                .declare_group(channel, group, queue_type, max_priority);
            declared.await?;
            let hold_queue = shared
                .topology
                .declare_delay(channel, group, hold_ms, queue_type)
                .await?;
            shared
                .delay_queues
                .lock()
                .expect("delay queues")
                .insert(hold_queue);
        }
        channel
            .basic_qos(self.concurrency as u16, BasicQosOptions::default())
            .await?;
        Ok(())
    }

    /// Jobs ready (not delivered) in this worker's group queues. A broker that does not
    /// answer within the stall check interval counts as a stall: a queue that cannot
    /// answer cannot deliver either.
    async fn ready_messages(&self, channel: &Channel) -> Result<u64, WorkerError> {
        let count = async {
            let mut ready = 0;
            for group in &self.groups {
                ready += queue_depth(channel, &self.shared.topology.group_queue(group)).await?;
            }
            Ok::<_, WorkerError>(ready)
        };
        match tokio::time::timeout(self.stall_check, count).await {
            Ok(ready) => ready,
            Err(_) => Err(WorkerError::Stalled(format!(
                "the broker did not answer a queue check within {:?}",
                self.stall_check
            ))),
        }
    }
}
