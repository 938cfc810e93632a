//! Synchronous submits wait for their job to end without polling: one result subscriber
//! per master wakes the requests waiting on each id. Each request's registration is a
//! guard that leaves the registry when the request ends, whichever way it ends.

use jobfleet_common::client::ResultSubscriber;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Requests waiting for jobs to end, by job id, then by registration.
#[derive(Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, HashMap<u64, oneshot::Sender<()>>>>,
    next: AtomicU64,
}

/// One request's interest in a job's end; dropping it withdraws the interest.
pub struct Waiter<'a> {
    waiters: &'a Waiters,
    id: String,
    slot: u64,
    woken: oneshot::Receiver<()>,
}

impl Waiters {
    /// Registers interest in `id` until the returned guard is dropped.
    pub fn register(&self, id: &str) -> Waiter<'_> {
        let (tx, woken) = oneshot::channel();
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .expect("waiters")
            .entry(id.to_string())
            .or_default()
            .insert(slot, tx);
        Waiter {
            waiters: self,
            id: id.to_string(),
            slot,
            woken,
        }
    }

    /// How many registrations are held now (requests waiting for a job to end).
    pub fn count(&self) -> usize {
        self.waiting
            .lock()
            .expect("waiters")
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Wakes everyone waiting for `id`.
    pub fn notify(&self, id: &str) {
        let senders = self.waiting.lock().expect("waiters").remove(id);
        for tx in senders.into_iter().flat_map(HashMap::into_values) {
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

impl Waiter<'_> {
    /// Resolves when a result for the job arrives.
    pub async fn woken(&mut self) {
        let _ = (&mut self.woken).await;
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut waiting = self.waiters.waiting.lock().expect("waiters");
        if let Some(slots) = waiting.get_mut(&self.id) {
            slots.remove(&self.slot);
            if slots.is_empty() {
                waiting.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_leave_with_their_guards_woken_or_not() {
        let waiters = Waiters::default();
        let first = waiters.register("a");
        let mut second = waiters.register("a");
        let other = waiters.register("b");
        assert_eq!(waiters.count(), 3);
        drop(first);
        assert_eq!(waiters.count(), 2);
        waiters.notify("a");
        second.woken().await;
        assert_eq!(waiters.count(), 1);
        drop(second);
        drop(other);
        assert_eq!(waiters.count(), 0);
    }
}
