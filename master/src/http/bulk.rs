//! Bulk actions (SPEC §9, admin): `POST /v1/jobs/cancel` cancels the queued and started
//! jobs a filter matches; `POST /v1/jobs/retry` resubmits the failed and canceled ones as
//! new jobs whose records name the original in `retry_of`.
//!
//! The work of one request is bounded: it acts on at most [`MAX_BULK_JOBS`] matching jobs
//! (the listing also stops after examining 10,000 index entries) and answers a
//! `next_cursor` to go on from. A retry is submitted with the idempotency key
//! `retry-of:<original id>`, so retrying a job twice (a repeated request, two admins)
//! creates one new job.

use super::backend;
use super::error::ApiError;
use super::jobs::{cancel_job, cursor_of, non_empty, status_filter};
use super::openapi::{BackendDown, BadFilter, TooManyIds, UnknownGroup};
use super::submission::{self, Submission};
use super::submit;
use crate::state::SharedState;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use futures::stream::{self, StreamExt, TryStreamExt};
use jobfleet_api::{BulkFilter, BulkResult, MAX_BULK_JOBS};
use jobfleet_common::coordinator::{Cursor, EndEarly, JobRecord, ListFilter, Submitted};
use jobfleet_common::message::{is_valid_job_id, new_job_id, JobMessage, JobStatus};

/// Jobs acted on at once within one request.
const IN_FLIGHT: usize = 16;

/// Declares bulk action routes: each one's OpenAPI entry (a [`BulkFilter`] in, a
/// [`BulkResult`] out that `$answer` describes, 400, 404, 422, 503) and its handler, which
/// runs `$act` on every record the filter matches (see [`act`]).
macro_rules! bulk_routes {
    ($($(#[doc = $doc:tt])* post $path:tt => $name:ident($act:ident), answering $answer:tt;)*) => {$(
        $(#[doc = $doc])*
        #[utoipa::path(
            post, path = $path, tag = "jobs",
            request_body = BulkFilter,
            responses(
                (status = 200, description = $answer, body = BulkResult),
                BadFilter,
                UnknownGroup,
                TooManyIds,
                BackendDown,
            )
        )]
        pub async fn $name(
            State(state): State<SharedState>,
            body: Result<Json<BulkFilter>, JsonRejection>,
        ) -> Result<Json<BulkResult>, ApiError> {
            act(&state, body, $act).await
        }
    )*};
}

bulk_routes! {
    /// Cancel the jobs a filter matches.
    post "/v1/jobs/cancel" => cancel(cancel_one),
        answering "How many jobs matched and how many were canceled (queued or started ones)";

    /// Retry the failed and canceled jobs a filter matches, as new jobs.
    post "/v1/jobs/retry" => retry(retry_one),
        answering "How many jobs matched and how many were resubmitted (failed or canceled ones not \
                   retried before); `ids` are the new jobs";
}

/// Runs `act` on every record the filter of `body` matches, [`IN_FLIGHT`] at a time; stops
/// at the first error. `act` answers the id of what changed, if anything did.
async fn act<F, Fut>(
    state: &SharedState,
    body: Result<Json<BulkFilter>, JsonRejection>,
    act: F,
) -> Result<Json<BulkResult>, ApiError>
where
    F: Fn(SharedState, JobRecord) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, ApiError>>,
{
    let (records, next) = matching(state, body).await?;
    let matched = records.len();
    let changed: Vec<Option<String>> = stream::iter(records)
        .map(|record| act(state.clone(), record))
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(Json(answer(matched, changed, next)))
}

/// The answer: `matched` jobs, of which those with an id changed.
fn answer(matched: usize, changed: Vec<Option<String>>, next: Option<Cursor>) -> BulkResult {
    let ids: Vec<String> = changed.into_iter().flatten().collect();
    BulkResult {
        matched: matched as u64,
        changed: ids.len() as u64,
        ids,
        next_cursor: next.map(|c| c.encode()),
    }
}

/// Cancels `record`'s job if it is queued or started; its id when it was canceled.
async fn cancel_one(state: SharedState, record: JobRecord) -> Result<Option<String>, ApiError> {
    if !matches!(record.status, JobStatus::Queued | JobStatus::Started) {
        return Ok(None);
    }
    match cancel_job(&state, &record.id, Some(&record.group)).await? {
        EndEarly::Ended { .. } => Ok(Some(record.id)),
        EndEarly::Conflict(_) | EndEarly::Missing => Ok(None),
    }
}

/// Resubmits `record`'s job as a new job if it failed or was canceled and was not retried
/// before; the new job's id when one was created.
async fn retry_one(state: SharedState, record: JobRecord) -> Result<Option<String>, ApiError> {
    if !matches!(record.status, JobStatus::Failed | JobStatus::Canceled) {
        return Ok(None);
    }
    let job = JobMessage {
        id: new_job_id(),
        group: record.group,
        function: record.function,
        args: record.args,
        submitted_at: Some(jobfleet_common::now_ms()),
        timeout_ms: record.timeout_ms,
        run_at: None,
        delay_ms: None,
        priority: record.priority,
        member: Default::default(),
    };
    let key = format!("retry-of:{}", record.id);
    let submission = Submission {
        job: &job,
        idempotency_key: Some(&key),
        traceparent: None,
        delay_until: None,
        retry_of: Some(&record.id),
    };
    match submission::record(&state, submission).await? {
        Submitted::Created => {
            submit::publish_created(&state, submission).await?;
            Ok(Some(job.id))
        }
        Submitted::Existing(_) | Submitted::GroupBroken => Ok(None),
    }
}

/// The records a bulk request's filter matches (at most [`MAX_BULK_JOBS`]) and the cursor
/// to go on from when more may match.
async fn matching(
    state: &SharedState,
    body: Result<Json<BulkFilter>, JsonRejection>,
) -> Result<(Vec<JobRecord>, Option<Cursor>), ApiError> {
    let Json(filter) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ids = filter.ids.clone();
    let cursor = cursor_of(filter.cursor.clone())?;
    let list = list_filter(state, filter)?;
    match ids {
        Some(ids) => {
            if cursor.is_some() {
                return Err(ApiError::bad_request("a cursor goes with a filter without ids"));
            }
            let records = by_ids(state, &ids).await?;
            Ok((records.into_iter().filter(|r| list.matches(r)).collect(), None))
        }
        None => backend::redis(state.coordinator.list(&list, MAX_BULK_JOBS, cursor.as_ref())).await,
    }
}

/// The filter's group, function and status, checked: at least one field (or ids) given, a
/// configured group, a known status.
fn list_filter(state: &SharedState, filter: BulkFilter) -> Result<ListFilter, ApiError> {
    let BulkFilter {
        group,
        function,
        status,
        ids,
        ..
    } = filter;
    let (group, function) = (non_empty(group), non_empty(function));
    if group.is_none() && function.is_none() && non_empty(status.clone()).is_none() && ids.is_none() {
        return Err(ApiError::bad_request(
            "give at least one of group, function, status or ids (an empty filter would act on every job)",
        ));
    }
    if let Some(group) = group.as_deref().filter(|g| state.config.group(g).is_none()) {
        return Err(ApiError::not_found(format!("unknown group {group:?}")));
    }
    Ok(ListFilter {
        group,
        function,
        status: status_filter(status)?,
    })
}

/// The records of `ids` that exist, checked against the id alphabet and the bound.
async fn by_ids(state: &SharedState, ids: &[String]) -> Result<Vec<JobRecord>, ApiError> {
    if ids.len() > MAX_BULK_JOBS {
        return Err(ApiError::invalid_value(format!(
            "{} ids; a bulk request takes at most {MAX_BULK_JOBS}",
            ids.len()
        )));
    }
    if let Some(bad) = ids.iter().find(|id| !is_valid_job_id(id)) {
        let shown: String = bad.chars().take(40).collect();
        return Err(ApiError::bad_request(format!(
            "id {shown:?}: ids are 1..128 chars of [A-Za-z0-9._:-]"
        )));
    }
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    let records = backend::redis(state.coordinator.jobs(&unique)).await?;
    Ok(records.into_iter().flatten().collect())
}
