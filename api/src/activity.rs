//! `/v1/jobs/{id}/logs` and `/v1/jobs/{id}/events` (SPEC §10): a job's log lines, and the
//! Server-Sent Events of its status, progress and log lines.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest `limit` of `GET /v1/jobs/{id}/logs` (also the most events a job keeps).
pub const MAX_LOG_LIMIT: u32 = 1000;

/// `GET /v1/jobs/{id}/logs` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// Only lines after this event id (a page's `next`, or an SSE event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most lines, 1..=1000 (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A job's log lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogs {
    /// The job.
    pub id: String,
    /// The lines.
    pub lines: Vec<LogLine>,
    /// The id to pass as `after` for the lines that follow, when there may be more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// The event id (ordered; `after` and `Last-Event-ID` take it).
    pub event_id: String,
    /// When it was logged (RFC 3339).
    pub at: String,
    /// The attempt that logged it.
    pub attempt: u32,
    /// The line.
    pub line: String,
}

/// The data of a `progress` event of `GET /v1/jobs/{id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressEvent {
    /// When it was reported (RFC 3339).
    pub at: String,
    /// The attempt that reported it.
    pub attempt: u32,
    /// 0 to 100.
    pub percent: f64,
    /// What the job is doing, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
