//! Redis memory per job: what a queued and an ended small job (a wordcount of one
//! sentence) cost in Redis. Measured as the sum of `MEMORY USAGE` over the keys of the
//! bench's namespace ([`Coordinator::namespace_bytes`](jobfleet_common::coordinator::Coordinator::namespace_bytes)) (exact for each key, whatever else uses the same Redis), divided by the
//! number of jobs; the expiry of each record costs a few bytes more that this leaves out.

use crate::fleet::Fleet;
use crate::measure;
use anyhow::{bail, Context, Result};
use jobfleet_common::client::Producer;
use jobfleet_common::message::JobMessage;
use jobfleet_common::redis::{self, aio::MultiplexedConnection};
use serde_json::json;
use std::time::{Duration, Instant};

/// The group of the memory row: the worker's built-in `wordcount`, nothing else.
pub const GROUP: &str = "memory";
/// Its function.
pub const FUNCTION: &str = "wordcount";

/// Bytes per job of the namespace's keys, queued and ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerJob {
    /// After the jobs were published, before any ran.
    pub queued: f64,
    /// After every job ended (finished).
    pub ended: f64,
    /// The server's `hash-max-listpack-value` (records longer than it take the larger
    /// `hashtable` form), when `CONFIG GET` may read it.
    pub listpack_value: Option<u64>,
}

/// `count` small wordcount jobs of the memory group.
pub fn jobs(count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|_| {
            JobMessage::new(
                GROUP,
                FUNCTION,
                json!({"text": "the quick brown fox jumps over the lazy dog"}),
            )
        })
        .collect()
}

/// A connection to the Redis at `redis_url` (a plain `redis://` URL).
async fn connect(redis_url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(redis_url).context("the memory row needs a redis:// URL")?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// Bytes per job of `count` small jobs: published through `producer` while the memory
/// group's worker is stopped (queued), then run to the end by a worker (ended).
pub async fn measure(
    fleet: &mut Fleet,
    producer: &Producer,
    count: usize,
    concurrency: usize,
    timeout: Duration,
) -> Result<PerJob> {
    // A worker declares the group's queues; once it stopped, the jobs wait queued.
    let declaring = fleet.worker(GROUP, concurrency).await?;
    declaring.stop(Duration::from_secs(10)).await;
    let before = fleet.coordinator.namespace_bytes().await?;
    let batch = jobs(count);
    let ids: Vec<String> = batch.iter().map(|job| job.id.clone()).collect();
    measure::publish_client(producer, batch).await?;
    let queued = fleet.coordinator.namespace_bytes().await?;
    let worker = fleet.worker(GROUP, concurrency).await?;
    let deadline = Instant::now() + timeout;
    while measure::check_recorded(&fleet.coordinator, &ids).await.is_err() {
        if Instant::now() > deadline {
            bail!("the memory row's jobs did not all finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = fleet.coordinator.namespace_bytes().await?;
    worker.stop(Duration::from_secs(10)).await;
    let per_job = |bytes: u64| bytes.saturating_sub(before) as f64 / count as f64;
    Ok(PerJob {
        queued: per_job(queued),
        ended: per_job(ended),
        listpack_value: listpack_value(&fleet.config.redis_url).await,
    })
}

/// The server's `hash-max-listpack-value`; `None` when `CONFIG` is not allowed.
async fn listpack_value(redis_url: &str) -> Option<u64> {
    let mut redis = connect(redis_url).await.ok()?;
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hash-max-listpack-value")
        .query_async(&mut redis)
        .await
        .ok()?;
    reply.get(1)?.parse().ok()
}
