//! Bulk actions (SPEC §9, admin): `POST /v1/jobs/cancel` and `POST /v1/jobs/retry` with a
//! filter, answered with how many jobs matched and how many changed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Jobs one bulk request acts on at most: the listing stops after this many matches (or
/// after examining 10,000 index entries) and answers a `next_cursor` to go on from.
pub const MAX_BULK_JOBS: usize = 1000;

/// The filter of a bulk action: the jobs matching every field given. At least one field
/// is required (an empty filter would act on every job).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// Only this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Only this function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Only this status: queued, started, finished, failed or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only these jobs (at most 1000 ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Go on after a previous answer's `next_cursor` (not with `ids`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What a bulk action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    /// Jobs the filter matched in this request.
    pub matched: u64,
    /// Of those, the jobs canceled (queued or started ones), or retried (failed or canceled
    /// ones not retried before).
    pub changed: u64,
    /// The jobs canceled, or the new jobs a retry created.
    #[serde(default)]
    pub ids: Vec<String>,
    /// More jobs may match: send the same filter with this `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
