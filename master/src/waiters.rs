//! Synchronous submits wait for their job to end without polling: a result feed per master
//! wakes the requests waiting on each id. Each request's registration is a guard that
//! leaves the registry when the request ends, whichever way it ends.
//!
//! The master subscribes to the result topic only while requests wait: the first waiter
//! opens the feed (an exclusive queue bound to every result), which closes itself once no
//! request has waited for [`FEED_IDLE`]. A master serving submits that nobody waits for
//! costs the broker no second delivery per job. A waiter reads the job's record only after
//! the feed is subscribed, so a result published before that is seen in the record.

use jobfleet_common::client::ResultSubscriber;
use jobfleet_common::tls::Endpoint;
use jobfleet_common::topology::Topology;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long the result feed stays subscribed with nobody waiting.
pub const FEED_IDLE: Duration = Duration::from_secs(30);
/// How often an idle feed looks whether it may close.
const FEED_CHECK: Duration = Duration::from_secs(1);

/// Requests waiting for jobs to end, and the result feed that wakes them.
pub struct Waiters {
    registry: Arc<Registry>,
    /// [`FEED_IDLE`], unless set otherwise (ms).
    feed_idle_ms: AtomicU64,
    /// `true` while a feed task runs; it only changes under this lock.
    feed: Arc<tokio::sync::Mutex<bool>>,
    source: FeedSource,
}

/// Where the feed subscribes, and when it must stop.
struct FeedSource {
    endpoint: Endpoint,
    topology: Topology,
    shutdown: CancellationToken,
}

/// Requests waiting for jobs to end, by job id, then by registration.
#[derive(Default)]
struct Registry {
    waiting: Mutex<HashMap<String, HashMap<u64, oneshot::Sender<()>>>>,
    next: AtomicU64,
    /// Told when the last registration leaves, so an idle feed need not wait for a result
    /// to notice.
    emptied: tokio::sync::Notify,
}

/// One request's interest in a job's end; dropping it withdraws the interest.
pub struct Waiter<'a> {
    registry: &'a Registry,
    id: String,
    slot: u64,
    woken: oneshot::Receiver<()>,
}

impl Waiters {
    /// The waiters of a master whose feed subscribes to `topology`'s results on the broker
    /// of `endpoint` when needed, until `shutdown`. Nothing connects here.
    pub fn new(endpoint: Endpoint, topology: Topology, shutdown: CancellationToken) -> Waiters {
        Waiters {
            registry: Arc::default(),
            feed_idle_ms: AtomicU64::new(FEED_IDLE.as_millis() as u64),
            feed: Arc::default(),
            source: FeedSource {
                endpoint,
                topology,
                shutdown,
            },
        }
    }

    /// Registers interest in `id` until the returned guard is dropped.
    pub fn register(&self, id: &str) -> Waiter<'_> {
        self.registry.register(id)
    }

    /// How long the feed stays subscribed with nobody waiting, from its next opening on.
    pub fn set_feed_idle(&self, idle: Duration) {
        self.feed_idle_ms
            .store(idle.as_millis() as u64, Ordering::Relaxed);
    }

    /// How many registrations are held now (requests waiting for a job to end).
    pub fn count(&self) -> usize {
        self.registry.count()
    }

    /// Wakes everyone waiting for `id`.
    pub fn notify(&self, id: &str) {
        self.registry.notify(id)
    }

    /// Whether the result feed is subscribed now.
    pub async fn feeding(&self) -> bool {
        *self.feed.lock().await
    }

    /// Makes sure the result feed is subscribed (results published from now on wake their
    /// waiters). When the broker cannot be reached the waits end at their timeout instead.
    pub async fn subscribed(&self) {
        let mut running = self.feed.lock().await;
        if *running {
            return;
        }
        let source = &self.source;
        match ResultSubscriber::connect(source.endpoint.clone(), source.topology.clone(), &["#"]).await {
            Ok(subscriber) => {
                *running = true;
                let (registry, feed) = (self.registry.clone(), self.feed.clone());
                let shutdown = source.shutdown.clone();
                let idle = Duration::from_millis(self.feed_idle_ms.load(Ordering::Relaxed));
                tokio::spawn(run_feed(subscriber, Feed { registry, feed, idle }, shutdown));
                debug!("result feed subscribed");
            }
            Err(e) => warn!(error = %e, "cannot subscribe to results; waits end at their timeout"),
        }
    }
}

/// What a feed task serves: the registry it wakes, its running flag, its idle time.
struct Feed {
    registry: Arc<Registry>,
    feed: Arc<tokio::sync::Mutex<bool>>,
    idle: Duration,
}

/// Feeds the waiters from the result topic until nobody waited for the feed's idle time,
/// or `shutdown`.
async fn run_feed(mut subscriber: ResultSubscriber, served: Feed, shutdown: CancellationToken) {
    let Feed { registry, feed, idle } = served;
    let mut idle_since = Instant::now();
    loop {
        let next = if registry.count() > 0 {
            idle_since = Instant::now();
            // Waiters: the subscriber's own checks keep it alive however long it waits.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = registry.emptied.notified() => None,
                next = subscriber.next() => Some(next),
            }
        } else if idle_since.elapsed() >= idle {
            // Closing is decided under the feed's lock, so a new waiter either sees this
            // feed still counted as running (and is counted here) or opens a new one.
            let mut running = feed.lock().await;
            if registry.count() == 0 {
                *running = false;
                drop(running);
                debug!("result feed idle; unsubscribing");
                subscriber.close().await;
                return;
            }
            continue;
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                next = tokio::time::timeout(FEED_CHECK, subscriber.next()) => next.ok(),
            }
        };
        match next {
            Some(Ok(result)) => registry.notify(&result.id),
            Some(Err(e)) => warn!(error = %e, "undecodable result on the topic"),
            None => {}
        }
    }
    *feed.lock().await = false;
    subscriber.close().await;
}

impl Registry {
    fn register(&self, id: &str) -> Waiter<'_> {
        let (tx, woken) = oneshot::channel();
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .expect("waiters")
            .entry(id.to_string())
            .or_default()
            .insert(slot, tx);
        Waiter {
            registry: self,
            id: id.to_string(),
            slot,
            woken,
        }
    }

    fn count(&self) -> usize {
        self.waiting
            .lock()
            .expect("waiters")
            .values()
            .map(HashMap::len)
            .sum()
    }

    fn notify(&self, id: &str) {
        let senders = {
            let mut waiting = self.waiting.lock().expect("waiters");
            let senders = waiting.remove(id);
            self.note_if_empty(&waiting);
            senders
        };
        for tx in senders.into_iter().flat_map(HashMap::into_values) {
            let _ = tx.send(());
        }
    }

    fn note_if_empty(&self, waiting: &HashMap<String, HashMap<u64, oneshot::Sender<()>>>) {
        if waiting.is_empty() {
            self.emptied.notify_one();
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
        let mut waiting = self.registry.waiting.lock().expect("waiters");
        if let Some(slots) = waiting.get_mut(&self.id) {
            slots.remove(&self.slot);
            if slots.is_empty() {
                waiting.remove(&self.id);
            }
        }
        self.registry.note_if_empty(&waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_leave_with_their_guards_woken_or_not() {
        let waiters = Waiters::new(
            "amqp://127.0.0.1:1".into(),
            Topology::new("unit"),
            CancellationToken::new(),
        );
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
