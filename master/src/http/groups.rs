//! `/v1/groups` and `/v1/workers`: the fleet as the coordinator and the broker see it.

use super::backend;
use super::error::ApiError;
use super::openapi::{BackendDown, RedisDown, UnknownGroup};
use super::views::worker_view;
use crate::fleet::{queue_depth, serving};
use crate::state::{AppState, SharedState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use jobfleet_api::{ErrorBody, GroupList, GroupName, GroupView, LimitsPatch, WorkerList};
use jobfleet_common::config::GroupConfig;
use jobfleet_common::limits::{is_valid_limit_key, Change, LimitsChange, RateLimit};
use serde_json::Value;

/// A configured group's settings, or 404.
fn configured<'a>(state: &'a AppState, group: &str) -> Result<&'a GroupConfig, ApiError> {
    state
        .config
        .group(group)
        .ok_or_else(|| ApiError::not_found(format!("unknown group {group:?}")))
}

/// One configured group's view, given the live workers.
async fn group_view(
    state: &AppState,
    name: &str,
    config: &GroupConfig,
    workers: &[Value],
) -> Result<GroupView, ApiError> {
    let (failures, broken) = backend::redis(state.coordinator.group_health(name)).await?;
    let limits = backend::redis(state.coordinator.limits(name, &config.limits())).await?;
    let held = backend::redis(state.coordinator.held_counts(&[name.to_string()])).await?;
    Ok(GroupView {
        name: name.to_string(),
        functions: config.functions.keys().cloned().collect(),
        workers: serving(workers, name),
        queue_depth: queue_depth(state, name).await?,
        running: backend::redis(state.coordinator.running(name)).await?,
        consecutive_failures: u64::from(failures),
        broken,
        paused: limits.paused,
        max_running: limits.max_running,
        rate_limit: limits.rate_limit.map(|rate| rate.to_string()),
        limit_key: limits.limit_key,
        held: held.first().copied().unwrap_or(0),
    })
}

/// The group as it is now, as `GET /v1/groups/{group}` shows it.
async fn current(state: SharedState, group: String) -> Result<Json<GroupView>, ApiError> {
    get(State(state), Path(GroupName { group })).await
}

/// All groups.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = GroupList), BackendDown)
)]
pub async fn list(State(state): State<SharedState>) -> Result<Json<GroupList>, ApiError> {
    let workers = backend::redis(state.coordinator.workers()).await?;
    let mut groups = Vec::new();
    for (name, config) in &state.config.groups {
        groups.push(group_view(&state, name, config, &workers).await?);
    }
    Ok(Json(GroupList { groups }))
}

/// One group.
#[utoipa::path(
    get, path = "/v1/groups/{group}", tag = "groups",
    params(GroupName),
    responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
) -> Result<Json<GroupView>, ApiError> {
    let config = configured(&state, &group)?;
    let workers = backend::redis(state.coordinator.workers()).await?;
    Ok(Json(group_view(&state, &group, config, &workers).await?))
}

/// Clear a group's broken flag and failure count.
#[utoipa::path(
    post, path = "/v1/groups/{group}/reset", tag = "groups",
    params(GroupName),
    responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
)]
pub async fn reset(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
) -> Result<Json<GroupView>, ApiError> {
    configured(&state, &group)?;
    backend::redis(state.coordinator.reset_group(&group)).await?;
    tracing::info!(%group, "group reset");
    current(state, group).await
}

/// Pause a group: it starts nothing; its queued jobs wait (SPEC §9).
#[utoipa::path(
    post, path = "/v1/groups/{group}/pause", tag = "groups",
    params(GroupName),
    responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
)]
pub async fn pause(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
) -> Result<Json<GroupView>, ApiError> {
    set_paused(state, group, true).await
}

/// Resume a paused group: its held jobs start as its limits allow.
#[utoipa::path(
    post, path = "/v1/groups/{group}/resume", tag = "groups",
    params(GroupName),
    responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
)]
pub async fn resume(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
) -> Result<Json<GroupView>, ApiError> {
    set_paused(state, group, false).await
}

async fn set_paused(state: SharedState, group: String, paused: bool) -> Result<Json<GroupView>, ApiError> {
    configured(&state, &group)?;
    backend::redis(state.coordinator.set_paused(&group, paused)).await?;
    tracing::info!(%group, paused, "group paused or resumed");
    current(state, group).await
}

/// Change a group's limits at run time (kept in Redis over restarts; a field left out
/// stays, `null` lifts the limit).
#[utoipa::path(
    patch, path = "/v1/groups/{group}/limits", tag = "groups",
    params(GroupName),
    request_body = LimitsPatch,
    responses(
        (status = 200, body = GroupView),
        (status = 400, description = "Not a limits object, a max_running under 1, a rate_limit not N/s, N/m or N/h, or a limit_key that is no field name", body = ErrorBody),
        UnknownGroup,
        BackendDown,
    )
)]
pub async fn change_limits(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
    body: Result<Json<LimitsPatch>, JsonRejection>,
) -> Result<Json<GroupView>, ApiError> {
    configured(&state, &group)?;
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let change = limits_change(patch)?;
    backend::redis(state.coordinator.change_limits(&group, &change)).await?;
    tracing::info!(%group, ?change, "group limits changed");
    current(state, group).await
}

/// Go back to the config file's limits (the pause state stays).
#[utoipa::path(
    delete, path = "/v1/groups/{group}/limits", tag = "groups",
    params(GroupName),
    responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
)]
pub async fn reset_limits(
    State(state): State<SharedState>,
    Path(GroupName { group }): Path<GroupName>,
) -> Result<Json<GroupView>, ApiError> {
    configured(&state, &group)?;
    backend::redis(state.coordinator.reset_limits(&group)).await?;
    tracing::info!(%group, "group limits back to the config file's");
    current(state, group).await
}

/// Checks a limits patch; a bad value is a 400 naming it.
fn limits_change(patch: LimitsPatch) -> Result<LimitsChange, ApiError> {
    let max_running = match patch.max_running {
        None => Change::Keep,
        Some(None) => Change::Lift,
        Some(Some(0)) => return Err(ApiError::bad_request("max_running must be at least 1")),
        Some(Some(cap)) => Change::Set(cap),
    };
    let rate_limit = match patch.rate_limit {
        None => Change::Keep,
        Some(None) => Change::Lift,
        Some(Some(text)) => Change::Set(
            text.parse::<RateLimit>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let limit_key = match patch.limit_key {
        None => Change::Keep,
        Some(None) => Change::Lift,
        Some(Some(key)) if is_valid_limit_key(&key) => Change::Set(key),
        Some(Some(key)) => {
            return Err(ApiError::bad_request(format!(
                "limit_key {key:?}: name a top-level field of args (1..64 chars)"
            )))
        }
    };
    Ok(LimitsChange {
        max_running,
        rate_limit,
        limit_key,
    })
}

/// Live workers.
#[utoipa::path(
    get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList), RedisDown)
)]
pub async fn workers(State(state): State<SharedState>) -> Result<Json<WorkerList>, ApiError> {
    let workers = backend::redis(state.coordinator.workers()).await?;
    Ok(Json(WorkerList {
        workers: workers.iter().map(worker_view).collect(),
    }))
}
