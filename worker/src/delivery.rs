//! What the worker does with a delivery on the broker: acknowledge it, hand it back, and
//! publish results until they are confirmed (copies placed elsewhere: `copy.rs`).

use crate::consumer::{Handled, Shared, Unrecorded};
use jobfleet_common::client::{self, ClientError};
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::{BasicAckOptions, BasicNackOptions};
use jobfleet_common::message::ResultMessage;
use jobfleet_common::publish;
use jobfleet_common::trace::TraceParent;
use tracing::warn;

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

    /// Disposes of a delivery whose job could not be recorded: handed back while stopping,
    /// dead-lettered with the reason when the coordinator refused it.
    pub(crate) async fn unrecorded(&self, delivery: &Delivery, why: Unrecorded) -> Handled {
        let Unrecorded::Refused(error) = why else {
            return self.hand_back(delivery).await;
        };
        let placed = self
            .dead_letter(delivery, format!("coordinator error: {error}"))
            .await;
        self.settle_copied(delivery, placed, Handled::Dropped).await
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
}

/// Acknowledges a delivery. On a broken channel this fails and the broker redelivers the
/// message, which then meets a terminal record and is dropped or republished.
pub(crate) async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "ack failed; the message will be redelivered");
    }
}
