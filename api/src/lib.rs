//! The JSON documents of the master's HTTP API (SPEC §4), defined once: the master's
//! handlers serve them (their `ToSchema` derives make `/openapi.json`) and the `jobfleet`
//! CLI reads them. Plain serde types and the API's limits; no I/O.
//!
//! Reading is tolerant of additions: unknown fields are ignored, so a master that adds a
//! field does not break an older reader. Fields the OpenAPI document marks required must be
//! present.

mod activity;
mod audit;
mod bulk;
mod error;
mod fleet;
mod jobs;
mod schedules;
mod time;
mod workflows;

pub use activity::{JobLogs, LogLine, LogsQuery, ProgressEvent, MAX_LOG_LIMIT};
pub use audit::{AuditEntry, AuditPage, AuditQuery, DEFAULT_AUDIT_LIMIT};
pub use bulk::{BulkFilter, BulkResult, MAX_BULK_JOBS};
pub use error::{ErrorBody, ErrorDetail};
pub use fleet::{GroupList, GroupName, GroupView, Health, LimitsPatch, WorkerList, WorkerView};
pub use jobs::{
    Accepted, JobErrorView, JobId, JobPage, JobView, ListQuery, ProgressView, SubmitQuery, SubmitRequest,
};
pub use jobs::{BatchItem, BatchOutcome, BatchRequest, BatchResult, MAX_BATCH_JOBS};
pub use schedules::{ScheduleList, ScheduleName, ScheduleRequest, ScheduleView};
pub use time::{parse_rfc3339, rfc3339, LAST_RFC3339_MS};
pub use workflows::{
    BatchCreate, BatchJobRequest, BatchView, FlowAccepted, FlowPath, StepRequest, StepView, WorkflowRequest,
    WorkflowView, MAX_FLOW_ID_CHARS, MAX_FLOW_STEPS,
};

/// Longest `?wait=` of `POST /v1/jobs`, seconds.
pub const MAX_WAIT_SECONDS: u64 = 300;
/// Longest `idempotency_key`, bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Highest `priority` of `POST /v1/jobs` (SPEC §9).
pub const MAX_PRIORITY: u8 = 9;
/// Largest `limit` of `GET /v1/jobs`.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// `limit` of `GET /v1/jobs` when the query has none.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
