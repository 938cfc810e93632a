//! The API's documents (`jobfleet_api`) made from what Redis holds: job records with
//! RFC 3339 times, and worker registry entries.

use jobfleet_api::{rfc3339, JobErrorView, JobView, ProgressView, WorkerView};
use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::message::JobError;
use serde_json::Value;

/// The text of the first time that can be shown, else the epoch's.
fn first_shown(times: &[Option<i64>]) -> String {
    times
        .iter()
        .flatten()
        .find_map(|&ms| rfc3339(ms))
        .unwrap_or_else(|| rfc3339(0).expect("the epoch is shown"))
}

/// A job record as the API shows it (SPEC §4).
pub fn job_view(r: &JobRecord) -> JobView {
    JobView {
        id: r.id.clone(),
        group: r.group.clone(),
        function: r.function.clone(),
        status: r.status.as_str().to_string(),
        args: r.args.clone(),
        result: r.result.clone(),
        error: r.error.as_ref().map(error_view),
        attempts: r.attempts,
        worker: r.worker.clone(),
        // Required in a record: an unshowable submit time gives way to the next time known.
        submitted_at: first_shown(&[r.submitted_at, r.started_at, r.finished_at]),
        started_at: r.started_at.and_then(rfc3339),
        finished_at: r.finished_at.and_then(rfc3339),
        duration_ms: r.duration_ms,
        run_at: r.run_at.and_then(rfc3339),
        retry_of: r.retry_of.clone(),
        priority: r.priority,
        progress: r.progress.as_ref().map(|p| ProgressView {
            percent: p.percent,
            message: p.message.clone(),
        }),
        workflow: r.member.workflow.clone(),
        step: r.member.step.clone(),
        batch: r.member.batch.clone(),
    }
}

/// A job's error as the API shows it.
pub fn error_view(e: &JobError) -> JobErrorView {
    JobErrorView {
        kind: e.kind.as_str().to_string(),
        message: e.message.clone(),
    }
}

/// A worker registry entry (the JSON a worker registers) as the API shows it.
pub fn worker_view(info: &Value) -> WorkerView {
    let strings = |v: &Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let running_jobs = strings(&info["running"]);
    WorkerView {
        id: info["id"].as_str().unwrap_or_default().to_string(),
        host: info["host"].as_str().unwrap_or_default().to_string(),
        pid: info["pid"].as_u64().unwrap_or(0),
        groups: strings(&info["groups"]),
        running: running_jobs.len() as u64,
        running_jobs,
        concurrency: info["concurrency"].as_u64().unwrap_or(0),
        last_heartbeat: first_shown(&[info["last_heartbeat"].as_i64()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_shows_the_first_time_that_can_be_shown() {
        assert_eq!(
            first_shown(&[Some(i64::MAX), None, Some(1000)]),
            "1970-01-01T00:00:01.000Z"
        );
        assert_eq!(first_shown(&[Some(-5)]), "1970-01-01T00:00:00.000Z");
    }
}
