//! `GET /v1/audit` and the writing of audit entries (SPEC §8).

use super::access::Caller;
use super::backend;
use super::error::ApiError;
use crate::state::{AppState, SharedState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use jobfleet_api::{rfc3339, AuditEntry, AuditPage, AuditQuery, ErrorBody, DEFAULT_AUDIT_LIMIT};
use tracing::{error, info};

/// Largest `limit` of `GET /v1/audit`.
const MAX_AUDIT_LIMIT: u32 = 1000;

/// Writes one entry for an answered request. The action has happened whatever Redis does
/// now, so a failed write does not change the answer: it is logged (with the entry) and
/// counted in `jobfleet_audit_write_failures_total`.
pub async fn record(state: &AppState, caller: &Caller, action: String, target: String, status: StatusCode) {
    let entry = AuditEntry {
        at: rfc3339(jobfleet_common::now_ms()).unwrap_or_default(),
        who: caller.name().to_string(),
        role: caller.role().to_string(),
        action,
        target,
        status: status.as_u16(),
    };
    let text = serde_json::to_string(&entry).unwrap_or_default();
    info!(audit = %text, "audited action");
    let keep = state.config.audit_entries;
    if let Err(e) = backend::redis(state.coordinator.append_audit(&text, keep)).await {
        state.metrics.audit_write_failures.inc();
        error!(audit = %text, error = %e, "cannot write the audit entry");
    }
}

/// The audit trail: cancels and admin actions, newest first (admin only).
#[utoipa::path(
    get, path = "/v1/audit", tag = "system",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, description = "Bad query", body = ErrorBody), (status = 503, description = "Redis down", body = ErrorBody))
)]
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_AUDIT_LIMIT}"
        )));
    }
    let texts = backend::redis(state.coordinator.audit(limit as usize)).await?;
    // An entry that does not parse (written by hand, or by a later version) is skipped.
    let entries = texts
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    Ok(Json(AuditPage { entries }))
}
