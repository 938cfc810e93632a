//! `/v1/jobs/...`: status, listing, cancel, delete (submits are in [`submit`](super::submit)).

use super::backend;
use super::error::ApiError;
use super::openapi::{BackendDown, RedisDown, UnknownJob};
use super::views::job_view;
use crate::announce::announce;
use crate::state::{AppState, SharedState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use jobfleet_api::{ErrorBody, JobId, JobPage, JobView, ListQuery, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use jobfleet_common::coordinator::{Cursor, EndEarly, EndRequest, Forget, ListFilter};
use jobfleet_common::message::{ErrorKind, JobError, JobStatus};

/// A job's record.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(JobId),
    responses(
        (status = 200, description = "The job", body = JobView),
        UnknownJob,
        RedisDown,
    )
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(JobId { id }): Path<JobId>,
) -> Result<Json<JobView>, ApiError> {
    let record = backend::redis(state.coordinator.job(&id))
        .await?
        .ok_or_else(|| ApiError::unknown_job(&id))?;
    Ok(Json(job_view(&record)))
}

/// Jobs, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = status_filter(query.status)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIST_LIMIT}"
        )));
    }
    let cursor = cursor_of(query.cursor)?;
    let filter = ListFilter {
        group: non_empty(query.group),
        function: non_empty(query.function),
        status,
    };
    let (records, next) =
        backend::redis(state.coordinator.list(&filter, limit as usize, cursor.as_ref())).await?;
    Ok(Json(JobPage {
        jobs: records.iter().map(job_view).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// `Some` of a non-empty text: an empty query or filter field means "not given".
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// The status of a listing or bulk filter (400 for an unknown one).
pub fn status_filter(text: Option<String>) -> Result<Option<JobStatus>, ApiError> {
    non_empty(text)
        .map(|s| {
            s.parse::<JobStatus>().map_err(|e| {
                ApiError::bad_request(format!("{e}: use queued, started, finished, failed or canceled"))
            })
        })
        .transpose()
}

/// The listing position of a `cursor` (400 for one no listing answered).
pub fn cursor_of(text: Option<String>) -> Result<Option<Cursor>, ApiError> {
    non_empty(text)
        .map(|text| Cursor::decode(&text).ok_or_else(|| ApiError::bad_request("invalid cursor")))
        .transpose()
}

/// Cancel a job.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(JobId),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        UnknownJob,
        (status = 409, description = "The job has already ended", body = ErrorBody),
        BackendDown,
    )
)]
pub async fn cancel(
    State(state): State<SharedState>,
    Path(JobId { id }): Path<JobId>,
) -> Result<Json<JobView>, ApiError> {
    match cancel_job(&state, &id, None).await? {
        EndEarly::Ended { record, .. } => Ok(Json(job_view(&record))),
        EndEarly::Conflict(status) => Err(ApiError::conflict(format!(
            "job {id:?} is {status}; only queued or started jobs can be canceled"
        ))),
        EndEarly::Missing => Err(ApiError::unknown_job(&id)),
    }
}

/// Cancels job `id` (of `group`, when known): queued or started → canceled, its result
/// announced, and a started job's sandbox stopped wherever it runs.
pub async fn cancel_job(state: &AppState, id: &str, group: Option<&str>) -> Result<EndEarly, ApiError> {
    let error = JobError::new(ErrorKind::Canceled, "canceled by request");
    let ended = state.coordinator.end_early(EndRequest {
        id,
        group,
        status: JobStatus::Canceled,
        error: &error,
        allowed_from: &[JobStatus::Queued, JobStatus::Started],
    });
    let ended = backend::redis(ended).await?;
    if let EndEarly::Ended { previous, record } = &ended {
        // Announce first: a worker that stops the job then finds the result published
        // and adds none of its own.
        announce(state, record).await;
        if *previous == JobStatus::Started {
            // Stop the sandbox wherever it runs. The job is canceled either way: if the
            // broadcast fails, the sandbox runs on and its late outcome is fenced off.
            let broadcast = async {
                let channel = state.publisher.get().await?;
                let sent = jobfleet_common::control::publish_cancel(&channel, &state.topology, id).await;
                if sent.is_err() {
                    state.publisher.invalidate().await;
                }
                sent
            };
            if let Err(e) = backend::broker(broadcast).await {
                tracing::warn!(error = %e, job_id = %id, "could not broadcast the cancel; the job is canceled, its sandbox runs to its end");
            }
        }
    }
    Ok(ended)
}

/// Forget an ended job's record.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(JobId),
    responses(
        (status = 204, description = "Forgotten"),
        UnknownJob,
        (status = 409, description = "The job has not ended", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn delete(
    State(state): State<SharedState>,
    Path(JobId { id }): Path<JobId>,
) -> Result<StatusCode, ApiError> {
    let mut forgot = backend::redis(state.coordinator.forget(&id)).await?;
    if let Forget::Unannounced(record) = &forgot {
        // Its result (a cancel's) is owed first: once deleted, no copy would publish it.
        announce(&state, record).await;
        forgot = backend::redis(state.coordinator.forget(&id)).await?;
    }
    match forgot {
        Forget::Deleted => Ok(StatusCode::NO_CONTENT),
        Forget::Unannounced(_) => Err(ApiError::unavailable(format!(
            "job {id:?} was canceled and its result is not published yet (the broker did not take it); \
             retry the delete"
        ))),
        Forget::Conflict(status) => Err(ApiError::conflict(format!(
            "job {id:?} is {status}; only ended jobs can be deleted"
        ))),
        Forget::Missing => Err(ApiError::unknown_job(&id)),
    }
}
