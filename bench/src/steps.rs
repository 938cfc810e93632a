//! The steps row (SPEC §10): how soon a workflow step starts once the steps it waits for
//! have ended. Workflows of `echo` steps go to a release master with `POST /v1/workflows`
//! and run on the echo group's worker; once each is `finished` (`GET /v1/workflows/{id}`),
//! every step's record gives a gap for each step with dependencies: its `started_at` minus
//! the latest `finished_at` of its `after` steps (unix ms, one clock: one machine). Two
//! shapes: a chain, where one step at a time is ready (the unloaded path: the result to the
//! master's driver, the end recorded, the dependent recorded and published, claimed), and
//! many small diamonds submitted together (the same path under concurrency).

use crate::fleet::{Fleet, ECHO_GROUP};
use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use jobfleet_common::now_ms;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// How often a workflow's status is read while it runs (one workflow at a time, so that
/// reading does not load the master being measured).
const POLL: Duration = Duration::from_millis(50);
/// Submits in flight.
const SUBMITTERS: usize = 16;

/// One shape's figures.
#[derive(Debug, Clone)]
pub struct Gaps {
    /// The shape in a word: `chain` or `diamonds`.
    pub kind: &'static str,
    /// What ran, e.g. `chain of 200 steps`.
    pub shape: String,
    /// Gaps measured (steps with dependencies).
    pub samples: usize,
    /// Median gap.
    pub p50_ms: i64,
    /// 99th percentile.
    pub p99_ms: i64,
    /// Worst.
    pub max_ms: i64,
    /// Steps per second, from the first submit to the last step's end.
    pub steps_per_s: f64,
}

/// A workflow to submit: its id and steps as `(name, after)`.
struct Workflow {
    id: String,
    steps: Vec<(String, Vec<String>)>,
}

impl Workflow {
    /// `length` steps, each after the one before.
    fn chain(id: String, length: usize) -> Workflow {
        let steps = (0..length)
            .map(|i| {
                let after = if i == 0 {
                    vec![]
                } else {
                    vec![format!("s{}", i - 1)]
                };
                (format!("s{i}"), after)
            })
            .collect();
        Workflow { id, steps }
    }

    /// `a`, then `b` and `c` after it, then `d` after both.
    fn diamond(id: String) -> Workflow {
        let step =
            |name: &str, after: &[&str]| (name.to_string(), after.iter().map(|a| a.to_string()).collect());
        let steps = vec![
            step("a", &[]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("d", &["b", "c"]),
        ];
        Workflow { id, steps }
    }

    /// The body of `POST /v1/workflows`.
    fn body(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(name, after)| {
                json!({"name": name, "group": ECHO_GROUP, "function": "echo",
                       "args": {"step": name}, "after": after})
            })
            .collect();
        json!({"id": self.id, "steps": steps})
    }

    /// Job id of step `name`.
    fn job_id(&self, name: &str) -> String {
        format!("{}.{name}", self.id)
    }
}

/// Runs the chain of `length` steps, then `length / 2` diamonds submitted together, against a master
/// started for them; a warm-up diamond first.
pub async fn measure(fleet: &mut Fleet, length: usize, timeout: Duration) -> Result<Vec<Gaps>> {
    let (master, url) = fleet.master(false).await?;
    let client = reqwest::Client::new();
    let runner = Runner {
        fleet,
        client: &client,
        url: &url,
        timeout,
    };
    let warmup = vec![Workflow::diamond("warm-up".into())];
    runner.run(("warm-up", "a diamond".into()), warmup).await?;
    let chain = vec![Workflow::chain("chain".into(), length)];
    let chain = runner
        .run(("chain", format!("chain of {length} steps")), chain)
        .await?;
    let count = (length / 2).max(1);
    let diamonds = (0..count)
        .map(|i| Workflow::diamond(format!("diamond-{i}")))
        .collect();
    let shape = format!("{count} diamonds submitted together ({} steps)", count * 4);
    let diamonds = runner.run(("diamonds", shape), diamonds).await?;
    master.stop(Duration::from_secs(10)).await;
    Ok(vec![chain, diamonds])
}

/// Submits workflows to a master and reads their steps' records.
struct Runner<'a> {
    fleet: &'a Fleet,
    client: &'a reqwest::Client,
    url: &'a str,
    timeout: Duration,
}

impl Runner<'_> {
    /// Submits `workflows` together ([`SUBMITTERS`] requests in flight), waits until each is
    /// finished, and measures its gaps.
    async fn run(&self, (kind, shape): (&'static str, String), workflows: Vec<Workflow>) -> Result<Gaps> {
        let start_ms = now_ms();
        stream::iter(&workflows)
            .map(|w| self.submit(w))
            .buffer_unordered(SUBMITTERS)
            .try_collect::<()>()
            .await?;
        for workflow in &workflows {
            self.finished(&workflow.id).await?;
        }
        let mut gaps = Vec::new();
        let mut last_end = start_ms;
        for workflow in &workflows {
            let times = self.times(workflow).await?;
            gaps.extend(step_gaps(&workflow.steps, &times)?);
            last_end = times.values().map(|&(_, end)| end).fold(last_end, i64::max);
        }
        let steps = workflows.iter().map(|w| w.steps.len()).sum();
        let elapsed = Duration::from_millis((last_end - start_ms).max(1) as u64);
        let gaps = summarize((kind, shape), steps, gaps, elapsed)?;
        eprintln!(
            "jobfleet-bench: {}: step end -> dependent start p50 {} ms, p99 {} ms, {:.0} steps/s",
            gaps.shape, gaps.p50_ms, gaps.p99_ms, gaps.steps_per_s
        );
        Ok(gaps)
    }

    async fn submit(&self, workflow: &Workflow) -> Result<()> {
        let url = format!("{}/v1/workflows", self.url);
        let response = self.client.post(&url).json(&workflow.body()).send().await?;
        let status = response.status();
        if status != reqwest::StatusCode::ACCEPTED {
            let answer = response.text().await.unwrap_or_default();
            bail!("POST {url} answered {status}: {answer}");
        }
        Ok(())
    }

    /// Waits until workflow `id` is `finished`; fails when it ends otherwise or the timeout
    /// passes.
    async fn finished(&self, id: &str) -> Result<()> {
        let url = format!("{}/v1/workflows/{id}", self.url);
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let answer: Value = self
                .client
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            match answer["status"].as_str() {
                Some("finished") => return Ok(()),
                Some("failed" | "canceled") => bail!("workflow {id} ended {}", answer["status"]),
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                bail!("workflow {id} did not finish within {:?}", self.timeout);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Each step's (started_at, finished_at), unix ms, from its job's record.
    async fn times(&self, workflow: &Workflow) -> Result<HashMap<String, (i64, i64)>> {
        let ids: Vec<String> = workflow
            .steps
            .iter()
            .map(|(name, _)| workflow.job_id(name))
            .collect();
        let records = self.fleet.coordinator.jobs(&ids).await?;
        let mut times = HashMap::new();
        for ((name, _), record) in workflow.steps.iter().zip(records) {
            let record = record.with_context(|| format!("no record of {}", workflow.job_id(name)))?;
            let (Some(start), Some(end)) = (record.started_at, record.finished_at) else {
                bail!("{} has no start or end time", record.id);
            };
            times.insert(name.clone(), (start, end));
        }
        Ok(times)
    }
}

/// For each step with dependencies: its start minus the latest end of its `after` steps.
fn step_gaps(steps: &[(String, Vec<String>)], times: &HashMap<String, (i64, i64)>) -> Result<Vec<i64>> {
    let time = |name: &String| {
        times
            .get(name)
            .copied()
            .with_context(|| format!("no times of step {name}"))
    };
    let mut gaps = Vec::new();
    for (name, after) in steps.iter().filter(|(_, after)| !after.is_empty()) {
        let (start, _) = time(name)?;
        let mut latest_end = i64::MIN;
        for dependency in after {
            latest_end = latest_end.max(time(dependency)?.1);
        }
        gaps.push(start - latest_end);
    }
    Ok(gaps)
}

/// The figures of `gaps` (nearest rank), `steps` steps run in `elapsed`.
fn summarize(
    (kind, shape): (&'static str, String),
    steps: usize,
    mut gaps: Vec<i64>,
    elapsed: Duration,
) -> Result<Gaps> {
    if gaps.is_empty() {
        bail!("{shape}: no step had dependencies");
    }
    gaps.sort_unstable();
    let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
    Ok(Gaps {
        kind,
        shape,
        samples: gaps.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: gaps[gaps.len() - 1],
        steps_per_s: steps as f64 / elapsed.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_runs_from_the_latest_dependency_end_to_the_start() {
        let diamond = Workflow::diamond("d".into());
        let times: HashMap<String, (i64, i64)> = [
            ("a", (100, 110)),
            ("b", (113, 120)),
            ("c", (112, 150)),
            ("d", (157, 160)),
        ]
        .into_iter()
        .map(|(name, t)| (name.to_string(), t))
        .collect();
        assert_eq!(step_gaps(&diamond.steps, &times).unwrap(), [3, 2, 7]);
        let gaps = summarize(
            ("diamonds", "d".into()),
            4,
            vec![7, 3, 2],
            Duration::from_millis(60),
        )
        .unwrap();
        assert_eq!(
            (gaps.samples, gaps.p50_ms, gaps.p99_ms, gaps.max_ms),
            (3, 3, 7, 7)
        );
        assert!((gaps.steps_per_s - 4.0 / 0.06).abs() < 1e-9);
    }

    #[test]
    fn a_chain_names_each_step_after_the_one_before() {
        let chain = Workflow::chain("c".into(), 3);
        let body = chain.body();
        assert_eq!(body["steps"][0]["after"], json!([]));
        assert_eq!(body["steps"][2]["after"], json!(["s1"]));
        assert_eq!(chain.job_id("s2"), "c.s2");
    }
}
