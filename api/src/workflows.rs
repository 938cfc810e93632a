//! Workflows and batches (SPEC §10): `POST /v1/workflows`, `GET /v1/workflows/{id}`,
//! `POST /v1/workflows/{id}/cancel`, `POST /v1/batches`, `GET /v1/batches/{id}`.

use crate::jobs::JobErrorView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Most steps of one workflow, and most jobs of one batch.
pub const MAX_FLOW_STEPS: usize = 10_000;
/// Longest workflow or batch id: a step's job id is `<id>.<step name>`, within a job id's
/// 128 characters.
pub const MAX_FLOW_ID_CHARS: usize = 63;

/// `POST /v1/workflows`: named steps, each a job that starts when the steps it names in
/// `after` have finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRequest {
    /// The steps (1..=10,000), a DAG through their `after`.
    pub steps: Vec<StepRequest>,
    /// The workflow's id (1..63 chars of `[A-Za-z0-9._:-]`); a fresh one when absent. A
    /// repeated id answers the existing workflow (200) and creates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Its name, unique in the workflow (1..64 chars of `[A-Za-z0-9_-]`).
    pub name: String,
    /// The group of its job.
    pub group: String,
    /// The function its job runs.
    pub function: String,
    /// The job's args; any value `{"$result": "<step>"}` inside is replaced by that step's
    /// result when this one starts (the step must be in `after`).
    #[serde(default)]
    #[schema(value_type = Object, nullable)]
    pub args: Option<Value>,
    /// The steps that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Overrides the function's timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/workflows` and `POST /v1/batches` accepted: the id to follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FlowAccepted {
    /// The workflow's or batch's id.
    pub id: String,
    /// Its status (`queued` when just created).
    pub status: String,
}

/// `GET /v1/workflows/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowView {
    /// The id.
    pub id: String,
    /// `queued`, `started`, `finished` (every step finished), `failed` (a step failed or
    /// was canceled; its dependents failed with `dependency_failed`) or `canceled`.
    pub status: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Ended (RFC 3339), once every step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Every step, in the request's order.
    pub steps: Vec<StepView>,
}

/// A step of a workflow, or a job of a batch, as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// The step's name (a batch job's index; `on_complete` for the callback).
    pub name: String,
    /// Its job's id (`<workflow id>.<name>`), set before the job exists.
    pub job_id: String,
    /// Its job's group.
    pub group: String,
    /// Its job's function.
    pub function: String,
    /// The steps it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `waiting` (its job is not created yet: dependencies run), else its job's status.
    pub status: String,
    /// Its job's result, when finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable)]
    pub result: Option<Value>,
    /// Its job's error, when failed or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobErrorView>,
}

/// A job of a batch, or its `on_complete` callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchJobRequest {
    /// Its group.
    pub group: String,
    /// Its function.
    pub function: String,
    /// Its args (the callback's arrive under `args` of its summary).
    #[serde(default)]
    #[schema(value_type = Object, nullable)]
    pub args: Option<Value>,
    /// Overrides the function's timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `POST /v1/batches`: jobs that run independently, and a callback that runs once when
/// all of them ended, whatever their outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreate {
    /// The jobs (1..=10,000); job `i` gets the id `<batch id>.<i>`.
    pub jobs: Vec<BatchJobRequest>,
    /// Runs once when every job ended, with args `{"batch", "total", "finished", "failed",
    /// "canceled", "unfinished": [job ids], "args"}` (`args`: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_complete: Option<BatchJobRequest>,
    /// The batch's id (1..63 chars of `[A-Za-z0-9._:-]`); a fresh one when absent. A
    /// repeated id answers the existing batch (200) and creates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `GET /v1/batches/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    /// The id.
    pub id: String,
    /// `queued`, `started`, `finished` (every job and the callback finished), `failed`
    /// (one did not) or `canceled`.
    pub status: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Ended (RFC 3339), once every job and the callback ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How many jobs it has (the callback not counted).
    pub total: usize,
    /// Jobs finished so far.
    pub finished: usize,
    /// Jobs failed so far.
    pub failed: usize,
    /// Jobs canceled so far.
    pub canceled: usize,
    /// The callback, when the batch has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_complete: Option<StepView>,
}

/// A workflow's or batch's id in a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
pub struct FlowPath {
    /// The workflow's or batch's id.
    pub id: String,
}
