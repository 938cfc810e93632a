//! The logs row (SPEC §10): what job logs cost end-to-end throughput. The built-in
//! `chatty` runs through the client library on the echo group's worker, logging
//! [`LINES`] lines per job in one set of rounds and none in the other; the rounds
//! alternate so that both see the same machine, and the best of each is reported with its
//! CPU per job by process (steadier than jobs/s on a busy machine). A sample of the logging
//! jobs' stored events says whether the lines were kept, not dropped.

use crate::cpu::{Meter, Tracked};
use crate::fleet::{Fleet, ECHO_GROUP};
use crate::measure::{self, Throughput};
use anyhow::Result;
use jobfleet_common::client::{Producer, ResultSubscriber};
use jobfleet_common::coordinator::activity::ActivityKind;
use jobfleet_common::message::JobMessage;
use serde_json::json;
use std::time::Duration;

/// The worker's built-in that logs `{"lines": n}` lines.
pub const FUNCTION: &str = "chatty";
/// Lines each job of the logging rounds logs.
pub const LINES: u32 = 10;
/// The two kinds in the CPU table: logging nothing, logging [`LINES`] lines.
pub const CPU_LABELS: [&str; 2] = ["chatty, 0 lines", "chatty, 10 lines"];
/// Logging jobs whose stored events are counted after the last round.
const SAMPLE: usize = 100;

/// The rounds of one kind (logging nothing, or [`LINES`] lines per job).
#[derive(Debug, Clone, Default)]
pub struct Kind {
    /// Jobs/s of each round.
    pub rounds: Vec<f64>,
    /// CPU per job by process in the best round.
    pub cpu: Vec<(String, Duration)>,
}

impl Kind {
    /// The best round's jobs/s.
    pub fn best(&self) -> Option<f64> {
        self.rounds.iter().copied().reduce(f64::max)
    }

    /// A round: kept with its CPU when it is the best so far.
    fn add(&mut self, rate: f64, cpu: Vec<(String, Duration)>) {
        if self.best().is_none_or(|best| rate > best) {
            self.cpu = cpu;
        }
        self.rounds.push(rate);
    }
}

/// What the logs row measured.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// The rounds that logged nothing.
    pub quiet: Kind,
    /// The rounds that logged [`LINES`] lines per job.
    pub logging: Kind,
    /// Log lines found stored for the sampled jobs, and how many they logged.
    pub stored: (usize, usize),
}

impl Rows {
    /// The best round of each: (quiet, logging) jobs/s.
    pub fn best(&self) -> Option<(f64, f64)> {
        Some((self.quiet.best()?, self.logging.best()?))
    }
}

/// `count` chatty jobs of the echo group, each logging `lines` lines.
fn jobs(count: usize, lines: u32) -> Vec<JobMessage> {
    (0..count)
        .map(|_| JobMessage::new(ECHO_GROUP, FUNCTION, json!({ "lines": lines })))
        .collect()
}

/// How the rows run: jobs per round, rounds, warm-up jobs and each round's timeout.
pub struct Plan {
    /// Jobs per round.
    pub jobs: usize,
    /// Rounds of each kind.
    pub rounds: usize,
    /// Jobs of the unmeasured warm-up of each kind.
    pub warmup: usize,
    /// How long a round may take.
    pub timeout: Duration,
    /// The broker and Redis, whose CPU is measured with the worker's.
    pub services: Vec<Tracked>,
    /// The echo group's worker.
    pub worker_pid: u32,
}

/// Runs the rows on the echo group's running worker, publishing through `producer`.
pub async fn measure(fleet: &Fleet, producer: &Producer, plan: Plan) -> Result<Rows> {
    let patterns = [format!("{ECHO_GROUP}.{FUNCTION}.#")];
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let mut results =
        ResultSubscriber::connect(&fleet.config.amqp_url, fleet.topology.clone(), &patterns).await?;
    for lines in [0, LINES] {
        (_, results) = round(results, producer, jobs(plan.warmup, lines), plan.timeout).await?;
    }
    let mut rows = Rows::default();
    let mut sampled = Vec::new();
    for number in 1..=plan.rounds.max(1) {
        for lines in [0, LINES] {
            let batch = jobs(plan.jobs, lines);
            let ids: Vec<String> = batch.iter().map(|job| job.id.clone()).collect();
            let meter = Meter::start(&plan.services, &[Tracked::new("worker", plan.worker_pid)]);
            let row;
            (row, results) = round(results, producer, batch, plan.timeout).await?;
            let cpu = meter.per_job(plan.jobs);
            measure::check_recorded(&fleet.coordinator, &ids).await?;
            eprintln!(
                "jobfleet-bench: round {number}: e2e {FUNCTION} logging {lines} lines per job {:.0} jobs/s",
                row.rate()
            );
            if lines == 0 {
                rows.quiet.add(row.rate(), cpu);
            } else {
                rows.logging.add(row.rate(), cpu);
                sampled = ids;
            }
        }
    }
    sampled.truncate(SAMPLE);
    rows.stored = (
        stored_lines(fleet, &sampled).await?,
        sampled.len() * LINES as usize,
    );
    Ok(rows)
}

/// One throughput round of `batch` through the client library.
async fn round(
    results: ResultSubscriber,
    producer: &Producer,
    batch: Vec<JobMessage>,
    timeout: Duration,
) -> Result<(Throughput, ResultSubscriber)> {
    measure::throughput(results, batch, timeout, |jobs| {
        measure::publish_client(producer, jobs)
    })
    .await
}

/// Log lines stored for the jobs `ids` of the echo group.
async fn stored_lines(fleet: &Fleet, ids: &[String]) -> Result<usize> {
    let mut stored = 0;
    for id in ids {
        let page = fleet
            .coordinator
            .activity_of(ECHO_GROUP, id, None, 4 * LINES as usize)
            .await?;
        stored += page
            .events
            .iter()
            .filter(|event| matches!(event.entry.kind, ActivityKind::Log { .. }))
            .count();
    }
    Ok(stored)
}
