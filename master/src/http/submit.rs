//! `POST /v1/jobs`: validate a submission, record and publish it (see
//! [`submission`](super::submission)), and answer at once or, under `?wait=`, when the job
//! ends.

use super::backend;
use super::error::ApiError;
use super::openapi::UnknownGroup;
use super::submission::{self, Submission};
use super::views::job_view;
use crate::state::{AppState, SharedState};
use crate::waiters::Waiter;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jobfleet_api::{
    parse_rfc3339, rfc3339, Accepted, ErrorBody, JobView, SubmitQuery, SubmitRequest,
    MAX_IDEMPOTENCY_KEY_BYTES, MAX_WAIT_SECONDS,
};
use jobfleet_common::codec::{self, MAX_ARGS_DEPTH};
use jobfleet_common::coordinator::{JobRecord, Submitted};
use jobfleet_common::message::{is_valid_job_id, new_job_id, JobMessage, JobStatus, MAX_DELAY_MS};
use jobfleet_common::trace::{TraceParent, TRACEPARENT};

// The API reads `priority` within its own bound: the wire's.
const _: () = assert!(jobfleet_api::MAX_PRIORITY == jobfleet_common::message::MAX_PRIORITY);
use serde::de::DeserializeOwned;
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
        (status = 400, description = "Malformed request, args nested deeper than 64 levels, a priority that is not an integer 0..=9, or a priority above 0 for a group without max_priority", body = ErrorBody),
        UnknownGroup,
        (status = 413, description = "Args over max_args_bytes", body = ErrorBody),
        (status = 422, description = "Unknown function, args fail the function's schema, or a delay (`run_at`, `delay_ms`) that is unreadable or beyond 30 days", body = ErrorBody),
        (status = 503, description = "Group broken, or a backing service down, slow or blocking publishers", body = ErrorBody),
    )
)]
pub async fn submit(
    State(state): State<SharedState>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let traceparent = traceparent_of(&headers);
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let wait = wait_of(query.wait)?;
    let prepared = prepare(&state, parse(&state, body)?, jobfleet_common::now_ms())?;
    let submission = prepared.submission(traceparent.as_deref());
    let job = &prepared.job;
    // Listen before the job can end, so a quick result is not missed.
    let waiter = wait.map(|_| state.waiters.register(&job.id));
    match submission::record(&state, submission).await? {
        Submitted::GroupBroken => Err(broken(&job.group)),
        // A repeat: the original job, never a second run.
        Submitted::Existing(existing) => {
            drop(waiter);
            let record = match wait {
                Some(wait) => {
                    wait_for_end(&state, &existing, state.waiters.register(&existing), wait).await?
                }
                None => backend::redis(state.coordinator.job(&existing)).await?,
            };
            let record =
                record.ok_or_else(|| ApiError::not_found(format!("job {existing:?} has expired")))?;
            Ok((StatusCode::OK, Json(job_view(&record))).into_response())
        }
        Submitted::Created => {
            publish_created(&state, submission).await?;
            match (wait, waiter) {
                (Some(wait), Some(waiter)) => match wait_for_end(&state, &job.id, waiter, wait).await? {
                    Some(record) if record.status.is_terminal() => {
                        Ok((StatusCode::OK, Json(job_view(&record))).into_response())
                    }
                    record => Ok(accepted(job, record.map_or(JobStatus::Queued, |r| r.status))),
                },
                _ => Ok(accepted(job, JobStatus::Queued)),
            }
        }
    }
}

/// A job spec that passed every check of `POST /v1/jobs`, ready to record.
#[derive(Debug)]
pub struct Prepared {
    /// The job, its id chosen and `submitted_at` set.
    pub job: JobMessage,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// A delayed job's start (see [`Submission::delay_until`]).
    pub delay_until: Option<i64>,
}

impl Prepared {
    /// The submission of this job with the caller's trace context.
    pub fn submission<'a>(&'a self, traceparent: Option<&'a str>) -> Submission<'a> {
        Submission {
            job: &self.job,
            idempotency_key: self.idempotency_key.as_deref(),
            traceparent,
            delay_until: self.delay_until,
            retry_of: None,
        }
    }
}

/// Checks a job spec as `POST /v1/jobs` does (its body read, `now` its submit time):
/// delay, group, function, id, timeout, args, priority, idempotency key.
pub fn prepare(state: &AppState, request: SubmitRequest, now: i64) -> Result<Prepared, ApiError> {
    let run_at = run_at_of(request.run_at.as_deref(), request.delay_ms, now)?;
    let mut job = validate(
        state,
        request.group,
        request.function,
        request.args.unwrap_or(Value::Null),
        request.id,
        request.timeout_ms,
    )?;
    job.priority = check_priority(state, &job.group, request.priority)?;
    job.submitted_at = Some(now);
    job.run_at = run_at;
    let idempotency_key = match request.idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
            return Err(ApiError::bad_request(format!(
                "idempotency_key must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes"
            )));
        }
        key => key,
    };
    Ok(Prepared {
        job,
        idempotency_key,
        // A job due later waits unpublished in its group's delayed set; one due now (a
        // past run_at) is published at once, its run_at kept in the record.
        delay_until: run_at.filter(|&at| at > now),
    })
}

/// A caller's W3C trace context, which continues on the job; a malformed one is ignored.
pub fn traceparent_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| TraceParent::parse(v).is_some())
        .map(String::from)
}

/// The answer to a job of a broken group.
pub fn broken(group: &str) -> ApiError {
    ApiError::group_broken(format!(
        "group {group:?} is broken; POST /v1/groups/{group}/reset to run jobs again"
    ))
}

/// Publishes a job whose record was just created (a delayed one is left to the leader) and
/// counts it in `jobfleet_jobs_submitted_total`.
pub(super) async fn publish_created(state: &SharedState, submission: Submission<'_>) -> Result<(), ApiError> {
    submission::one(publish_created_all(state, &[submission]).await)?
}

/// [`publish_created`] for many jobs, the immediate ones published together (see
/// [`submission::publish_all`]): each one's outcome, in order.
pub(super) async fn publish_created_all(
    state: &SharedState,
    submissions: &[Submission<'_>],
) -> Vec<Result<(), ApiError>> {
    let immediate: Vec<Submission<'_>> = submissions
        .iter()
        .filter(|s| s.delay_until.is_none())
        .copied()
        .collect();
    let mut published = submission::publish_all(state, &immediate).await.into_iter();
    let outcomes = submissions.iter().map(|s| match s.delay_until {
        Some(_) => Ok(()),
        None => published.next().unwrap_or(Ok(())),
    });
    let outcomes: Vec<Result<(), ApiError>> = outcomes.collect();
    for (s, _) in submissions.iter().zip(&outcomes).filter(|(_, o)| o.is_ok()) {
        state
            .metrics
            .jobs_submitted
            .with_label_values(&[&s.job.group, &s.job.function])
            .inc();
    }
    outcomes
}

/// The `?wait=` duration, if any.
fn wait_of(wait: Option<f64>) -> Result<Option<Duration>, ApiError> {
    match wait {
        Some(w) if w.is_finite() && (0.0..=MAX_WAIT_SECONDS as f64).contains(&w) => {
            Ok(Some(Duration::from_secs_f64(w)))
        }
        Some(_) => Err(ApiError::bad_request(format!(
            "wait must be 0..={MAX_WAIT_SECONDS} seconds"
        ))),
        None => Ok(None),
    }
}

/// The request body, read within the size limit and parsed.
pub fn parse<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
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
    serde_json::from_slice(&body).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            ApiError::bad_request(format!(
                "args nest deeper than the JSON parser reads; they may nest at most {MAX_ARGS_DEPTH} levels"
            ))
        } else {
            ApiError::bad_request(format!("invalid JSON body: {e}"))
        }
    })
}

fn accepted(job: &JobMessage, status: JobStatus) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: job.id.clone(),
            status: status.as_str().to_string(),
            run_at: job.run_at.and_then(rfc3339),
        }),
    )
        .into_response()
}

/// When a delayed job may start (unix ms): its `run_at`, or now plus its `delay_ms`;
/// `None` for an immediate job. More than [`MAX_DELAY_MS`] ahead, or both given, is a 422.
pub fn run_at_of(run_at: Option<&str>, delay_ms: Option<u64>, now: i64) -> Result<Option<i64>, ApiError> {
    let beyond = || {
        ApiError::invalid_value(format!(
            "a job may be delayed at most {MAX_DELAY_MS} ms (30 days); delay_ms and run_at must \
             stay within that"
        ))
    };
    match (run_at, delay_ms) {
        (Some(_), Some(_)) => Err(ApiError::invalid_value("give run_at or delay_ms, not both")),
        (Some(text), None) => {
            let at = parse_rfc3339(text).map_err(|e| ApiError::invalid_value(format!("run_at: {e}")))?;
            if at > now.saturating_add(MAX_DELAY_MS as i64) {
                return Err(beyond());
            }
            Ok(Some(at))
        }
        (None, Some(delay)) if delay > MAX_DELAY_MS => Err(beyond()),
        (None, Some(delay)) => Ok(Some(now + delay as i64)),
        (None, None) => Ok(None),
    }
}

/// Checks that `group` is configured (404) and has `function` (422).
pub fn check_function(state: &AppState, group: &str, function: &str) -> Result<(), ApiError> {
    let group_config = state
        .config
        .group(group)
        .ok_or_else(|| ApiError::not_found(format!("unknown group {group:?}")))?;
    if !group_config.functions.contains_key(function) {
        return Err(ApiError::unknown_function(format!(
            "group {group:?} has no function {function:?}"
        )));
    }
    Ok(())
}

/// A job's `priority` (already 0..=9, read with the body): above 0 needs a group with
/// `max_priority` (400).
fn check_priority(state: &AppState, group: &str, priority: Option<u8>) -> Result<Option<u8>, ApiError> {
    let has_max = state
        .config
        .group(group)
        .is_some_and(|g| g.max_priority.is_some());
    match priority {
        Some(p) if p > 0 && !has_max => Err(ApiError::bad_request(format!(
            "priority {p}: group {group:?} has no max_priority (set max_priority in its config to use priorities)"
        ))),
        priority => Ok(priority),
    }
}

/// Checks `args` against `max_args_bytes` (413).
pub fn check_size(state: &AppState, args: &Value) -> Result<(), ApiError> {
    let size = serde_json::to_vec(args).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > state.config.max_args_bytes {
        return Err(ApiError::too_large(format!(
            "args have {size} bytes; the limit is {}",
            state.config.max_args_bytes
        )));
    }
    Ok(())
}

/// Checks a submission against the configuration: group, function, id, timeout, size,
/// nesting, schema (SPEC §4, "validate locally").
pub(crate) fn validate(
    state: &AppState,
    group: String,
    function: String,
    args: Value,
    id: Option<String>,
    timeout_ms: Option<u64>,
) -> Result<JobMessage, ApiError> {
    check_job(state, &group, &function, &args, timeout_ms, true)?;
    let id = match id {
        Some(id) if !is_valid_job_id(&id) => {
            return Err(ApiError::bad_request(
                "id must be 1..128 chars of [A-Za-z0-9._:-]",
            ))
        }
        Some(id) => id,
        None => new_job_id(),
    };
    let mut job = JobMessage::new(group, function, args).with_id(id);
    job.timeout_ms = timeout_ms;
    Ok(job)
}

/// Checks a job's group, function, timeout, args size and nesting and, when `schema`, its
/// args against the function's schema (a workflow step whose args take another step's
/// result is checked by its worker when it starts).
pub(crate) fn check_job(
    state: &AppState,
    group: &str,
    function: &str,
    args: &Value,
    timeout_ms: Option<u64>,
    schema: bool,
) -> Result<(), ApiError> {
    check_function(state, group, function)?;
    if timeout_ms == Some(0) {
        return Err(ApiError::bad_request("timeout_ms must be positive"));
    }
    check_size(state, args)?;
    // Workers fail deeper args as bad messages: refuse them here instead.
    let depth = codec::depth(args);
    if depth > MAX_ARGS_DEPTH {
        return Err(ApiError::bad_request(format!(
            "args nest {depth} levels deep; they may nest at most {MAX_ARGS_DEPTH}"
        )));
    }
    if schema {
        state
            .schemas
            .check(group, function, args)
            .map_err(ApiError::invalid_args)?;
    }
    Ok(())
}

/// Waits until the job ends or `wait` passes, woken by its result; returns the record.
/// The registration leaves with `waiter` however this returns.
async fn wait_for_end(
    state: &AppState,
    id: &str,
    mut waiter: Waiter<'_>,
    wait: Duration,
) -> Result<Option<JobRecord>, ApiError> {
    // Results published from here on wake the waiter; it may have ended before. A broker
    // that does not let the feed subscribe within the wait leaves the record to answer.
    let _ = tokio::time::timeout(wait, state.waiters.subscribed()).await;
    let record = backend::redis(state.coordinator.job(id)).await?;
    if record.as_ref().is_none_or(|r| r.status.is_terminal()) {
        return Ok(record);
    }
    // A stopping master answers at once (202 unless the job ended) instead of holding the
    // shutdown for the rest of the wait.
    tokio::select! {
        _ = tokio::time::timeout(wait, waiter.woken()) => {}
        _ = state.shutdown.cancelled() => {}
    }
    drop(waiter);
    backend::redis(state.coordinator.job(id)).await
}
