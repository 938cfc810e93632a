//! `/v1/groups` and `/v1/workers`: the fleet as the coordinator and the broker see it.

use super::backend;
use super::error::ApiError;
use super::openapi::{BackendDown, RedisDown, UnknownGroup};
use super::views::worker_view;
use crate::fleet::{queue_depth, serving};
use crate::state::{AppState, SharedState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
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

/// A configured group named by the route's path, with the state to act on it: a group
/// the configuration does not name is a 404 before the handler runs.
pub struct KnownGroup {
    state: SharedState,
    name: String,
}

impl FromRequestParts<SharedState> for KnownGroup {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Response> {
        let Path(GroupName { group }) = Path::<GroupName>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        configured(state, &group).map_err(IntoResponse::into_response)?;
        Ok(KnownGroup {
            state: state.clone(),
            name: group,
        })
    }
}

impl KnownGroup {
    /// The configured group `name` (404 for one the configuration does not name), for
    /// callers other than the API's routes (the web UI's actions).
    pub fn new(state: &SharedState, name: &str) -> Result<KnownGroup, ApiError> {
        configured(state, name)?;
        Ok(KnownGroup {
            state: state.clone(),
            name: name.to_string(),
        })
    }

    /// The group as it is now, as `GET /v1/groups/{group}` shows it.
    async fn view(&self) -> Result<Json<GroupView>, ApiError> {
        let config = configured(&self.state, &self.name)?;
        let workers = backend::redis(self.state.coordinator.workers()).await?;
        Ok(Json(group_view(&self.state, &self.name, config, &workers).await?))
    }

    /// Pauses or resumes the group.
    async fn set_paused(&self, paused: bool) -> Result<(), ApiError> {
        backend::redis(self.state.coordinator.set_paused(&self.name, paused)).await?;
        tracing::info!(group = %self.name, paused, "group paused or resumed");
        Ok(())
    }
}

/// Declares routes on one configured group that answer it as it is after the route's
/// body has run: each one's OpenAPI entry (200 with the group, 404 for a group the
/// configuration does not name, 503) and its handler, which takes the [`KnownGroup`].
macro_rules! group_routes {
    ($($(#[doc = $doc:tt])* $method:ident $path:tt => $name:ident($group:ident) { $($body:tt)* })*) => {$(
        $(#[doc = $doc])*
        #[utoipa::path(
            $method, path = $path, tag = "groups",
            params(GroupName),
            responses((status = 200, body = GroupView), UnknownGroup, BackendDown)
        )]
        pub async fn $name($group: KnownGroup) -> Result<Json<GroupView>, ApiError> {
            $($body)*
            $group.view().await
        }
    )*};
}

group_routes! {
    /// One group.
    get "/v1/groups/{group}" => get(group) {}

    /// Clear a group's broken flag and failure count.
    post "/v1/groups/{group}/reset" => reset(group) {
        backend::redis(group.state.coordinator.reset_group(&group.name)).await?;
        tracing::info!(group = %group.name, "group reset");
    }

    /// Pause a group: it starts nothing; its queued jobs wait (SPEC §9).
    post "/v1/groups/{group}/pause" => pause(group) {
        group.set_paused(true).await?;
    }

    /// Resume a paused group: its held jobs start as its limits allow.
    post "/v1/groups/{group}/resume" => resume(group) {
        group.set_paused(false).await?;
    }

    /// Go back to the config file's limits (the pause state stays).
    delete "/v1/groups/{group}/limits" => reset_limits(group) {
        backend::redis(group.state.coordinator.reset_limits(&group.name)).await?;
        tracing::info!(group = %group.name, "group limits back to the config file's");
    }
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
    group: KnownGroup,
    body: Result<Json<LimitsPatch>, JsonRejection>,
) -> Result<Json<GroupView>, ApiError> {
    let Json(patch) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let change = limits_change(patch)?;
    backend::redis(group.state.coordinator.change_limits(&group.name, &change)).await?;
    tracing::info!(group = %group.name, ?change, "group limits changed");
    group.view().await
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
