//! The audit trail's documents (`GET /v1/audit`, SPEC §8).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One audited request: a cancel or an admin action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When the action was answered (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// The token's name, or `anonymous` when the master runs without `[auth]`.
    pub who: String,
    /// The caller's role (`read`, `submit`, `admin`), or `none` without `[auth]`.
    pub role: String,
    /// The method and the route template, e.g. `POST /v1/jobs/{id}/cancel`.
    pub action: String,
    /// The request path, naming the job or group acted on.
    pub target: String,
    /// The answer's HTTP status: whether the action was done.
    pub status: u16,
}

/// `GET /v1/audit`: the newest entries first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntry>,
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries, newest first: 1..=1000, default 100.
    pub limit: Option<u32>,
}

/// `limit` of `GET /v1/audit` when the query has none.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
