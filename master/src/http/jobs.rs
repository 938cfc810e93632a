//! `/v1/jobs`: submit (async and `?wait=`), status, listing, cancel, delete.

use super::error::ApiError;
use super::views::job_view;
use crate::announce::announce;
use crate::state::{AppState, SharedState};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobfleet_api::{
    Accepted, ErrorBody, JobPage, JobView, ListQuery, SubmitQuery, SubmitRequest, DEFAULT_LIST_LIMIT,
    MAX_IDEMPOTENCY_KEY_BYTES, MAX_LIST_LIMIT, MAX_WAIT_SECONDS,
};
use jobfleet_common::codec;
use jobfleet_common::coordinator::{Cursor, EndEarly, EndRequest, Forget, JobRecord, ListFilter, Submitted};
use jobfleet_common::lapin::options::BasicPublishOptions;
use jobfleet_common::message::{is_valid_job_id, new_job_id, ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::publish::{confirmed, persistent_properties};
use jobfleet_common::trace::{TraceParent, TRACEPARENT};
use serde_json::Value;
use std::time::Duration;

/// Submit a job.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    params(SubmitQuery),
    request_body = SubmitRequest,
    responses(
        (status = 202, description = "Queued (or still running after `wait`)", body = Accepted),
        (status = 200, description = "The original job of a repeated id or idempotency key, or the ended job under `wait`", body = JobView),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown group", body = ErrorBody),
        (status = 413, description = "Args over max_args_bytes", body = ErrorBody),
        (status = 422, description = "Unknown function, or args fail the function's schema", body = ErrorBody),
        (status = 503, description = "Group broken, or a backing service down", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<SharedState>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // A caller's W3C trace context continues on the job; a malformed one is ignored.
    let traceparent = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| TraceParent::parse(v).is_some())
        .map(String::from);
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = match query.wait {
        Some(w) if w.is_finite() && (0.0..=MAX_WAIT_SECONDS as f64).contains(&w) => {
            Some(Duration::from_secs_f64(w))
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "wait must be 0..={MAX_WAIT_SECONDS} seconds"
            )))
        }
        None => None,
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the request body exceeds the limit for args of {} bytes",
                state.config.max_args_bytes
            ))
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let request: SubmitRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let job = validate(
        &state,
        request.group,
        request.function,
        request.args.unwrap_or(Value::Null),
        request.id,
        request.timeout_ms,
    )?;
    let idempotency_key = match request.idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
            return Err(ApiError::bad_request(format!(
                "idempotency_key must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes"
            )));
        }
        key => key,
    };
    // Listen before the job can end, so a quick result is not missed.
    let waiter = wait.map(|_| state.waiters.register(&job.id));
    let id = match state.coordinator.submit(&job, idempotency_key.as_deref()).await? {
        Submitted::GroupBroken => {
            drop(waiter);
            state.waiters.forget_closed(&job.id);
            return Err(ApiError::group_broken(format!(
                "group {:?} is broken; POST /v1/groups/{}/reset to run jobs again",
                job.group, job.group
            )));
        }
        Submitted::Created => {
            if let Err(e) = publish(&state, &job, traceparent.as_deref()).await {
                state
                    .coordinator
                    .discard(&job.id, &job.group, idempotency_key.as_deref())
                    .await?;
                return Err(e);
            }
            state
                .metrics
                .jobs_submitted
                .with_label_values(&[&job.group, &job.function])
                .inc();
            None
        }
        Submitted::Existing(existing) => Some(existing),
    };
    match (id, wait) {
        // A repeat: the original job, never a second run.
        (Some(existing), wait) => {
            let record = match wait {
                Some(wait) => {
                    wait_for_end(&state, &existing, state.waiters.register(&existing), wait).await?
                }
                None => state.coordinator.job(&existing).await?,
            };
            state.waiters.forget_closed(&job.id);
            let record =
                record.ok_or_else(|| ApiError::not_found(format!("job {existing:?} has expired")))?;
            Ok((StatusCode::OK, Json(job_view(&record))).into_response())
        }
        (None, Some(wait)) => {
            let record = wait_for_end(&state, &job.id, waiter.expect("registered above"), wait).await?;
            match record {
                Some(record) if record.status.is_terminal() => {
                    Ok((StatusCode::OK, Json(job_view(&record))).into_response())
                }
                record => Ok(accepted(&job.id, record.map_or(JobStatus::Queued, |r| r.status))),
            }
        }
        (None, None) => Ok(accepted(&job.id, JobStatus::Queued)),
    }
}

fn accepted(id: &str, status: JobStatus) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: id.to_string(),
            status: status.as_str().to_string(),
        }),
    )
        .into_response()
}

/// Checks a submission against the configuration: group, function, id, timeout, size,
/// schema (SPEC §4, "validate locally").
fn validate(
    state: &AppState,
    group: String,
    function: String,
    args: Value,
    id: Option<String>,
    timeout_ms: Option<u64>,
) -> Result<JobMessage, ApiError> {
    let group_config = state
        .config
        .group(&group)
        .ok_or_else(|| ApiError::not_found(format!("unknown group {group:?}")))?;
    if !group_config.functions.contains_key(&function) {
        return Err(ApiError::unknown_function(format!(
            "group {group:?} has no function {function:?}"
        )));
    }
    let id = match id {
        Some(id) if !is_valid_job_id(&id) => {
            return Err(ApiError::bad_request(
                "id must be 1..128 chars of [A-Za-z0-9._:-]",
            ))
        }
        Some(id) => id,
        None => new_job_id(),
    };
    if timeout_ms == Some(0) {
        return Err(ApiError::bad_request("timeout_ms must be positive"));
    }
    let size = serde_json::to_vec(&args).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > state.config.max_args_bytes {
        return Err(ApiError::too_large(format!(
            "args have {size} bytes; the limit is {}",
            state.config.max_args_bytes
        )));
    }
    state
        .schemas
        .check(&group, &function, &args)
        .map_err(ApiError::invalid_args)?;
    Ok(JobMessage {
        id,
        group,
        function,
        args,
        submitted_at: Some(jobfleet_common::now_ms()),
        timeout_ms,
    })
}

async fn publish(state: &AppState, job: &JobMessage, traceparent: Option<&str>) -> Result<(), ApiError> {
    let channel = state.publisher.get().await?;
    let body = codec::encode(job);
    let result = async {
        let confirm = channel
            .basic_publish(
                state.topology.jobs_exchange().into(),
                job.group.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                persistent_properties(&job.id, traceparent),
            )
            .await?;
        confirmed(confirm, &job.id, &job.group).await
    }
    .await;
    if let Err(e) = result {
        if e.is_connection_error() {
            state.publisher.invalidate().await;
        }
        return Err(e.into());
    }
    Ok(())
}

/// Waits until the job ends or `wait` passes, woken by its result; returns the record.
async fn wait_for_end(
    state: &AppState,
    id: &str,
    woken: tokio::sync::oneshot::Receiver<()>,
    wait: Duration,
) -> Result<Option<JobRecord>, ApiError> {
    // It may have ended before we registered.
    let record = state.coordinator.job(id).await?;
    if record.as_ref().is_none_or(|r| r.status.is_terminal()) {
        return Ok(record);
    }
    // A stopping master answers at once (202 unless the job ended) instead of holding the
    // shutdown for the rest of the wait.
    tokio::select! {
        _ = tokio::time::timeout(wait, woken) => {}
        _ = state.shutdown.cancelled() => {}
    }
    state.waiters.forget_closed(id);
    Ok(state.coordinator.job(id).await?)
}

/// A job's record.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 503, description = "Redis down", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let record = state
        .coordinator
        .job(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown job {id:?}")))?;
    Ok(Json(job_view(&record)))
}

/// Jobs, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
        (status = 503, description = "Redis down", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status = match non_empty(query.status) {
        Some(s) => Some(s.parse::<JobStatus>().map_err(|e| {
            ApiError::bad_request(format!("{e}: use queued, started, finished, failed or canceled"))
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_LIST_LIMIT}"
        )));
    }
    let cursor = match non_empty(query.cursor) {
        Some(text) => Some(Cursor::decode(&text).ok_or_else(|| ApiError::bad_request("invalid cursor"))?),
        None => None,
    };
    let filter = ListFilter {
        group: non_empty(query.group),
        function: non_empty(query.function),
        status,
    };
    let (records, next) = state
        .coordinator
        .list(&filter, limit as usize, cursor.as_ref())
        .await?;
    Ok(Json(JobPage {
        jobs: records.iter().map(job_view).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Cancel a job.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "Canceled", body = JobView),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 409, description = "The job has already ended", body = ErrorBody),
        (status = 503, description = "A backing service down", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let error = JobError::new(ErrorKind::Canceled, "canceled by request");
    match state
        .coordinator
        .end_early(EndRequest {
            id: &id,
            group: None,
            status: JobStatus::Canceled,
            error: &error,
            allowed_from: &[JobStatus::Queued, JobStatus::Started],
        })
        .await?
    {
        EndEarly::Ended { previous, record } => {
            // Announce first: a worker that stops the job then finds the result published
            // and adds none of its own.
            announce(&state, &record).await;
            if previous == JobStatus::Started {
                // Stop the sandbox wherever it runs. The job is canceled either way: if the
                // broadcast fails, the sandbox runs on and its late outcome is fenced off.
                let broadcast = async {
                    let channel = state.publisher.get().await?;
                    jobfleet_common::control::publish_cancel(&channel, &state.topology, &id).await
                };
                if let Err(e) = broadcast.await {
                    state.publisher.invalidate().await;
                    tracing::warn!(error = %e, job_id = %id, "could not broadcast the cancel; the job is canceled, its sandbox runs to its end");
                }
            }
            Ok(Json(job_view(&record)))
        }
        EndEarly::Conflict(status) => Err(ApiError::conflict(format!(
            "job {id:?} is {status}; only queued or started jobs can be canceled"
        ))),
        EndEarly::Missing => Err(ApiError::not_found(format!("unknown job {id:?}"))),
    }
}

/// Forget an ended job's record.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 409, description = "The job has not ended", body = ErrorBody),
        (status = 503, description = "Redis down", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.coordinator.forget(&id).await? {
        Forget::Deleted => Ok(StatusCode::NO_CONTENT),
        Forget::Conflict(status) => Err(ApiError::conflict(format!(
            "job {id:?} is {status}; only ended jobs can be deleted"
        ))),
        Forget::Missing => Err(ApiError::not_found(format!("unknown job {id:?}"))),
    }
}
