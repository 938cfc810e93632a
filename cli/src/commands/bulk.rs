//! `jobfleet submit GROUP FUNCTION --bulk FILE.jsonl`: one job per line, submitted in
//! batches (`POST /v1/jobs/batch`, up to 1,000 jobs each) with a bounded number of requests
//! in flight over one connection pool, then waited for; a progress bar on a terminal's
//! stderr and a summary of outcomes on stdout.

use super::submit::{read_input, timeout_ms};
use super::Context;
use crate::args::SubmitArgs;
use crate::client::{decode, ApiError, MasterClient};
use crate::error::CliError;
use crate::output::{self, Table};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobfleet_api::MAX_BATCH_JOBS;
use jobfleet_api::{BatchOutcome, BatchRequest, BatchResult, ErrorDetail, GroupView, JobView, SubmitRequest};
use jobfleet_common::message::new_job_id;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// Attempts per batch when the master is unreachable or answers 5xx. Safe to repeat: every
/// line's id is chosen here, and a repeated id never runs twice.
const SUBMIT_ATTEMPTS: u32 = 4;
/// Bytes of args a batch carries at most (the master takes batch bodies up to 32 MiB).
const BATCH_ARGS_BYTES: usize = 16 * 1024 * 1024;
/// Unfinished jobs listed in the text summary (`--json` lists all).
const LISTED: usize = 20;

/// How one line ended.
#[derive(Debug, Clone)]
struct Outcome {
    line: usize,
    id: String,
    /// finished, failed, canceled, rejected (the master refused the line) or unknown (the
    /// wait for it failed).
    status: String,
    result: Option<Value>,
    error: Option<(String, String)>,
}

impl Outcome {
    fn from_error(line: usize, id: String, status: &str, e: &ApiError) -> Outcome {
        let (kind, message) = match e {
            ApiError::Api { kind, message, .. } => (kind.clone(), message.clone()),
            other => ("unavailable".to_string(), other.to_string()),
        };
        Outcome {
            line,
            id,
            status: status.into(),
            result: None,
            error: Some((kind, message)),
        }
    }

    fn to_json(&self) -> Value {
        let mut value = json!({"line": self.line, "id": self.id, "status": self.status});
        if let Some(result) = &self.result {
            value["result"] = result.clone();
        }
        if let Some((kind, message)) = &self.error {
            value["error"] = json!({"kind": kind, "message": message});
        }
        value
    }
}

/// Runs a bulk submit; exits 1 (via [`CliError::Bulk`]) when any job did not finish.
pub async fn run(context: &Context, args: SubmitArgs) -> Result<(), CliError> {
    let Some(path) = args.bulk.as_deref() else {
        return Err(CliError::Usage("--bulk needs a file".into()));
    };
    let lines = read_jsonl(path)?;
    if lines.is_empty() {
        return Err(CliError::Usage(format!(
            "{}: no jobs (one JSON args value per line)",
            path.display()
        )));
    }
    preflight(&context.client, &args.group, &args.function).await?;
    let timeout_ms = timeout_ms(args.timeout);
    let requests: Vec<(usize, SubmitRequest)> = lines
        .into_iter()
        .map(|(line, job_args)| {
            (
                line,
                SubmitRequest {
                    group: args.group.clone(),
                    function: args.function.clone(),
                    args: Some(job_args),
                    id: Some(new_job_id()),
                    idempotency_key: None,
                    timeout_ms,
                    run_at: None,
                    delay_ms: None,
                    priority: args.priority,
                },
            )
        })
        .collect();
    let total = requests.len();
    let in_flight = usize::from(args.in_flight);
    let client = &context.client;
    let started = Instant::now();
    let bar = progress_bar(total as u64, "submitting");
    let mut outcomes = Vec::with_capacity(total);

    let mut queued = Vec::with_capacity(total);
    let mut submissions = futures::stream::iter(batches(requests))
        .map(|batch| async move {
            let jobs = batch.iter().map(|(_, request)| request.clone()).collect();
            let result = submit_retrying(client, &BatchRequest { jobs }).await;
            (batch, result)
        })
        .buffer_unordered(in_flight);
    while let Some((batch, result)) = submissions.next().await {
        bar.inc(batch.len() as u64);
        match result {
            Ok(answer) => {
                let mut answers = answer.jobs.into_iter();
                for (line, request) in batch {
                    match answers.next() {
                        Some(item) if item.outcome != BatchOutcome::Error => queued.push((line, request)),
                        item => outcomes.push(rejected(line, request, item.and_then(|i| i.error))),
                    }
                }
            }
            Err(e @ ApiError::Unreachable { .. }) => {
                bar.abandon();
                return Err(e.into());
            }
            Err(e) => outcomes.extend(batch.into_iter().map(|(line, request)| {
                Outcome::from_error(line, request.id.unwrap_or_default(), "rejected", &e)
            })),
        }
    }
    drop(submissions);

    bar.reset();
    bar.set_length(queued.len() as u64);
    bar.set_prefix("running");
    let mut waits = futures::stream::iter(queued)
        .map(|(line, request)| async move {
            let result = client.wait_for_end(&request).await;
            (line, request.id.unwrap_or_default(), result)
        })
        .buffer_unordered(in_flight);
    let mut unfinished = outcomes.len();
    while let Some((line, id, result)) = waits.next().await {
        let outcome = match result {
            Ok(raw) => {
                let record: JobView = decode(&raw, "job record")?;
                let error = record.error.map(|e| (e.kind, e.message));
                Outcome {
                    line,
                    id,
                    status: record.status,
                    result: record.result,
                    error,
                }
            }
            Err(e @ ApiError::Unreachable { .. }) => {
                bar.abandon();
                return Err(e.into());
            }
            Err(e) => Outcome::from_error(line, id, "unknown", &e),
        };
        if outcome.status != "finished" {
            unfinished += 1;
        }
        outcomes.push(outcome);
        bar.inc(1);
        if unfinished > 0 {
            bar.set_message(format!("{unfinished} not finished"));
        }
    }
    drop(waits);
    bar.finish_and_clear();

    outcomes.sort_by_key(|o| o.line);
    let count = |status: &str| outcomes.iter().filter(|o| o.status == status).count();
    let counts: Vec<(&str, usize)> = ["finished", "failed", "canceled", "rejected", "unknown"]
        .into_iter()
        .map(|s| (s, count(s)))
        .collect();
    summarize(
        context,
        &args.group,
        &args.function,
        &outcomes,
        &counts,
        started.elapsed(),
    )?;
    if unfinished == 0 {
        return Ok(());
    }
    let breakdown = counts
        .iter()
        .skip(1)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(CliError::Bulk {
        unfinished,
        total,
        breakdown,
    })
}

/// Prints the summary: counts by outcome and the jobs that did not finish.
fn summarize(
    context: &Context,
    group: &str,
    function: &str,
    outcomes: &[Outcome],
    counts: &[(&str, usize)],
    elapsed: Duration,
) -> Result<(), CliError> {
    if context.json {
        let mut summary = json!({
            "group": group,
            "function": function,
            "total": outcomes.len(),
            "elapsed_ms": elapsed.as_millis() as u64,
            "jobs": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
        });
        for (status, n) in counts {
            summary[*status] = json!(n);
        }
        return output::json(&summary, true);
    }
    output::line(&format!(
        "{} jobs of {group}.{function} in {}",
        outcomes.len(),
        output::human_duration(elapsed)
    ))?;
    let mut table = Table::new(&["OUTCOME", "JOBS"]);
    for (status, n) in counts {
        // rejected and unknown are rare: shown only when they happened.
        if *n > 0 || ["finished", "failed", "canceled"].contains(status) {
            table.row(vec![status.to_string(), n.to_string()]);
        }
    }
    output::line(&table.render())?;
    let unfinished: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != "finished").collect();
    if unfinished.is_empty() {
        return Ok(());
    }
    output::line("")?;
    let mut table = Table::new(&["LINE", "ID", "STATUS", "ERROR"]);
    for outcome in unfinished.iter().take(LISTED) {
        let error = outcome
            .error
            .as_ref()
            .map(|(kind, message)| format!("{kind}: {message}"))
            .unwrap_or_default();
        table.row(vec![
            outcome.line.to_string(),
            outcome.id.clone(),
            outcome.status.clone(),
            output::truncate(&error, 100),
        ]);
    }
    output::line(&table.render())?;
    if unfinished.len() > LISTED {
        output::line(&format!(
            "... and {} more (--json lists every job)",
            unfinished.len() - LISTED
        ))?;
    }
    Ok(())
}

/// Checks the group and function once, so a typo fails at once (exit 3) instead of once per line.
async fn preflight(client: &MasterClient, group: &str, function: &str) -> Result<(), CliError> {
    let view: GroupView = decode(&client.group(group).await?, "group")?;
    if !view.functions.iter().any(|f| f == function) {
        return Err(ApiError::Api {
            status: 422,
            kind: "unknown_function".into(),
            message: format!("group {group:?} has no function {function:?}"),
        }
        .into());
    }
    if view.broken {
        return Err(ApiError::Api {
            status: 503,
            kind: "group_broken".into(),
            message: format!("group {group:?} is broken; `jobfleet reset {group}` runs its jobs again"),
        }
        .into());
    }
    Ok(())
}

/// Submits one batch, retrying while the master is unreachable or answers 5xx.
async fn submit_retrying(client: &MasterClient, batch: &BatchRequest) -> Result<BatchResult, ApiError> {
    let mut attempt = 0;
    loop {
        match client.submit_batch(batch).await {
            Err(e) if e.is_transient() && attempt + 1 < SUBMIT_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            answer => return answer,
        }
    }
}

/// The lines in batches of up to [`MAX_BATCH_JOBS`] jobs and about [`BATCH_ARGS_BYTES`] of
/// args (a larger line goes alone).
fn batches(requests: Vec<(usize, SubmitRequest)>) -> Vec<Vec<(usize, SubmitRequest)>> {
    let mut batches = Vec::new();
    let mut batch: Vec<(usize, SubmitRequest)> = Vec::new();
    let mut bytes = 0;
    for (line, request) in requests {
        let size = request.args.as_ref().map_or(4, |args| args.to_string().len());
        if !batch.is_empty() && (batch.len() == MAX_BATCH_JOBS || bytes + size > BATCH_ARGS_BYTES) {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += size;
        batch.push((line, request));
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// A line the master refused, with its error (one is always given; none is a protocol slip).
fn rejected(line: usize, request: SubmitRequest, error: Option<ErrorDetail>) -> Outcome {
    let error = error.unwrap_or_else(|| ErrorDetail {
        kind: "unavailable".into(),
        message: "the master's batch answer left this job out".into(),
    });
    Outcome {
        line,
        id: request.id.unwrap_or_default(),
        status: "rejected".into(),
        result: None,
        error: Some((error.kind, error.message)),
    }
}

/// The args of each non-blank line with its 1-based line number; `-` reads stdin.
fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>, CliError> {
    let text = read_input(path, "the jobs", "--bulk")?;
    parse_jsonl(&text).map_err(|(line, source)| CliError::InvalidJson {
        what: format!("{}:{line}", path.display()),
        source,
    })
}

/// Parses JSON lines, skipping blank ones; the first bad line is an error.
fn parse_jsonl(text: &str) -> Result<Vec<(usize, Value)>, (usize, serde_json::Error)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map(|value| (i + 1, value))
                .map_err(|e| (i + 1, e))
        })
        .collect()
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (logs, pipes, tests).
fn progress_bar(len: u64, prefix: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_skips_blank_lines_and_names_the_bad_one() {
        let parsed = parse_jsonl("{\"a\":1}\n\n  \n[1,2]\n\"s\"\n").unwrap();
        assert_eq!(
            parsed,
            vec![(1, json!({"a": 1})), (4, json!([1, 2])), (5, json!("s"))]
        );
        assert_eq!(parse_jsonl("1\n{oops\n").unwrap_err().0, 2);
    }

    #[test]
    fn batches_hold_at_most_1000_jobs_and_keep_the_order() {
        let request = |n: usize| SubmitRequest {
            group: "g".into(),
            function: "f".into(),
            args: Some(json!(n)),
            id: None,
            idempotency_key: None,
            timeout_ms: None,
            run_at: None,
            delay_ms: None,
            priority: None,
        };
        let split = batches((1..=2001).map(|n| (n, request(n))).collect());
        let sizes: Vec<usize> = split.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1000, 1000, 1]);
        let lines: Vec<usize> = split.iter().flatten().map(|(line, _)| *line).collect();
        assert_eq!(lines, (1..=2001).collect::<Vec<_>>());
        assert!(batches(Vec::new()).is_empty());
    }
}
