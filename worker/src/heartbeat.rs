//! The worker's record in Redis, refreshed on an interval. While it lives, no other worker
//! takes over this worker's started jobs; the master lists workers from it.

use crate::consumer::Shared;
use jobfleet_common::client;
use jobfleet_common::coordinator::CoordinatorError;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The worker's record: what it says of the worker and how it is kept alive.
pub(crate) struct Heartbeat {
    pub(crate) shared: Arc<Shared>,
    pub(crate) groups: Vec<String>,
    pub(crate) concurrency: usize,
    /// How often the record is refreshed.
    pub(crate) interval: Duration,
    /// How long the record lives without a refresh.
    pub(crate) ttl: Duration,
}

impl Heartbeat {
    /// What the worker's record says about it.
    fn info(&self, started_at: i64) -> serde_json::Value {
        let shared = &self.shared;
        let running: Vec<String> = shared
            .running
            .lock()
            .expect("running set")
            .keys()
            .cloned()
            .collect();
        json!({
            "id": shared.worker_id,
            "host": hostname(),
            "pid": std::process::id(),
            "groups": self.groups,
            "concurrency": self.concurrency,
            "running": running,
            "started_at": started_at,
            "last_heartbeat": jobfleet_common::now_ms(),
        })
    }

    /// Writes the record for the first time, retrying while Redis is unreachable; fails
    /// once `shutdown` is cancelled. The record must exist before any job is claimed, so
    /// nobody takes ours over.
    pub(crate) async fn register(&self, shutdown: &CancellationToken) -> Result<(), CoordinatorError> {
        let mut attempt = 0;
        loop {
            match self.beat(0).await {
                Ok(()) => return Ok(()),
                Err(e) if shutdown.is_cancelled() => return Err(e),
                Err(e) => {
                    warn!(error = %e, "redis unreachable at start; retrying");
                    tokio::time::sleep(client::backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Refreshes the record every `interval` until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let started_at = jobfleet_common::now_ms();
        loop {
            if let Err(e) = self.beat(started_at).await {
                warn!(error = %e, "heartbeat failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn beat(&self, started_at: i64) -> Result<(), CoordinatorError> {
        let record = self.info(started_at);
        self.shared
            .coordinator
            .heartbeat(&self.shared.worker_id, &self.groups, &record, self.ttl)
            .await
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
