//! The worker's record in Redis, refreshed on an interval. While it lives, no other worker
//! takes over this worker's started jobs; the master lists workers from it.

use crate::consumer::Shared;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What the worker's record says about it.
pub(crate) fn info(
    shared: &Shared,
    groups: &[String],
    concurrency: usize,
    started_at: i64,
) -> serde_json::Value {
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
        "groups": groups,
        "concurrency": concurrency,
        "running": running,
        "started_at": started_at,
        "last_heartbeat": jobfleet_common::now_ms(),
    })
}

/// Refreshes the record every `interval` until `stop`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    groups: Vec<String>,
    concurrency: usize,
    interval: Duration,
    ttl: Duration,
    stop: CancellationToken,
) {
    let started_at = jobfleet_common::now_ms();
    loop {
        let record = info(&shared, &groups, concurrency, started_at);
        if let Err(e) = shared
            .coordinator
            .heartbeat(&shared.worker_id, &groups, &record, ttl)
            .await
        {
            warn!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
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
