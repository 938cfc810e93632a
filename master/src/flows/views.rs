//! Creating a flow and showing it as the API does.

use super::driver::plan_of;
use super::plan::{Definition, Plan, CALLBACK};
use super::release::release;
use super::FlowError;
use crate::http::views::error_view;
use crate::state::AppState;
use jobfleet_api::{rfc3339, BatchView, StepView, WorkflowView};
use jobfleet_common::coordinator::{FlowId, FlowRecord, JobRecord};
use jobfleet_common::message::JobStatus;

/// Creates `flow` from `definition` and releases its roots; `false` when a flow of that
/// id exists (nothing is created).
pub async fn create(state: &AppState, flow: &FlowId, definition: Definition) -> Result<bool, FlowError> {
    let text = serde_json::to_string(&definition).map_err(|e| FlowError::Corrupt(e.to_string()))?;
    let plan = Plan::new(flow.clone(), definition);
    let steps = plan.definition.steps.len();
    let created = state
        .coordinator
        .create_flow(flow, &text, steps, &plan.pending())
        .await?;
    if created {
        let roots: Vec<(String, bool)> = plan.roots().into_iter().map(|r| (r.to_string(), false)).collect();
        release(state, &plan, &roots).await?;
    }
    Ok(created)
}

/// A flow's status: how it ended; else `canceled` once a cancel reached it, `started`
/// once a step started or ended, `queued` before.
pub fn flow_status(record: &FlowRecord, jobs: &[Option<JobRecord>]) -> String {
    if record.state != "running" {
        return record.state.clone();
    }
    if record.canceled {
        return "canceled".into();
    }
    let moved = jobs.iter().flatten().any(|job| job.status != JobStatus::Queued);
    if moved { "started" } else { "queued" }.into()
}

/// The flow, its plan and every step's job record (`None` for steps not released yet).
async fn load(
    state: &AppState,
    flow: &FlowId,
) -> Result<Option<(FlowRecord, Plan, Vec<Option<JobRecord>>)>, FlowError> {
    let Some(record) = state.coordinator.flow(flow).await? else {
        return Ok(None);
    };
    let plan = plan_of(flow, &record.definition)?;
    let ids: Vec<String> = plan.definition.steps.iter().map(|s| s.job_id.clone()).collect();
    let jobs = state.coordinator.jobs(&ids).await?;
    Ok(Some((record, plan, jobs)))
}

/// One step as the API shows it.
fn step_view(plan: &Plan, index: usize, job: Option<&JobRecord>) -> StepView {
    let step = &plan.definition.steps[index];
    StepView {
        name: step.name.clone(),
        job_id: step.job_id.clone(),
        group: step.group.clone(),
        function: step.function.clone(),
        after: if plan.flow.kind == jobfleet_common::coordinator::FlowKind::Batch {
            Vec::new()
        } else {
            step.after.clone()
        },
        status: job.map_or_else(|| "waiting".into(), |j| j.status.as_str().into()),
        result: job.and_then(|j| j.result.clone()),
        error: job.and_then(|j| j.error.as_ref()).map(error_view),
    }
}

/// `GET /v1/workflows/{id}`; `None` for an unknown (or expired) workflow.
pub async fn workflow_view(state: &AppState, id: &str) -> Result<Option<WorkflowView>, FlowError> {
    let Some((record, plan, jobs)) = load(state, &FlowId::workflow(id)).await? else {
        return Ok(None);
    };
    Ok(Some(WorkflowView {
        id: id.to_string(),
        status: flow_status(&record, &jobs),
        created_at: rfc3339(record.created_at).unwrap_or_default(),
        finished_at: record.ended_at.and_then(rfc3339),
        steps: (0..jobs.len())
            .map(|i| step_view(&plan, i, jobs[i].as_ref()))
            .collect(),
    }))
}

/// `GET /v1/batches/{id}`; `None` for an unknown (or expired) batch.
pub async fn batch_view(state: &AppState, id: &str) -> Result<Option<BatchView>, FlowError> {
    let Some((record, plan, jobs)) = load(state, &FlowId::batch(id)).await? else {
        return Ok(None);
    };
    let members = || {
        plan.definition
            .steps
            .iter()
            .zip(&jobs)
            .filter(|(step, _)| step.name != CALLBACK)
    };
    let count = |status: JobStatus| {
        members()
            .filter(|(_, job)| job.as_ref().is_some_and(|j| j.status == status))
            .count()
    };
    let callback = plan.definition.steps.iter().position(|s| s.name == CALLBACK);
    Ok(Some(BatchView {
        id: id.to_string(),
        status: flow_status(&record, &jobs),
        created_at: rfc3339(record.created_at).unwrap_or_default(),
        finished_at: record.ended_at.and_then(rfc3339),
        total: members().count(),
        finished: count(JobStatus::Finished),
        failed: count(JobStatus::Failed),
        canceled: count(JobStatus::Canceled),
        on_complete: callback.map(|i| step_view(&plan, i, jobs[i].as_ref())),
    }))
}
