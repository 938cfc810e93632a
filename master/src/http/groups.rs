//! `/v1/groups` and `/v1/workers`: the fleet as the coordinator and the broker see it.

use super::backend;
use super::error::ApiError;
use super::openapi::{BackendDown, RedisDown, UnknownGroup};
use super::views::worker_view;
use crate::fleet::{queue_depth, serving};
use crate::state::{AppState, SharedState};
use axum::extract::{Path, State};
use axum::Json;
use jobfleet_api::{GroupList, GroupName, GroupView, WorkerList};
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
    // The answer is the group as it is now, as `GET` shows it.
    get(State(state), Path(GroupName { group })).await
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
