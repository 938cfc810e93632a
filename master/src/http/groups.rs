//! `/v1/groups` and `/v1/workers`: the fleet as the coordinator and the broker see it.

use super::backend;
use super::error::ApiError;
use super::views::worker_view;
use crate::fleet::{queue_depth, serving};
use crate::state::{AppState, SharedState};
use axum::extract::{Path, State};
use axum::Json;
use jobfleet_api::{ErrorBody, GroupList, GroupView, WorkerList};
use jobfleet_common::config::GroupConfig;
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
    Ok(GroupView {
        name: name.to_string(),
        functions: config.functions.keys().cloned().collect(),
        workers: serving(workers, name),
        queue_depth: queue_depth(state, name).await?,
        running: backend::redis(state.coordinator.running(name)).await?,
        consecutive_failures: u64::from(failures),
        broken,
    })
}

/// All groups.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = GroupList), (status = 503, description = "A backing service down", body = ErrorBody))
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
    params(("group" = String, Path, description = "The group")),
    responses((status = 200, body = GroupView), (status = 404, description = "Unknown group", body = ErrorBody), (status = 503, description = "A backing service down", body = ErrorBody))
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    let config = configured(&state, &group)?;
    let workers = backend::redis(state.coordinator.workers()).await?;
    Ok(Json(group_view(&state, &group, config, &workers).await?))
}

/// Clear a group's broken flag and failure count.
#[utoipa::path(
    post, path = "/v1/groups/{group}/reset", tag = "groups",
    params(("group" = String, Path, description = "The group")),
    responses((status = 200, body = GroupView), (status = 404, description = "Unknown group", body = ErrorBody), (status = 503, description = "A backing service down", body = ErrorBody))
)]
pub async fn reset(
    State(state): State<SharedState>,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, ApiError> {
    let config = configured(&state, &group)?;
    backend::redis(state.coordinator.reset_group(&group)).await?;
    tracing::info!(%group, "group reset");
    let workers = backend::redis(state.coordinator.workers()).await?;
    Ok(Json(group_view(&state, &group, config, &workers).await?))
}

/// Live workers.
#[utoipa::path(
    get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList), (status = 503, description = "Redis down", body = ErrorBody))
)]
pub async fn workers(State(state): State<SharedState>) -> Result<Json<WorkerList>, ApiError> {
    let workers = backend::redis(state.coordinator.workers()).await?;
    Ok(Json(WorkerList {
        workers: workers.iter().map(worker_view).collect(),
    }))
}
