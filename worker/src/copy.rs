//! Copies of a delivery placed elsewhere on the broker: parked in a delay queue of its
//! group (a copy held for another worker, a long job's stand-in, a retry waiting out its
//! back-off) or dead-lettered with a reason. Every copy is published `mandatory` and
//! confirmed: a copy the broker returns (its queue is gone) is an error, so the original
//! delivery is never acknowledged in favour of a copy that does not exist.

use crate::consumer::{Handled, Shared};
use crate::delivery::ack;
use crate::error::CopyError;
use jobfleet_common::config::QueueType;
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::BasicPublishOptions;
use jobfleet_common::lapin::types::AMQPValue;
use jobfleet_common::lapin::Confirmation;
use jobfleet_common::message::JobMessage;
use jobfleet_common::topology::{HOLD_HEADER, REASON_HEADER};
use tracing::{debug, warn};

/// Where a copy goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The delay queue of `group` for `delay_ms`: the copy comes back to the group after it.
    Delay { group: &'a str, delay_ms: u64 },
    /// `NS.dead`, for good.
    DeadLetters,
}

impl Shared {
    /// Parks a copy of a job owned by another live worker in the group's delay queue, then
    /// acknowledges the delivery; it comes back after the hold delay and is looked at
    /// again. Handed back when the copy cannot be placed.
    pub(crate) async fn hold(&self, delivery: &Delivery, job: &JobMessage) -> Handled {
        debug!("another worker owns the job; parking this copy");
        let placed = self.park_hold_copy(delivery, job).await;
        self.settle_copied(delivery, placed, Handled::Held).await
    }

    /// Acknowledges a delivery whose copy was `placed` and answers `handled`; hands it back
    /// when the copy failed.
    pub(crate) async fn settle_copied(
        &self,
        delivery: &Delivery,
        placed: Result<(), CopyError>,
        handled: Handled,
    ) -> Handled {
        match placed {
            Ok(()) => {
                ack(delivery).await;
                handled
            }
            Err(e) => {
                warn!(error = %e, "could not place a copy; handing the delivery back");
                self.hand_back(delivery).await
            }
        }
    }

    /// Places a held copy of `job` (header `x-jobfleet-hold`) in the group's hold-delay
    /// queue. The delivery itself is left as it is.
    pub(crate) async fn park_hold_copy(
        &self,
        delivery: &Delivery,
        job: &JobMessage,
    ) -> Result<(), CopyError> {
        let target = Target::Delay {
            group: &job.group,
            delay_ms: self.hold_delay.as_millis() as u64,
        };
        self.copy(delivery, target, (HOLD_HEADER, self.worker_id.clone()))
            .await
    }

    /// Copies a delivery to the dead-letter exchange with its `reason`.
    pub(crate) async fn dead_letter(&self, delivery: &Delivery, reason: String) -> Result<(), CopyError> {
        self.copy(delivery, Target::DeadLetters, (REASON_HEADER, reason))
            .await
    }

    /// Copies a delivery to `target` with an extra header and waits for the confirm. A copy
    /// the broker returns (its queue was deleted) leads to declaring the target again and
    /// one more try. The original stays unacknowledged either way.
    pub(crate) async fn copy(
        &self,
        delivery: &Delivery,
        target: Target<'_>,
        header: (&str, String),
    ) -> Result<(), CopyError> {
        let (exchange, routing_key) = self.route(target).await?;
        match self
            .forward(delivery, &exchange, &routing_key, header.clone())
            .await
        {
            Err(CopyError::Returned(_)) => {
                warn!(%exchange, %routing_key, "a copy came back unroutable; declaring its queue again");
                self.redeclare(target).await?;
                self.forward(delivery, &exchange, &routing_key, header).await
            }
            done => done,
        }
    }

    /// The exchange and routing key of `target`, its queue declared (once per worker for a
    /// delay queue).
    async fn route(&self, target: Target<'_>) -> Result<(String, String), CopyError> {
        match target {
            Target::Delay { group, delay_ms } => {
                let queue = self.topology.delay_queue(group, delay_ms);
                if !self.delay_queues.lock().expect("delay queues").contains(&queue) {
                    self.redeclare(target).await?;
                }
                Ok((String::new(), queue))
            }
            Target::DeadLetters => Ok((self.topology.dead_letters(), String::new())),
        }
    }

    /// Declares the queue of `target` (for the dead letters: the base topology).
    async fn redeclare(&self, target: Target<'_>) -> Result<(), CopyError> {
        let channel = self.results.get().await?;
        match target {
            Target::Delay { group, delay_ms } => {
                let queue_type = self.queue_type(group);
                let declared = self.topology.declare_delay(&channel, group, delay_ms, queue_type);
                let queue = declared.await?;
                self.delay_queues.lock().expect("delay queues").insert(queue);
            }
            Target::DeadLetters => {
                let dead_letters = self.config.dead_letters_queue_type();
                self.topology.declare_base(&channel, dead_letters).await?
            }
        }
        Ok(())
    }

    /// Publishes a copy of `delivery` (`mandatory`, persistent, the original properties and
    /// an extra header) and waits for its confirm.
    async fn forward(
        &self,
        delivery: &Delivery,
        exchange: &str,
        routing_key: &str,
        header: (&str, String),
    ) -> Result<(), CopyError> {
        // The original properties go along: a foreign client's content type stays.
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(header.0.into(), AMQPValue::LongString(header.1.into()));
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let channel = self.results.get().await?;
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                mandatory,
                &delivery.data,
                properties,
            )
            .await?;
        let target = || format!("exchange {exchange:?} with key {routing_key:?}");
        match confirm.await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Err(CopyError::Returned(target())),
            Confirmation::Nack(None) => Err(CopyError::Nacked(target())),
        }
    }

    /// The queue type of `group`'s queues (group and delay queues alike).
    pub(crate) fn queue_type(&self, group: &str) -> QueueType {
        self.config.group(group).map(|g| g.queue_type).unwrap_or_default()
    }
}
