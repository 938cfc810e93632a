//! `POST /v1/jobs/batch`: up to [`MAX_BATCH_JOBS`] jobs in one request, each checked and
//! answered as `POST /v1/jobs` would, with the same guarantees (see
//! [`submission`](super::submission)) at the cost of about one submit: their records in one
//! pipelined Redis round trip, their messages all sent before their confirms are awaited.

use super::error::ApiError;
use super::submission::{self, Submission};
use super::submit::{self, Prepared};
use crate::state::{AppState, SharedState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jobfleet_api::{
    rfc3339, BatchItem, BatchOutcome, BatchRequest, BatchResult, ErrorBody, SubmitRequest, MAX_BATCH_JOBS,
};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::{CoordinatorError, Submitted};
use serde::Deserialize;
use serde_json::Value;

/// The largest batch body, bytes (unless a single job's limit is larger).
pub const MAX_BATCH_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The largest batch body under `config`: [`MAX_BATCH_BODY_BYTES`], or a single job's
/// limit if that is larger.
pub fn body_limit(config: &Config) -> usize {
    super::body_limit(config).max(MAX_BATCH_BODY_BYTES)
}

/// The body as read: each job is parsed alone, so a malformed one fails only itself.
#[derive(Deserialize)]
struct RawBatch {
    jobs: Vec<Value>,
}

/// Submit many jobs.
#[utoipa::path(
    post, path = "/v1/jobs/batch", tag = "jobs",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Every job's answer, in the request's order: created, existing or its error (also when every job fails)", body = BatchResult),
        (status = 400, description = "Malformed body (not JSON, no `jobs` array) or no job", body = ErrorBody),
        (status = 413, description = "Body over 32 MiB (or a single job's body limit, if larger)", body = ErrorBody),
        (status = 422, description = "More than 1000 jobs", body = ErrorBody),
        (status = 503, description = "The coordinator (Redis) down or slow: no job of the batch was submitted", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResult>, ApiError> {
    let traceparent = submit::traceparent_of(&headers);
    let specs = read(&state, body)?;
    let now = jobfleet_common::now_ms();
    let prepared: Vec<Result<Prepared, ApiError>> =
        specs.into_iter().map(|spec| prepare(&state, spec, now)).collect();
    let submissions: Vec<Submission<'_>> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|p| p.submission(traceparent.as_deref()))
        .collect();
    let submitted = match submissions.is_empty() {
        true => Vec::new(),
        false => submission::record_all(&state, &submissions).await?,
    };
    let created: Vec<Submission<'_>> = submissions
        .iter()
        .zip(&submitted)
        .filter(|(_, answer)| **answer == Submitted::Created)
        .map(|(s, _)| *s)
        .collect();
    let published = submit::publish_created_all(&state, &created).await;
    Ok(Json(answer(prepared, submitted, published)))
}

/// The jobs of the body, 1..=[`MAX_BATCH_JOBS`] of them.
fn read(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Vec<Value>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(format!(
            "a batch body has at most {} bytes: send fewer jobs a request",
            body_limit(&state.config)
        )),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let RawBatch { jobs } = submit::parse(state, Ok(body))?;
    match jobs.len() {
        0 => Err(ApiError::bad_request(format!(
            "jobs is empty: a batch has 1..={MAX_BATCH_JOBS} jobs"
        ))),
        n if n > MAX_BATCH_JOBS => Err(ApiError::invalid_value(format!(
            "a batch has at most {MAX_BATCH_JOBS} jobs, this one {n}: send them in several batches"
        ))),
        _ => Ok(jobs),
    }
}

/// One job of the batch, checked as `POST /v1/jobs` checks its body.
fn prepare(state: &AppState, spec: Value, now: i64) -> Result<Prepared, ApiError> {
    let request: SubmitRequest =
        serde_json::from_value(spec).map_err(|e| ApiError::bad_request(format!("invalid job: {e}")))?;
    submit::prepare(state, request, now)
}

/// Every job's answer in order: `prepared` holds them all, `submitted` answers the valid
/// ones in order, `published` the created ones in order.
fn answer(
    prepared: Vec<Result<Prepared, ApiError>>,
    submitted: Vec<Submitted>,
    published: Vec<Result<(), ApiError>>,
) -> BatchResult {
    let mut submitted = submitted.into_iter();
    let mut published = published.into_iter();
    let jobs: Vec<BatchItem> = prepared
        .into_iter()
        .map(|job| {
            let job = job.map_err(|e| (None, e))?;
            match submitted.next() {
                Some(Submitted::Created) => match published.next() {
                    Some(Err(e)) => Err((Some(job.job.id), e)),
                    _ => Ok(item(
                        BatchOutcome::Created,
                        job.job.id,
                        StatusCode::ACCEPTED,
                        job.job.run_at,
                    )),
                },
                Some(Submitted::Existing(id)) => Ok(item(BatchOutcome::Existing, id, StatusCode::OK, None)),
                Some(Submitted::GroupBroken) => Err((None, submit::broken(&job.job.group))),
                None => Err((
                    None,
                    CoordinatorError::Corrupt("a submit without an answer".into()).into(),
                )),
            }
        })
        .map(|answer| answer.unwrap_or_else(|(id, e)| failed(id, e)))
        .collect();
    let count = |outcome| jobs.iter().filter(|j| j.outcome == outcome).count() as u32;
    BatchResult {
        created: count(BatchOutcome::Created),
        existing: count(BatchOutcome::Existing),
        failed: count(BatchOutcome::Error),
        jobs,
    }
}

fn item(outcome: BatchOutcome, id: String, status: StatusCode, run_at: Option<i64>) -> BatchItem {
    BatchItem {
        outcome,
        id: Some(id),
        http_status: status.as_u16(),
        run_at: run_at.and_then(rfc3339),
        error: None,
    }
}

fn failed(id: Option<String>, e: ApiError) -> BatchItem {
    let (status, error) = e.into_detail();
    BatchItem {
        outcome: BatchOutcome::Error,
        id,
        http_status: status.as_u16(),
        run_at: None,
        error: Some(error),
    }
}
