//! The measurements: throughput (first publish → last result received) and latency
//! (publish → result received, per job, at a fixed rate), for the ceiling and for jobfleet
//! through the client library or the HTTP API.

use crate::ceiling;
use anyhow::{bail, Context, Result};
use jobfleet_common::client::{Producer, ResultSubscriber};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::time::Instant;

/// Jobs per `publish_many` call (and per ceiling confirm batch).
pub const BATCH: usize = 1000;

/// The clock that latency jobs carry in their args (`t`, ns since this instant).
static EPOCH: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);

/// A throughput row's figures.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Jobs measured.
    pub jobs: usize,
    /// First publish to last result.
    pub elapsed: Duration,
}

impl Throughput {
    /// Jobs per second.
    pub fn rate(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64()
    }
}

/// Latency figures.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Samples.
    pub jobs: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Worst.
    pub max: Duration,
}

/// Receives results until every id in `ids` has one; results of other jobs are ignored.
/// Fails on a result that is not `finished`, or when `timeout` passes.
async fn collect(
    results: &mut ResultSubscriber,
    mut ids: HashSet<String>,
    timeout: Duration,
    mut each: impl FnMut(&ResultMessage),
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let total = ids.len();
    while !ids.is_empty() {
        let result = match tokio::time::timeout_at(deadline, results.next()).await {
            Ok(result) => result?,
            Err(_) => bail!("{} of {total} results missing after {timeout:?}", ids.len()),
        };
        if ids.remove(&result.id) {
            if result.status != JobStatus::Finished {
                bail!("job {} ended {}: {:?}", result.id, result.status, result.error);
            }
            each(&result);
        }
    }
    Ok(Instant::now())
}

/// Publishes `jobs` with `publish` while a separate task receives their results; the time
/// runs from the first publish to the last result.
pub async fn throughput<F, Fut>(
    mut results: ResultSubscriber,
    jobs: Vec<JobMessage>,
    timeout: Duration,
    publish: F,
) -> Result<(Throughput, ResultSubscriber)>
where
    F: FnOnce(Vec<JobMessage>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let count = jobs.len();
    let ids: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let collector = tokio::spawn(async move {
        let done = collect(&mut results, ids, timeout, |_| {}).await;
        (done, results)
    });
    let start = Instant::now();
    let published = publish(jobs).await;
    let (done, results) = collector.await.context("collector task")?;
    published?;
    let elapsed = done? - start;
    Ok((Throughput { jobs: count, elapsed }, results))
}

/// Publishes `count` jobs made by `make` (args carry the publish time) at `rate` per
/// second, each from its own task, and measures publish → result received per job.
pub async fn latency<M, P, Fut>(
    mut results: ResultSubscriber,
    count: usize,
    rate: f64,
    make: M,
    publish: P,
) -> Result<(Latency, ResultSubscriber)>
where
    M: Fn(Value) -> JobMessage,
    P: Fn(JobMessage) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / rate);
    let jobs: Vec<JobMessage> = (0..count).map(|i| make(json!({"i": i, "t": 0}))).collect();
    let ids: HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let timeout = period * count as u32 + Duration::from_secs(60);
    let collector = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(ids.len());
        let done = collect(&mut results, ids, timeout, |result| {
            let now = EPOCH.elapsed().as_nanos() as u64;
            let sent = result
                .result
                .as_ref()
                .and_then(|r| r["t"].as_u64())
                .unwrap_or(now);
            samples.push(Duration::from_nanos(now.saturating_sub(sent)));
        })
        .await;
        (done.map(|_| samples), results)
    });
    let start = Instant::now();
    let mut publishes = Vec::with_capacity(count);
    for (i, mut job) in jobs.into_iter().enumerate() {
        tokio::time::sleep_until(start + period * i as u32).await;
        job.args["t"] = json!(EPOCH.elapsed().as_nanos() as u64);
        publishes.push(tokio::spawn(publish(job)));
    }
    for publish in publishes {
        publish.await.context("publish task")??;
    }
    let (samples, results) = collector.await.context("collector task")?;
    let mut samples = samples?;
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((
        Latency {
            jobs: count,
            p50: at(0.50),
            p99: at(0.99),
            max: *samples.last().expect("samples"),
        },
        results,
    ))
}

/// Publishes through the client library, `BATCH` jobs per call.
pub async fn publish_client(producer: &Producer, jobs: Vec<JobMessage>) -> Result<()> {
    for chunk in jobs.chunks(BATCH) {
        producer.publish_many(chunk).await?;
    }
    Ok(())
}

/// Publishes to the ceiling, `BATCH` jobs per confirm batch.
pub async fn publish_ceiling(client: &ceiling::Client, jobs: Vec<JobMessage>) -> Result<()> {
    for chunk in jobs.chunks(BATCH) {
        client.publish_many(chunk).await?;
    }
    Ok(())
}

/// Submits every job with `POST /v1/jobs` (its id in the body) from `submitters`
/// concurrent clients; each answer must be 202.
pub async fn submit_http(
    base_url: &str,
    jobs: Vec<JobMessage>,
    submitters: usize,
    token: Option<&str>,
) -> Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(submitters)
        .default_headers(headers)
        .build()?;
    let bodies = jobs.iter().map(job_spec).collect();
    let accepted = |status, _: &Value, _: &Value| status == reqwest::StatusCode::ACCEPTED;
    post_all(
        client,
        format!("{base_url}/v1/jobs"),
        bodies,
        submitters,
        accepted,
    )
    .await
}

/// A job's spec as `POST /v1/jobs` takes it, with its id.
fn job_spec(job: &JobMessage) -> Value {
    json!({"group": job.group, "function": job.function, "args": job.args, "id": job.id})
}

/// POSTs each of `bodies` to `url`, `submitters` requests in flight; `accepted` judges each
/// answer by its status, its body and the request's body.
async fn post_all(
    client: reqwest::Client,
    url: String,
    bodies: Vec<Value>,
    submitters: usize,
    accepted: fn(reqwest::StatusCode, &Value, &Value) -> bool,
) -> Result<()> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(submitters);
    for _ in 0..submitters {
        let (client, bodies, next, url) = (client.clone(), bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return Ok(()) };
                let response = client.post(&url).json(body).send().await?;
                let status = response.status();
                let answer: Value = response.json().await.unwrap_or_default();
                if !accepted(status, &answer, body) {
                    bail!("POST {url} answered {status}: {answer}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("submitter task")??;
    }
    Ok(())
}

/// Jobs per `POST /v1/jobs/batch` request: the most the master takes.
pub const BATCH_JOBS: usize = 1000;

/// Submits `jobs` through `POST /v1/jobs/batch` in batches of up to 1,000 with `submitters`
/// requests in flight; every job must be answered `created`.
pub async fn submit_batches(base_url: &str, jobs: Vec<JobMessage>, submitters: usize) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(submitters)
        .build()?;
    let bodies = jobs
        .chunks(BATCH_JOBS)
        .map(|chunk| json!({ "jobs": chunk.iter().map(job_spec).collect::<Vec<_>>() }))
        .collect();
    let all_created = |status, answer: &Value, body: &Value| {
        status == reqwest::StatusCode::OK && answer["created"] == body["jobs"].as_array().map_or(0, Vec::len)
    };
    post_all(
        client,
        format!("{base_url}/v1/jobs/batch"),
        bodies,
        submitters,
        all_created,
    )
    .await
}

/// Checks that every job's record is `finished` in Redis.
pub async fn check_recorded(coordinator: &Coordinator, jobs: &[String]) -> Result<()> {
    let records = coordinator.jobs(jobs).await?;
    let unfinished = records
        .iter()
        .zip(jobs)
        .filter(|(r, _)| r.as_ref().map(|r| r.status) != Some(JobStatus::Finished))
        .count();
    if unfinished > 0 {
        bail!("{unfinished} of {} jobs have no finished record", jobs.len());
    }
    Ok(())
}
