//! The JSON shapes of the API: requests, job records with RFC 3339 times, groups, workers.

use jobfleet_common::coordinator::JobRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::{IntoParams, ToSchema};

/// RFC 3339 UTC text of a unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// `POST /v1/jobs` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubmitRequest {
    /// The consumer group.
    pub group: String,
    /// The function.
    pub function: String,
    /// The function's input.
    #[serde(default)]
    #[schema(value_type = Object, nullable)]
    pub args: Option<Value>,
    /// Your own id (1..128 chars of `[A-Za-z0-9._:-]`); a repeated id returns the original job.
    #[serde(default)]
    pub id: Option<String>,
    /// A repeated key returns the original job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Overrides the function's timeout, ms.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/jobs` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SubmitQuery {
    /// Wait up to this many seconds (≤ 300) for the job to end.
    pub wait: Option<f64>,
}

/// A job accepted but not ended yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The job's id.
    pub id: String,
    /// Its status.
    pub status: String,
}

/// A job's error.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobErrorView {
    /// Machine-readable kind (SPEC §2).
    pub kind: String,
    /// For people.
    pub message: String,
}

/// A job record (SPEC §4).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Id.
    pub id: String,
    /// Group.
    pub group: String,
    /// Function.
    pub function: String,
    /// queued, started, finished, failed or canceled.
    pub status: String,
    /// Input.
    #[schema(value_type = Object, nullable)]
    pub args: Value,
    /// Output, when finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable)]
    pub result: Option<Value>,
    /// Error, when failed or canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobErrorView>,
    /// Times started.
    pub attempts: u32,
    /// The worker that ran it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Submitted (RFC 3339).
    pub submitted_at: String,
    /// Started, last attempt (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Execution time of the last attempt, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl From<&JobRecord> for JobView {
    fn from(r: &JobRecord) -> Self {
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
}

/// `GET /v1/jobs` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this group.
    pub group: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Page size, 1..=1000 (default 50).
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A group's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// Its functions.
    pub functions: Vec<String>,
    /// Live workers serving it.
    pub workers: u64,
    /// Jobs waiting in its queue.
    pub queue_depth: u64,
    /// Jobs running now.
    pub running: u64,
    /// Consecutive infrastructure failures.
    pub consecutive_failures: u64,
    /// Whether the failure policy broke it.
    pub broken: bool,
}

/// All groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    /// The groups.
    pub groups: Vec<GroupView>,
}

/// A live worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// Id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u64,
    /// Groups it consumes.
    pub groups: Vec<String>,
    /// Jobs running now.
    pub running: u64,
    /// Their ids.
    pub running_jobs: Vec<String>,
    /// Jobs in flight at most.
    pub concurrency: u64,
    /// Last heartbeat (RFC 3339).
    pub last_heartbeat: String,
}

impl From<&Value> for WorkerView {
    fn from(info: &Value) -> Self {
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
}

/// All live workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<WorkerView>,
}

/// Health and readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}
