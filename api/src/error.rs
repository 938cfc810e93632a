//! The error document of every failed call: `{"error": {"kind", "message"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: a job error kind of SPEC §2 where one applies (`unknown_function`,
    /// `invalid_args`, `too_large`, `group_broken`), else `bad_request`, `not_found`,
    /// `conflict` or `unavailable`.
    pub kind: String,
    /// For people.
    pub message: String,
}
