//! The delayed-job rows (SPEC §9): how late delayed jobs start while immediate jobs keep
//! the worker busy (started_at − run_at, from the records), and what 100,000 waiting delayed
//! jobs cost the throughput of immediate ones. Delayed jobs are recorded the way
//! `POST /v1/jobs` records them (`submit_job` with a delay) and published by a release
//! master's scheduler.

use crate::measure::{self, Throughput};
use anyhow::{bail, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use jobfleet_common::client::{Producer, ResultSubscriber};
use jobfleet_common::coordinator::{Coordinator, NewJob};
use jobfleet_common::message::JobMessage;
use jobfleet_common::now_ms;
use serde_json::json;
use std::time::Duration;

/// Delayed jobs scheduled before the "with" throughput rounds.
pub const WAITING: usize = 100_000;
/// Delayed jobs of the lateness row, due spread over [`SPREAD`].
const LATE_JOBS: usize = 2_000;
/// When the lateness row's jobs fall due: from 2 s after their submission, over this long.
const SPREAD: Duration = Duration::from_secs(10);
/// Submits in flight while scheduling.
const IN_FLIGHT: usize = 64;

/// Start lateness of delayed jobs: started_at − run_at.
#[derive(Debug, Clone, Copy)]
pub struct Lateness {
    /// Samples.
    pub jobs: usize,
    /// Earliest (negative: a job started early; never expected).
    pub min_ms: i64,
    /// Median.
    pub p50_ms: i64,
    /// 99th percentile.
    pub p99_ms: i64,
    /// Worst.
    pub max_ms: i64,
}

/// Records `count` delayed echo jobs of `group`, job `i` due at `due(i)` (unix ms).
pub async fn schedule(
    coordinator: &Coordinator,
    group: &str,
    count: usize,
    due: impl Fn(usize) -> i64,
) -> Result<Vec<String>> {
    let jobs: Vec<JobMessage> = (0..count)
        .map(|i| {
            let mut job = JobMessage::new(group, "echo", json!({"delayed": i}));
            job.run_at = Some(due(i));
            job
        })
        .collect();
    let ids = jobs.iter().map(|job| job.id.clone()).collect();
    stream::iter(&jobs)
        .map(|job| async move {
            let new = NewJob {
                delay_until: job.run_at,
                ..NewJob::new(job, None)
            };
            coordinator.submit_job(new).await
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(ids)
}

/// Runs `LATE_JOBS` delayed jobs due over [`SPREAD`] while `load` immediate jobs run
/// through `producer`; returns their lateness and the load's throughput.
pub async fn lateness(
    coordinator: &Coordinator,
    group: &str,
    producer: &Producer,
    results: ResultSubscriber,
    load: Vec<JobMessage>,
    timeout: Duration,
) -> Result<(Lateness, Throughput, ResultSubscriber)> {
    let start = now_ms() + 2_000;
    let step = SPREAD.as_millis() as i64 / LATE_JOBS as i64;
    let ids = schedule(coordinator, group, LATE_JOBS, |i| start + step * i as i64).await?;
    let (row, results) = measure::throughput(results, load, timeout, |jobs| {
        measure::publish_client(producer, jobs)
    })
    .await?;
    let mut late = Vec::with_capacity(ids.len());
    let deadline = tokio::time::Instant::now() + timeout;
    for chunk in ids.chunks(500) {
        loop {
            let records = coordinator.jobs(chunk).await?;
            let started: Vec<i64> = records
                .iter()
                .flatten()
                .filter(|r| r.status.is_terminal())
                .filter_map(|r| Some(r.started_at? - r.run_at?))
                .collect();
            if started.len() == chunk.len() {
                late.extend(started);
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("delayed jobs did not all run within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    late.sort_unstable();
    let at = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    let figures = Lateness {
        jobs: late.len(),
        min_ms: late[0],
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: late[late.len() - 1],
    };
    Ok((figures, row, results))
}
