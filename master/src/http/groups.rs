//! `/v1/groups` and `/v1/workers`: the fleet as the coordinator and the broker see it.

use super::error::{ApiError, ErrorBody};
use super::views::{GroupList, GroupView, WorkerList, WorkerView};
use crate::state::{AppState, SharedState};
use axum::extract::{Path, State};
use axum::Json;
use jobfleet_common::lapin::options::QueueDeclareOptions;
use serde_json::Value;

/// Jobs waiting in a group's queue, from a passive declare.
pub async fn queue_depth(state: &AppState, group: &str) -> Result<u64, ApiError> {
    let channel = state.inspector.get().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match channel
        .queue_declare(
            state.topology.group_queue(group).into(),
            passive,
            Default::default(),
        )
        .await
    {
        Ok(queue) => Ok(u64::from(queue.message_count())),
        Err(e) => {
            // A failed passive declare closes the channel; open a fresh one next time.
            state.inspector.invalidate().await;
            Err(jobfleet_common::client::ClientError::from(e).into())
        }
    }
}

/// One group's view; `None` for a group not in the configuration.
pub async fn group_view(
    state: &AppState,
    name: &str,
    workers: &[Value],
) -> Result<Option<GroupView>, ApiError> {
    let Some(config) = state.config.group(name) else {
        return Ok(None);
    };
    let (failures, broken) = state.coordinator.group_health(name).await?;
    let serving = workers
        .iter()
        .filter(|w| {
            w["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == name))
        })
        .count();
    Ok(Some(GroupView {
        name: name.to_string(),
        functions: config.functions.keys().cloned().collect(),
        workers: serving as u64,
        queue_depth: queue_depth(state, name).await?,
        running: state.coordinator.running(name).await?,
        consecutive_failures: u64::from(failures),
        broken,
    }))
}

/// All groups.
#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = GroupList), (status = 503, description = "A backing service down", body = ErrorBody))
)]
pub async fn list(State(state): State<SharedState>) -> Result<Json<GroupList>, ApiError> {
    let workers = state.coordinator.workers().await?;
    let mut groups = Vec::new();
    for name in state.config.groups.keys() {
        groups.extend(group_view(&state, name, &workers).await?);
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
    let workers = state.coordinator.workers().await?;
    group_view(&state, &group, &workers)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown group {group:?}")))
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
    if state.config.group(&group).is_none() {
        return Err(ApiError::not_found(format!("unknown group {group:?}")));
    }
    state.coordinator.reset_group(&group).await?;
    tracing::info!(%group, "group reset");
    let workers = state.coordinator.workers().await?;
    group_view(&state, &group, &workers)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("unknown group {group:?}")))
}

/// Live workers.
#[utoipa::path(
    get, path = "/v1/workers", tag = "workers",
    responses((status = 200, body = WorkerList), (status = 503, description = "Redis down", body = ErrorBody))
)]
pub async fn workers(State(state): State<SharedState>) -> Result<Json<WorkerList>, ApiError> {
    let workers = state.coordinator.workers().await?;
    Ok(Json(WorkerList {
        workers: workers.iter().map(WorkerView::from).collect(),
    }))
}
