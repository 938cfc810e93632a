//! `/v1/workflows` and `/v1/batches` (SPEC §10): checked here, then created, driven and
//! shown by [`crate::flows`].

use super::error::ApiError;
use super::jobs::cancel_job;
use super::openapi::RedisDown;
use super::submit::check_job;
use crate::flows::plan::{check_graph, job_id_of, result_refs, Definition, Step, CALLBACK};
use crate::flows::{self, FlowError};
use crate::state::{AppState, SharedState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use jobfleet_api::{
    BatchCreate, BatchJobRequest, BatchView, ErrorBody, FlowAccepted, FlowPath, WorkflowRequest,
    WorkflowView, MAX_FLOW_ID_CHARS, MAX_FLOW_STEPS,
};
use jobfleet_common::coordinator::FlowId;
use jobfleet_common::message::{is_valid_job_id, is_valid_name, new_job_id};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// How long creating, canceling or showing a flow may take (a flow of 10,000 steps is
/// many Redis round trips).
const FLOW_DEADLINE: Duration = Duration::from_secs(30);

/// Runs a flow call under [`FLOW_DEADLINE`].
async fn within<T>(call: impl Future<Output = Result<T, FlowError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(FLOW_DEADLINE, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::deadline("coordinator (Redis)", FLOW_DEADLINE)),
    }
}

/// Submit a workflow.
#[utoipa::path(
    post, path = "/v1/workflows", tag = "workflows",
    request_body = WorkflowRequest,
    responses(
        (status = 202, description = "Created; its first steps are queued", body = FlowAccepted),
        (status = 200, description = "A workflow of that id exists: nothing was created", body = FlowAccepted),
        (status = 400, description = "Malformed request or id, or a step's job malformed (timeout, nesting)", body = ErrorBody),
        (status = 404, description = "A step names an unknown group", body = ErrorBody),
        (status = 413, description = "A step's args over max_args_bytes", body = ErrorBody),
        (status = 422, description = "No step or over 10,000, a bad or repeated step name, an unknown step in `after`, a cycle, a result reference outside `after`, an unknown function or args that fail its schema", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn create_workflow(
    State(state): State<SharedState>,
    body: Result<Json<WorkflowRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<FlowAccepted>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = flow_id(request.id)?;
    check_count(request.steps.len(), "steps")?;
    let mut steps = Vec::with_capacity(request.steps.len());
    for step in request.steps {
        if !is_valid_name(&step.name) {
            return Err(ApiError::invalid_value(format!(
                "step name {:?}: 1..64 chars of [A-Za-z0-9_-]",
                step.name
            )));
        }
        let args = step.args.unwrap_or(Value::Null);
        let schema = result_refs(&args).is_empty();
        check_job(
            &state,
            &step.group,
            &step.function,
            &args,
            step.timeout_ms,
            schema,
        )?;
        steps.push(Step {
            job_id: job_id_of(&id, &step.name),
            name: step.name,
            group: step.group,
            function: step.function,
            args,
            after: step.after,
            timeout_ms: step.timeout_ms,
        });
    }
    check_graph(&steps).map_err(ApiError::invalid_value)?;
    accept(&state, FlowId::workflow(id), Definition { steps }).await
}

/// A workflow.
#[utoipa::path(
    get, path = "/v1/workflows/{id}", tag = "workflows",
    params(FlowPath),
    responses(
        (status = 200, description = "The workflow and every step", body = WorkflowView),
        (status = 404, description = "Unknown (or expired) workflow", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn get_workflow(
    State(state): State<SharedState>,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Result<Json<WorkflowView>, ApiError> {
    shown(flows::workflow_view(&state, &id), FlowId::workflow(&id)).await
}

/// Cancel a workflow.
#[utoipa::path(
    post, path = "/v1/workflows/{id}/cancel", tag = "workflows",
    params(FlowPath),
    responses(
        (status = 200, description = "Canceled: its queued and started steps are canceled, the others never start", body = WorkflowView),
        (status = 404, description = "Unknown workflow", body = ErrorBody),
        (status = 409, description = "The workflow has ended", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn cancel_workflow(
    State(state): State<SharedState>,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Result<Json<WorkflowView>, ApiError> {
    let flow = FlowId::workflow(&id);
    cancel(&state, &flow).await?;
    shown(flows::workflow_view(&state, &id), flow).await
}

/// Submit a batch.
#[utoipa::path(
    post, path = "/v1/batches", tag = "workflows",
    request_body = BatchCreate,
    responses(
        (status = 202, description = "Created; its jobs are queued", body = FlowAccepted),
        (status = 200, description = "A batch of that id exists: nothing was created", body = FlowAccepted),
        (status = 400, description = "Malformed request or id, or a job malformed (timeout, nesting)", body = ErrorBody),
        (status = 404, description = "A job names an unknown group", body = ErrorBody),
        (status = 413, description = "A job's args over max_args_bytes", body = ErrorBody),
        (status = 422, description = "No job or over 10,000, an unknown function or args that fail its schema", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn create_batch(
    State(state): State<SharedState>,
    body: Result<Json<BatchCreate>, JsonRejection>,
) -> Result<(StatusCode, Json<FlowAccepted>), ApiError> {
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = flow_id(request.id)?;
    check_count(request.jobs.len(), "jobs")?;
    let mut steps = Vec::with_capacity(request.jobs.len() + 1);
    for (i, job) in request.jobs.into_iter().enumerate() {
        steps.push(batch_step(&state, &id, i.to_string(), job, Vec::new(), true)?);
    }
    if let Some(callback) = request.on_complete {
        let after = steps.iter().map(|s| s.name.clone()).collect();
        // Its args arrive inside the summary: its schema is for the summary, checked by
        // its worker.
        steps.push(batch_step(&state, &id, CALLBACK.into(), callback, after, false)?);
    }
    accept(&state, FlowId::batch(id), Definition { steps }).await
}

/// A batch.
#[utoipa::path(
    get, path = "/v1/batches/{id}", tag = "workflows",
    params(FlowPath),
    responses(
        (status = 200, description = "The batch: its jobs' outcomes so far and its callback", body = BatchView),
        (status = 404, description = "Unknown (or expired) batch", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn get_batch(
    State(state): State<SharedState>,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Result<Json<BatchView>, ApiError> {
    shown(flows::batch_view(&state, &id), FlowId::batch(&id)).await
}

/// Cancel a batch.
#[utoipa::path(
    post, path = "/v1/batches/{id}/cancel", tag = "workflows",
    params(FlowPath),
    responses(
        (status = 200, description = "Canceled: its queued and started jobs are canceled, its callback never runs", body = BatchView),
        (status = 404, description = "Unknown batch", body = ErrorBody),
        (status = 409, description = "The batch has ended", body = ErrorBody),
        RedisDown,
    )
)]
pub async fn cancel_batch(
    State(state): State<SharedState>,
    Path(FlowPath { id }): Path<FlowPath>,
) -> Result<Json<BatchView>, ApiError> {
    let flow = FlowId::batch(&id);
    cancel(&state, &flow).await?;
    shown(flows::batch_view(&state, &id), flow).await
}

/// The flow id a request gave (checked), or a fresh one.
fn flow_id(id: Option<String>) -> Result<String, ApiError> {
    match id {
        Some(id) if !is_valid_job_id(&id) || id.len() > MAX_FLOW_ID_CHARS => Err(ApiError::bad_request(
            format!("id must be 1..{MAX_FLOW_ID_CHARS} chars of [A-Za-z0-9._:-]"),
        )),
        Some(id) => Ok(id),
        None => Ok(new_job_id()),
    }
}

/// 422 unless there are 1..=[`MAX_FLOW_STEPS`] `what`.
fn check_count(count: usize, what: &str) -> Result<(), ApiError> {
    if count == 0 || count > MAX_FLOW_STEPS {
        return Err(ApiError::invalid_value(format!(
            "{count} {what}: give 1..={MAX_FLOW_STEPS}"
        )));
    }
    Ok(())
}

/// A batch's job `name` as a step, checked.
fn batch_step(
    state: &AppState,
    id: &str,
    name: String,
    job: BatchJobRequest,
    after: Vec<String>,
    schema: bool,
) -> Result<Step, ApiError> {
    let args = job.args.unwrap_or(Value::Null);
    check_job(state, &job.group, &job.function, &args, job.timeout_ms, schema)?;
    Ok(Step {
        job_id: job_id_of(id, &name),
        name,
        group: job.group,
        function: job.function,
        args,
        after,
        timeout_ms: job.timeout_ms,
    })
}

/// Creates the flow: 202, or 200 when one of its id exists.
async fn accept(
    state: &AppState,
    flow: FlowId,
    definition: Definition,
) -> Result<(StatusCode, Json<FlowAccepted>), ApiError> {
    let created = within(flows::create(state, &flow, definition)).await?;
    let (code, status) = match created {
        true => (StatusCode::ACCEPTED, "queued".to_string()),
        false => {
            let record = within(async { Ok(state.coordinator.flow(&flow).await?) }).await?;
            let status = record.map_or_else(|| "queued".into(), |r| flows::flow_status(&r, &[]));
            (StatusCode::OK, status)
        }
    };
    Ok((code, Json(FlowAccepted { id: flow.id, status })))
}

/// Cancels `flow`: marked canceled (nothing more starts), then every step's job that has
/// not ended is canceled. 404 when unknown, 409 when it has ended.
async fn cancel(state: &SharedState, flow: &FlowId) -> Result<(), ApiError> {
    let before = within(async { Ok(state.coordinator.cancel_flow(flow).await?) }).await?;
    match before.as_deref() {
        None => return Err(unknown(flow.clone())),
        Some("running") => {}
        Some(ended) => {
            let (kind, id) = (flow.kind.as_str(), &flow.id);
            return Err(ApiError::conflict(format!("{kind} {id:?} has ended ({ended})")));
        }
    }
    let record = within(async { Ok(state.coordinator.flow(flow).await?) }).await?;
    let Some(record) = record else {
        return Ok(());
    };
    let plan = flows::driver::plan_of(flow, &record.definition)?;
    for step in &plan.definition.steps {
        // A step whose job has ended, or does not exist yet, answers without a change.
        cancel_job(state, &step.job_id, Some(&step.group)).await?;
    }
    Ok(())
}

/// The document a `view` call found, or 404 for `flow`.
async fn shown<T>(
    view: impl Future<Output = Result<Option<T>, FlowError>>,
    flow: FlowId,
) -> Result<Json<T>, ApiError> {
    within(view).await?.map(Json).ok_or_else(|| unknown(flow))
}

/// 404 for `flow`.
fn unknown(flow: FlowId) -> ApiError {
    ApiError::not_found(format!("unknown {} {:?}", flow.kind.as_str(), flow.id))
}
