//! `/v1/jobs`: the submit request and its query, the job record, listing pages.

use crate::MAX_PRIORITY;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A repeated key returns the original job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Overrides the function's timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// Start no earlier than this time (RFC 3339, e.g. `2030-01-01T09:00:00Z`); a time in the
    /// past runs the job now. At most 30 days ahead. Not with `delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Start no earlier than this many milliseconds from now; at most 2,592,000,000 (30 days).
    /// Not with `run_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2_592_000_000_u64)]
    pub delay_ms: Option<u64>,
    /// 0..=9, higher runs first (default 0); above 0 only for a group with `max_priority`.
    #[serde(
        default,
        deserialize_with = "priority",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
}

/// Reads a `priority`: an integer 0..=[`MAX_PRIORITY`] (or null), with an error that says so.
fn priority<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?.unwrap_or(Value::Null);
    if value.is_null() {
        return Ok(None);
    }
    match value.as_u64().and_then(|p| u8::try_from(p).ok()) {
        Some(p) if p <= MAX_PRIORITY => Ok(Some(p)),
        _ => Err(serde::de::Error::custom(format!(
            "priority must be an integer from 0 to {MAX_PRIORITY}, not {value}"
        ))),
    }
}

/// The `{id}` of the `/v1/jobs/{id}` routes (the master extracts it as `Path<JobId>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobId {
    /// The job id
    pub id: String,
}

/// `POST /v1/jobs` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct SubmitQuery {
    /// Wait up to this many seconds (≤ 300) for the job to end.
    pub wait: Option<f64>,
}

/// A job accepted but not ended yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The job's id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// A delayed job's start time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
}

/// A job's error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobErrorView {
    /// Machine-readable kind (SPEC §2).
    pub kind: String,
    /// For people.
    pub message: String,
}

/// A job record (SPEC §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// A delayed job: it starts no earlier than this (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// The failed or canceled job this one retries (`POST /v1/jobs/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// The job's priority, 0..=9, when its submit set one (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// The latest progress a running attempt reported (SPEC §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
    /// The workflow whose step this job is (SPEC §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The step's name within its workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The batch this job belongs to (its job or its `on_complete` callback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// How far a job is, as it last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// 0 to 100.
    pub percent: f64,
    /// What it is doing, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /v1/jobs` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only this function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Only this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Page size, 1..=1000 (default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Most jobs one `POST /v1/jobs/batch` takes.
pub const MAX_BATCH_JOBS: usize = 1000;

/// `POST /v1/jobs/batch` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// 1..=1000 jobs, each as the body of `POST /v1/jobs`.
    pub jobs: Vec<SubmitRequest>,
}

/// What became of one job of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchOutcome {
    /// A new job, queued (or delayed).
    Created,
    /// Its id or idempotency key names a job already: that one, never a second run.
    Existing,
    /// Refused, as `POST /v1/jobs` would have refused it alone.
    Error,
}

/// One job's answer in a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// What became of it.
    pub outcome: BatchOutcome,
    /// `created`: the new job's id; `existing`: the original job's id (another id than the
    /// one sent when the idempotency key matched); `error`: the job's id once it had one
    /// (an unconfirmed publish: the job may still run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The status code `POST /v1/jobs` would have answered for this job alone: 202
    /// (created), 200 (existing) or the error's.
    pub http_status: u16,
    /// A delayed job's start time (RFC 3339), when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// `error`: the error `POST /v1/jobs` would have answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// The answer of `POST /v1/jobs/batch`: every job's, in the request's order, and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    /// One answer per job of the request, in its order.
    pub jobs: Vec<BatchItem>,
    /// Jobs created.
    pub created: u32,
    /// Jobs that named an existing job.
    pub existing: u32,
    /// Jobs refused.
    pub failed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_submit_request_sends_only_what_is_set() {
        let request = SubmitRequest {
            group: "g".into(),
            function: "f".into(),
            args: Some(Value::Null),
            id: None,
            idempotency_key: None,
            timeout_ms: Some(5),
            run_at: None,
            delay_ms: None,
            priority: None,
        };
        let sent = serde_json::to_value(&request).unwrap();
        assert_eq!(
            sent,
            json!({"group": "g", "function": "f", "args": null, "timeout_ms": 5})
        );
        let read: SubmitRequest = serde_json::from_value(json!({"group": "g", "function": "f"})).unwrap();
        assert_eq!(read.args, None);
    }

    #[test]
    fn a_submit_priority_is_an_integer_from_0_to_9() {
        let read = |priority: Value| {
            serde_json::from_value::<SubmitRequest>(
                json!({"group": "g", "function": "f", "priority": priority}),
            )
        };
        assert_eq!(read(json!(9)).unwrap().priority, Some(9));
        assert_eq!(read(json!(0)).unwrap().priority, Some(0));
        assert_eq!(read(Value::Null).unwrap().priority, None);
        for bad in [json!(10), json!(256), json!(-1), json!(2.5), json!("high")] {
            let err = read(bad.clone()).unwrap_err().to_string();
            assert!(
                err.contains("priority must be an integer from 0 to 9"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn records_ignore_unknown_fields_and_need_the_required_ones() {
        let record = json!({
            "id": "j", "group": "g", "function": "f", "status": "queued", "args": null,
            "attempts": 0, "submitted_at": "2026-01-01T00:00:00.000Z", "priority": 3,
            "future_field": true
        });
        let view: JobView = serde_json::from_value(record.clone()).unwrap();
        assert_eq!((view.result, view.priority), (None, Some(3)));
        let mut without_status = record;
        without_status.as_object_mut().unwrap().remove("status");
        assert!(serde_json::from_value::<JobView>(without_status).is_err());
    }

    #[test]
    fn list_queries_leave_out_unset_filters() {
        let query = ListQuery {
            status: Some("failed".into()),
            limit: Some(3),
            ..ListQuery::default()
        };
        assert_eq!(
            serde_json::to_value(&query).unwrap(),
            json!({"status": "failed", "limit": 3})
        );
    }
}
