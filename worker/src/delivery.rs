//! What the worker does with a delivery on the broker: acknowledge it, hand it back, copy
//! it elsewhere (parked in a delay queue, dead-lettered), and publish results until they
//! are confirmed.

use crate::consumer::{Handled, Shared, Unrecorded};
use jobfleet_common::client::{self, ClientError};
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use jobfleet_common::lapin::types::AMQPValue;
use jobfleet_common::message::{JobMessage, ResultMessage};
use jobfleet_common::publish::{self, confirmed};
use jobfleet_common::topology::{HOLD_HEADER, REASON_HEADER};
use jobfleet_common::trace::TraceParent;
use tracing::{debug, warn};

impl Shared {
    /// Returns a delivery to its queue (nack + requeue).
    pub(crate) async fn hand_back(&self, delivery: &Delivery) -> Handled {
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        match delivery.nack(requeue).await {
            Ok(_) => Handled::HandedBack,
            Err(_) => Handled::LeftUnacked,
        }
    }

    /// Parks a copy of a job owned by another live worker in the group's delay queue; it
    /// comes back after the hold delay and is looked at again.
    pub(crate) async fn hold(&self, delivery: &Delivery, job: &JobMessage) -> Handled {
        let queue = self
            .topology
            .delay_queue(&job.group, self.hold_delay.as_millis() as u64);
        debug!("another worker owns the job; parking this copy");
        match self
            .forward(delivery, "", &queue, (HOLD_HEADER, self.worker_id.clone()))
            .await
        {
            Ok(()) => {
                ack(delivery).await;
                Handled::Held
            }
            Err(e) => {
                warn!(error = %e, "could not park a copy");
                self.hand_back(delivery).await
            }
        }
    }

    /// Disposes of a delivery whose job could not be recorded: handed back while stopping,
    /// dead-lettered with the reason when the coordinator refused it.
    pub(crate) async fn unrecorded(&self, delivery: &Delivery, why: Unrecorded) -> Handled {
        let Unrecorded::Refused(error) = why else {
            return self.hand_back(delivery).await;
        };
        match self
            .dead_letter(delivery, format!("coordinator error: {error}"))
            .await
        {
            Ok(()) => {
                ack(delivery).await;
                Handled::Dropped
            }
            Err(_) => self.hand_back(delivery).await,
        }
    }

    /// Copies a delivery to the dead-letter exchange with its `reason`.
    pub(crate) async fn dead_letter(&self, delivery: &Delivery, reason: String) -> Result<(), ClientError> {
        self.forward(
            delivery,
            &self.topology.dead_letters(),
            "",
            (REASON_HEADER, reason),
        )
        .await
    }

    /// Copies a delivery elsewhere with an extra header and waits for the confirm; the
    /// original stays unacknowledged.
    pub(crate) async fn forward(
        &self,
        delivery: &Delivery,
        exchange: &str,
        routing_key: &str,
        header: (&str, String),
    ) -> Result<(), ClientError> {
        // The original properties go along: a foreign client's content type stays.
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(header.0.into(), AMQPValue::LongString(header.1.into()));
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let channel = self.results.get().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?;
        confirmed(confirm, "", routing_key).await
    }

    /// Publishes a result, then acknowledges its delivery; hands the delivery back when
    /// forced to stop before the result is confirmed.
    pub(crate) async fn publish_then_ack(
        &self,
        delivery: &Delivery,
        result: &ResultMessage,
        handled: Handled,
        trace: Option<&TraceParent>,
    ) -> Handled {
        if self.publish_result_until_done(result, trace).await {
            ack(delivery).await;
            handled
        } else {
            // Forced to stop first: the redelivered message publishes the recorded result.
            self.hand_back(delivery).await
        }
    }

    /// Publishes a result, retrying through broker trouble, until it is confirmed (`true`)
    /// or the worker is forced to stop (`false`). While this worker lives, parked copies of
    /// the job rely on it to publish.
    pub(crate) async fn publish_result_until_done(
        &self,
        result: &ResultMessage,
        trace: Option<&TraceParent>,
    ) -> bool {
        let mut attempt = 0;
        loop {
            match self.publish_result(result, trace).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(error = %e, "result publish failed; retrying");
                    self.results.invalidate().await;
                    tokio::select! {
                        _ = tokio::time::sleep(client::backoff(attempt)) => {}
                        _ = self.force_stop.cancelled() => return false,
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Publishes a result message, with the job's `traceparent` when it has one, and waits
    /// for its confirm.
    async fn publish_result(
        &self,
        result: &ResultMessage,
        trace: Option<&TraceParent>,
    ) -> Result<(), ClientError> {
        let channel = self.results.get().await?;
        let traceparent = trace.map(TraceParent::header);
        publish::publish_result(&channel, &self.topology, result, traceparent.as_deref()).await
    }

    /// The name of the delay queue of `group` for `delay_ms`, declared once per worker.
    pub(crate) async fn delay_queue(&self, group: &str, delay_ms: u64) -> Result<String, ClientError> {
        let name = self.topology.delay_queue(group, delay_ms);
        if !self.delay_queues.lock().expect("delay queues").contains(&name) {
            let channel = self.results.get().await?;
            self.topology.declare_delay(&channel, group, delay_ms).await?;
            self.delay_queues
                .lock()
                .expect("delay queues")
                .insert(name.clone());
        }
        Ok(name)
    }
}

/// Acknowledges a delivery. On a broken channel this fails and the broker redelivers the
/// message, which then meets a terminal record and is dropped or republished.
pub(crate) async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "ack failed; the message will be redelivered");
    }
}
