//! The long row (`--long N`): N echo jobs through one group in segments of 100,000,
//! submitted with `POST /v1/jobs/batch` to a master and run by one worker. Each segment's
//! throughput and the worker's and master's resident memory after it show whether the
//! fleet stays steady from the first jobs to the last (no slowdown, no growth).

use crate::fleet::{Fleet, Proc, ECHO_GROUP};
use crate::measure::{self, Throughput};
use anyhow::Result;
use jobfleet_common::client::ResultSubscriber;
use jobfleet_common::message::JobMessage;
use serde_json::json;

/// Jobs per segment.
pub const SEGMENT: usize = 100_000;
/// Batch requests in flight.
const SUBMITTERS: usize = 4;

/// One segment of the long row.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// Its throughput.
    pub throughput: Throughput,
    /// The worker's resident memory after it, bytes.
    pub worker_rss: Option<u64>,
    /// The master's resident memory after it, bytes.
    pub master_rss: Option<u64>,
}

/// Runs `total` echo jobs in segments of [`SEGMENT`] through a fresh worker and master.
pub async fn measure(fleet: &mut Fleet, total: usize, concurrency: usize) -> Result<Vec<Segment>> {
    let worker = fleet.worker(ECHO_GROUP, concurrency).await?;
    let (master, base_url) = fleet.master(false).await?;
    let patterns = ["default.echo.#"];
    let mut results =
        ResultSubscriber::connect(&fleet.config.amqp_url, fleet.topology.clone(), &patterns).await?;
    let mut segments = Vec::new();
    let mut done = 0;
    while done < total {
        let count = SEGMENT.min(total - done);
        let timeout = std::time::Duration::from_secs(600);
        let throughput;
        (throughput, results) = measure::throughput(results, jobs(count), timeout, |jobs| {
            measure::submit_batches(&base_url, jobs, SUBMITTERS)
        })
        .await?;
        done += count;
        let segment = sample(throughput, &worker, &master);
        eprintln!(
            "jobfleet-bench: long row {done}/{total}: {:.0} jobs/s, worker RSS {:?}, master RSS {:?}",
            throughput.rate(),
            segment.worker_rss,
            segment.master_rss
        );
        segments.push(segment);
    }
    worker.stop(std::time::Duration::from_secs(10)).await;
    master.stop(std::time::Duration::from_secs(10)).await;
    Ok(segments)
}

fn sample(throughput: Throughput, worker: &Proc, master: &Proc) -> Segment {
    Segment {
        throughput,
        worker_rss: worker.rss(),
        master_rss: master.rss(),
    }
}

fn jobs(count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|i| JobMessage::new(ECHO_GROUP, "echo", json!({"i": i})))
        .collect()
}
