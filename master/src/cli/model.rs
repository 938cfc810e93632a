//! The API's JSON shapes as the CLI reads them: lenient (missing fields default, unknown
//! fields ignored) so a newer master does not break an older CLI.

use super::client::ApiError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The terminal statuses (SPEC §2).
pub const TERMINAL: [&str; 3] = ["finished", "failed", "canceled"];

/// Whether a job record (JSON) has a terminal status.
pub fn is_terminal(record: &Value) -> bool {
    record["status"].as_str().is_some_and(|s| TERMINAL.contains(&s))
}

/// Reads an API document into its typed shape.
pub fn decode<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, ApiError> {
    T::deserialize(value).map_err(|e| ApiError::Protocol {
        url: String::from("(master)"),
        message: format!("{what}: {e}"),
    })
}

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubmitRequest {
    /// The consumer group.
    pub group: String,
    /// The function.
    pub function: String,
    /// The function's input.
    pub args: Value,
    /// The job's id; the master makes one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Overrides the function's timeout, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A job's error.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct JobErrorView {
    /// Machine-readable kind.
    pub kind: String,
    /// For people.
    pub message: String,
}

/// A job record (SPEC §4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobRecord {
    /// Id.
    pub id: String,
    /// Group.
    pub group: String,
    /// Function.
    pub function: String,
    /// Status.
    pub status: String,
    /// Input.
    pub args: Value,
    /// Output, when finished.
    pub result: Option<Value>,
    /// Error, when failed or canceled.
    pub error: Option<JobErrorView>,
    /// Times started.
    pub attempts: u32,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// Submitted (RFC 3339).
    pub submitted_at: Option<String>,
    /// Started (RFC 3339).
    pub started_at: Option<String>,
    /// Ended (RFC 3339).
    pub finished_at: Option<String>,
    /// Execution time, ms.
    pub duration_ms: Option<u64>,
}

/// A page of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobRecord>,
    /// The cursor of the next page.
    pub next_cursor: Option<String>,
}

/// A group's state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// Functions.
    pub functions: Vec<String>,
    /// Live workers.
    pub workers: u64,
    /// Jobs waiting in the queue.
    pub queue_depth: u64,
    /// Jobs running.
    pub running: u64,
    /// Consecutive infrastructure failures.
    pub consecutive_failures: u64,
    /// Broken by the failure policy.
    pub broken: bool,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GroupList {
    /// The groups.
    pub groups: Vec<GroupView>,
}

/// A live worker.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerView {
    /// Id.
    pub id: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: u64,
    /// Groups consumed.
    pub groups: Vec<String>,
    /// Jobs running.
    pub running: u64,
    /// Jobs in flight at most.
    pub concurrency: u64,
    /// Last heartbeat (RFC 3339).
    pub last_heartbeat: String,
}

/// `GET /v1/workers`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<WorkerView>,
}
