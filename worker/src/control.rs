//! The control consumer: each broker session reads `NS.control` through an exclusive,
//! server-named queue and stops the running jobs named by `cancel` broadcasts.

use crate::consumer::Shared;
use crate::error::WorkerError;
use futures::StreamExt;
use jobfleet_common::control::{self, ControlMessage};
use jobfleet_common::lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use jobfleet_common::lapin::types::FieldTable;
use jobfleet_common::lapin::{Channel, Consumer};
use jobfleet_common::topology;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// How many cancels of jobs not (yet) running here are remembered.
const REMEMBERED_CANCELS: usize = 256;
/// How long such a cancel is remembered: long enough to cover the gap between a job's
/// claim and its sandbox start, short enough that a recycled id is not hit.
const REMEMBER_FOR: Duration = Duration::from_secs(30);

/// Cancels that named a job not running here when they arrived. A cancel can overtake
/// the job it names: the master sees `started` as soon as the claim is recorded, before
/// the worker has registered the job's stop token.
#[derive(Debug, Default)]
pub(crate) struct RecentCancels {
    ids: VecDeque<(String, Instant)>,
}

impl RecentCancels {
    /// Remembers a cancel of `id`, forgetting the oldest beyond the bound.
    pub(crate) fn remember(&mut self, id: &str) {
        self.remember_at(id, Instant::now());
    }

    fn remember_at(&mut self, id: &str, now: Instant) {
        if self.ids.len() == REMEMBERED_CANCELS {
            self.ids.pop_front();
        }
        self.ids.push_back((id.to_string(), now));
    }

    /// Whether `id` was canceled moments ago; the memory of it is used up.
    pub(crate) fn take(&mut self, id: &str) -> bool {
        self.take_at(id, Instant::now())
    }

    fn take_at(&mut self, id: &str, now: Instant) -> bool {
        while self
            .ids
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > REMEMBER_FOR)
        {
            self.ids.pop_front();
        }
        match self.ids.iter().position(|(known, _)| known == id) {
            Some(index) => {
                self.ids.remove(index);
                true
            }
            None => false,
        }
    }
}

/// The session's control consumer on its own task, so that cancels keep working while the
/// worker drains. Dropping it stops the task (and with it the consumer).
pub(crate) struct ControlTask {
    stop: CancellationToken,
    /// Ends with an error when the consumer fails or the broker cancels it.
    pub(crate) handle: JoinHandle<Result<(), WorkerError>>,
}

impl Drop for ControlTask {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Declares this session's control queue on `channel`, binds it to `NS.control` and
/// starts consuming it.
pub(crate) async fn start(shared: &Arc<Shared>, channel: &Channel) -> Result<ControlTask, WorkerError> {
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare("".into(), options, FieldTable::default())
        .await?;
    let exchange = shared.topology.control_exchange();
    topology::bind(channel, queue.name().as_str(), &exchange, "").await?;
    let tag = format!("{}/control", shared.worker_id);
    // Cancels are idempotent and only matter while the job runs: no acks needed.
    let consume = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..Default::default()
    };
    let consumer = channel
        .basic_consume(queue.name().clone(), tag.into(), consume, FieldTable::default())
        .await?;
    let stop = CancellationToken::new();
    let span = tracing::info_span!("control", queue = %queue.name());
    let handle = tokio::spawn(listen(shared.clone(), consumer, stop.clone()).instrument(span));
    Ok(ControlTask { stop, handle })
}

async fn listen(
    shared: Arc<Shared>,
    mut consumer: Consumer,
    stop: CancellationToken,
) -> Result<(), WorkerError> {
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(WorkerError::Stalled(
                    "the broker canceled the control consumer".into(),
                ))
            }
        };
        let content_type = delivery.properties.content_type().as_ref().map(|c| c.as_str());
        match control::decode(content_type, &delivery.data) {
            Ok(Some(ControlMessage::Cancel { id })) => {
                if shared.cancel_running(&id) {
                    info!(job_id = %id, "cancel requested: stopping the job");
                } else {
                    debug!(job_id = %id, "cancel of a job not running here");
                }
            }
            Ok(None) => debug!("control message of an unknown type ignored"),
            Err(e) => warn!(reason = %e.reason, "undecodable control message ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_cancels_are_bounded_and_used_once() {
        let mut recent = RecentCancels::default();
        recent.remember("a");
        assert!(recent.take("a"));
        assert!(!recent.take("a"), "used up");
        for i in 0..REMEMBERED_CANCELS + 10 {
            recent.remember(&format!("j{i}"));
        }
        assert_eq!(recent.ids.len(), REMEMBERED_CANCELS);
        assert!(!recent.take("j0"), "the oldest were forgotten");
        assert!(recent.take(&format!("j{}", REMEMBERED_CANCELS + 9)));
    }

    #[test]
    fn recent_cancels_expire() {
        let mut recent = RecentCancels::default();
        let then = Instant::now();
        recent.remember_at("old", then);
        let later = then + REMEMBER_FOR + Duration::from_secs(1);
        recent.remember_at("new", later);
        assert!(!recent.take_at("old", later));
        assert!(recent.take_at("new", later));
    }
}
