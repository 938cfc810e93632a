//! Synchronous submits wait for their job to end without polling: one result subscriber
//! per master wakes the requests waiting on each id.

use jobfleet_common::client::ResultSubscriber;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Requests waiting for jobs to end, by job id.
#[derive(Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    /// Registers interest in `id`; the receiver fires when a result for it arrives.
    pub fn register(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("waiters")
            .entry(id.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Drops the interest of requests that stopped waiting.
    pub fn forget_closed(&self, id: &str) {
        let mut waiting = self.waiting.lock().expect("waiters");
        if let Some(senders) = waiting.get_mut(id) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                waiting.remove(id);
            }
        }
    }

    /// Wakes everyone waiting for `id`.
    pub fn notify(&self, id: &str) {
        let senders = self.waiting.lock().expect("waiters").remove(id);
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    /// Feeds the waiters from the result topic until `shutdown`.
    pub async fn listen(&self, mut subscriber: ResultSubscriber, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = subscriber.next() => match result {
                    Ok(result) => self.notify(&result.id),
                    Err(e) => warn!(error = %e, "undecodable result on the topic"),
                },
            }
        }
    }
}
