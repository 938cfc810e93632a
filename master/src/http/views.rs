//! The API's documents (`jobfleet_api`) made from what Redis holds: job records with
//! RFC 3339 times, and worker registry entries.

use jobfleet_api::{JobErrorView, JobView, WorkerView};
use jobfleet_common::coordinator::JobRecord;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// RFC 3339 UTC text of a unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
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
        error: r.error.as_ref().map(|e| JobErrorView {
            kind: e.kind.as_str().to_string(),
            message: e.message.clone(),
        }),
        attempts: r.attempts,
        worker: r.worker.clone(),
        submitted_at: rfc3339(r.submitted_at.or(r.started_at).or(r.finished_at).unwrap_or(0)),
        started_at: r.started_at.map(rfc3339),
        finished_at: r.finished_at.map(rfc3339),
        duration_ms: r.duration_ms,
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
        last_heartbeat: rfc3339(info["last_heartbeat"].as_i64().unwrap_or(0)),
    }
}
