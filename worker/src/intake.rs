//! The intake of one broker session: the consumers of the worker's group queues as one
//! stream of deliveries, paused (canceled on the broker) while the worker has no free job
//! slot, and consuming again once one frees. Prefetch is per consumer, and quorum queues
//! (and RabbitMQ 4.3) refuse a prefetch shared by a channel's consumers, so this is what
//! keeps deliveries from waiting for a slot the other groups' jobs hold.

use crate::error::WorkerError;
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::{BasicCancelOptions, BasicConsumeOptions};
use jobfleet_common::lapin::types::{FieldTable, ShortString};
use jobfleet_common::lapin::Channel;
use std::collections::HashSet;

/// What a consumer's stream yields.
enum Event {
    /// A job delivered (boxed: a delivery is large next to the other events).
    Delivery(Box<Delivery>),
    /// The consumer failed (a broken channel or connection).
    Failed(WorkerError),
    /// The consumer's stream ended: canceled by this worker, or by the broker.
    Ended { tag: ShortString, queue: String },
}

/// The group consumers of one session.
pub(crate) struct Intake {
    channel: Channel,
    /// `(group, queue)` of each group the worker consumes.
    groups: Vec<(String, String)>,
    /// The worker id, the first part of every consumer tag.
    worker_id: String,
    /// How many times the consumers were started in this session.
    generation: u32,
    /// Tags of the consumers the broker delivers to now; empty while paused.
    active: Vec<ShortString>,
    /// Tags this worker canceled whose streams may still yield deliveries sent before the
    /// cancel.
    canceled: HashSet<ShortString>,
    events: SelectAll<BoxStream<'static, Event>>,
}

impl Intake {
    /// Starts one consumer per group queue on `channel`. `groups` pairs each group with its
    /// queue.
    pub(crate) async fn start(
        channel: Channel,
        groups: Vec<(String, String)>,
        worker_id: &str,
    ) -> Result<Intake, WorkerError> {
        let mut intake = Intake {
            channel,
            groups,
            worker_id: worker_id.to_string(),
            generation: 0,
            active: Vec::new(),
            canceled: HashSet::new(),
            events: SelectAll::new(),
        };
        intake.consume().await?;
        Ok(intake)
    }

    /// Whether the consumers are paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.active.is_empty()
    }

    /// Cancels every consumer on the broker: nothing more is delivered to this session
    /// until [`Intake::resume`]. Deliveries sent before still come out of [`Intake::next`].
    pub(crate) async fn pause(&mut self) -> Result<(), WorkerError> {
        for tag in std::mem::take(&mut self.active) {
            self.canceled.insert(tag.clone());
            self.channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Consumes the group queues again after a pause.
    pub(crate) async fn resume(&mut self) -> Result<(), WorkerError> {
        if self.is_paused() {
            self.consume().await?;
        }
        Ok(())
    }

    /// The next delivery. An error when a consumer failed or the broker canceled one (its
    /// queue deleted, a node lost): that ends the session, so the worker reconnects and
    /// consumes again. Pending while nothing is consumed.
    pub(crate) async fn next(&mut self) -> Result<Delivery, WorkerError> {
        loop {
            let Some(event) = self.events.next().await else {
                // Paused and every canceled stream drained: only a resume brings more.
                return std::future::pending().await;
            };
            match event {
                Event::Delivery(delivery) => return Ok(*delivery),
                Event::Failed(e) => return Err(e),
                Event::Ended { tag, queue } => {
                    if !self.canceled.remove(&tag) {
                        return Err(WorkerError::Stalled(format!(
                            "the broker canceled the consumer of {queue}"
                        )));
                    }
                }
            }
        }
    }

    /// Starts a consumer on every group queue.
    async fn consume(&mut self) -> Result<(), WorkerError> {
        self.generation += 1;
        for (group, queue) in &self.groups {
            let tag: ShortString = match self.generation {
                1 => format!("{}/{group}", self.worker_id),
                n => format!("{}/{group}/{n}", self.worker_id),
            }
            .into();
            let consumer = self
                .channel
                .basic_consume(
                    queue.clone().into(),
                    tag.clone(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            self.active.push(tag.clone());
            let ended = Event::Ended {
                tag,
                queue: queue.clone(),
            };
            let events = consumer
                .map(|delivery| match delivery {
                    Ok(delivery) => Event::Delivery(Box::new(delivery)),
                    Err(e) => Event::Failed(e.into()),
                })
                .chain(futures::stream::once(async move { ended }))
                .boxed();
            self.events.push(events);
        }
        Ok(())
    }
}
