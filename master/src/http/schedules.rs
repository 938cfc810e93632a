//! `/v1/schedules` (SPEC §9): the cron schedules of the config file (`[schedules.<name>]`,
//! read-only here) and those created through the API (stored in Redis). The leader fires
//! them (`crate::scheduler::cron`).

use super::backend;
use super::error::ApiError;
use super::openapi::RedisDown;
use super::submit::{check_function, check_size};
use crate::state::{AppState, SharedState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jobfleet_api::{rfc3339, ErrorBody, ScheduleList, ScheduleName, ScheduleRequest, ScheduleView};
use jobfleet_common::coordinator::StoredSchedule;
use jobfleet_common::schedule::{check_name, ScheduleConfig, ScheduleError};
use serde_json::Value;

/// Create a schedule.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules",
    request_body = ScheduleRequest,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "Malformed request or name", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 409, description = "A schedule of that name exists (in the config file, or created before: delete it first)", body = ErrorBody),
        (status = 413, description = "Args over max_args_bytes", body = ErrorBody),
        (status = 422, description = "Invalid cron expression, unknown time zone, unknown function, or args that fail the function's schema", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn create(
    State(state): State<SharedState>,
    body: Result<Json<ScheduleRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let name = request.name.clone();
    let schedule = validate(&state, request)?;
    let stored = StoredSchedule {
        schedule,
        created_at: jobfleet_common::now_ms(),
    };
    if !backend::redis(state.coordinator.create_schedule(&name, &stored)).await? {
        return Err(ApiError::conflict(format!(
            "schedule {name:?} exists; DELETE /v1/schedules/{name} first to replace it"
        )));
    }
    let view = view(&name, &stored.schedule, "api", None);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every schedule: the config file's and the API's.
#[utoipa::path(
    get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "The schedules", body = ScheduleList), RedisDown)
)]
pub async fn list(State(state): State<SharedState>) -> Result<Json<ScheduleList>, ApiError> {
    let fired = backend::redis(state.coordinator.fired()).await?;
    let mut schedules: Vec<ScheduleView> = state
        .config
        .schedules
        .iter()
        .map(|(name, schedule)| view(name, schedule, "config", fired.get(name).copied()))
        .collect();
    for (name, stored) in backend::redis(state.coordinator.stored_schedules()).await? {
        if !state.config.schedules.contains_key(&name) {
            schedules.push(view(&name, &stored.schedule, "api", fired.get(&name).copied()));
        }
    }
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ScheduleList { schedules }))
}

/// Delete a schedule created through the API (its jobs already fired stay).
#[utoipa::path(
    delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(ScheduleName),
    responses(
        (status = 204, description = "Deleted: it fires no more"),
        (status = 404, description = "Unknown schedule", body = ErrorBody),
        (status = 409, description = "A schedule of the config file (remove it there)", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn delete(
    State(state): State<SharedState>,
    Path(ScheduleName { name }): Path<ScheduleName>,
) -> Result<StatusCode, ApiError> {
    if state.config.schedules.contains_key(&name) {
        return Err(config_owned(&name));
    }
    if backend::redis(state.coordinator.delete_schedule(&name)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("unknown schedule {name:?}")))
    }
}

fn config_owned(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "schedule {name:?} is defined in the config file; change it there"
    ))
}

/// Checks a new schedule: its name (400), not the config file's (409), its group (404),
/// function (422), cron expression and time zone (422), and args (413, 422).
fn validate(state: &AppState, request: ScheduleRequest) -> Result<ScheduleConfig, ApiError> {
    let ScheduleRequest {
        name,
        cron,
        group,
        function,
        args,
        timezone,
    } = request;
    check_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if state.config.schedules.contains_key(&name) {
        return Err(config_owned(&name));
    }
    check_function(state, &group, &function)?;
    let schedule = ScheduleConfig {
        cron,
        group,
        function,
        args: args.unwrap_or(Value::Null),
        timezone,
    };
    schedule
        .timing()
        .map_err(|e: ScheduleError| ApiError::invalid_value(e.to_string()))?;
    check_size(state, &schedule.args)?;
    state
        .schemas
        .check(&schedule.group, &schedule.function, &schedule.args)
        .map_err(ApiError::invalid_args)?;
    Ok(schedule)
}

/// A schedule as the API shows it.
fn view(name: &str, schedule: &ScheduleConfig, source: &str, last_fire: Option<i64>) -> ScheduleView {
    let next_fire = schedule
        .timing()
        .ok()
        .and_then(|timing| timing.next_after(jobfleet_common::now_ms()));
    ScheduleView {
        name: name.to_string(),
        cron: schedule.cron.clone(),
        group: schedule.group.clone(),
        function: schedule.function.clone(),
        args: schedule.args.clone(),
        timezone: schedule.timezone.clone().unwrap_or_else(|| "UTC".into()),
        source: source.to_string(),
        next_fire: next_fire.and_then(rfc3339),
        last_fire: last_fire.and_then(rfc3339),
    }
}
