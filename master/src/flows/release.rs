//! Releasing steps whose dependencies all ended: each becomes its job, recorded under the
//! step's fixed job id (a repeat answers `existing`: a step runs once however often it is
//! released) and published; or, when it must not run (a dependency did not finish, its
//! workflow was canceled, its group is broken), recorded as ended without running, and its
//! result announced like an early end's. A publish that fails leaves the queued record to
//! the run-record corrector, which republishes it.

use super::plan::{result_refs, substitute, Plan, Step, CALLBACK};
use super::FlowError;
use crate::announce::announce;
use crate::http::jobs::cancel_job;
use crate::state::AppState;
use jobfleet_common::coordinator::{EndEarly, FlowKind, FlowRecord, NewJob, Submitted};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::publish::{persistent_properties, publish_batch};
use serde_json::{json, Value};
use std::collections::HashMap;
use tracing::warn;

/// What becomes of a released step.
enum Fate {
    /// Its job runs.
    Run(JobMessage),
    /// Its job ends at once without running, with this status and error.
    End(JobMessage, JobStatus, JobError),
}

/// Releases the `ready` steps of `plan` (each with whether a dependency did not finish).
pub async fn release(state: &AppState, plan: &Plan, ready: &[(String, bool)]) -> Result<(), FlowError> {
    if ready.is_empty() {
        return Ok(());
    }
    let Some(record) = state.coordinator.flow(&plan.flow).await? else {
        return Ok(());
    };
    let steps: Vec<(&Step, bool)> = ready
        .iter()
        .filter_map(|(name, failed)| Some((plan.step(name)?, *failed)))
        .collect();
    let results = dependency_results(state, plan, &steps).await?;
    let fates: Vec<Fate> = steps
        .iter()
        .map(|(step, failed)| fate(plan, &record, step, *failed, &results))
        .collect();
    let mut runs = Vec::new();
    for fate in fates {
        match fate {
            Fate::Run(job) => runs.push(job),
            Fate::End(job, status, error) => end_unrun(state, &job, status, &error).await?,
        }
    }
    run_jobs(state, &runs).await?;
    let names: Vec<&str> = steps.iter().map(|(step, _)| step.name.as_str()).collect();
    state.coordinator.steps_released(&plan.flow, &names).await?;
    cancel_if_canceled(state, plan, &runs).await
}

/// Cancels the jobs just released if a cancel of their flow came meanwhile: the cancel
/// marks the flow before it cancels the jobs it finds, and this looks at the mark after
/// recording them, so one of the two always sees the other.
async fn cancel_if_canceled(state: &AppState, plan: &Plan, runs: &[JobMessage]) -> Result<(), FlowError> {
    if runs.is_empty() {
        return Ok(());
    }
    if state.coordinator.flow_canceled(&plan.flow).await? {
        for job in runs {
            if let Err(e) = cancel_job(state, &job.id, Some(&job.group)).await {
                warn!(error = %e, job_id = %job.id, "workflow steps: could not cancel a step released during a cancel");
            }
        }
    }
    Ok(())
}

/// What becomes of `step`: see [`Fate`].
fn fate(
    plan: &Plan,
    record: &FlowRecord,
    step: &Step,
    failed: bool,
    results: &HashMap<String, Value>,
) -> Fate {
    let job = |args| plan.job(step, args);
    if record.canceled {
        let what = plan.flow.kind.as_str();
        let error = JobError::new(ErrorKind::Canceled, format!("its {what} was canceled"));
        return Fate::End(job(step.args.clone()), JobStatus::Canceled, error);
    }
    match plan.flow.kind {
        FlowKind::Workflow if failed => {
            let unfinished = step
                .after
                .iter()
                .find(|name| record.steps.get(*name).is_some_and(|s| s != "finished"))
                .map(String::as_str)
                .unwrap_or("a dependency");
            let message = format!("step {unfinished:?} did not finish");
            let error = JobError::new(ErrorKind::DependencyFailed, message);
            Fate::End(job(step.args.clone()), JobStatus::Failed, error)
        }
        FlowKind::Workflow => match result_refs(&step.args)
            .into_iter()
            .find(|name| !results.contains_key(name))
        {
            Some(gone) => {
                let message = format!("the result of step {gone:?} is gone (its record was deleted)");
                let error = JobError::new(ErrorKind::DependencyFailed, message);
                Fate::End(job(step.args.clone()), JobStatus::Failed, error)
            }
            _ => Fate::Run(job(substitute(&step.args, results))),
        },
        FlowKind::Batch if step.name == CALLBACK => Fate::Run(job(summary(plan, record, &step.args))),
        FlowKind::Batch => Fate::Run(job(step.args.clone())),
    }
}

/// The results of the steps whose results `steps` take, by step name (only finished ones).
async fn dependency_results(
    state: &AppState,
    plan: &Plan,
    steps: &[(&Step, bool)],
) -> Result<HashMap<String, Value>, FlowError> {
    let mut names: Vec<&str> = steps
        .iter()
        .filter(|(step, failed)| !failed && !result_refs(&step.args).is_empty())
        .flat_map(|(step, _)| step.after.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let ids: Vec<String> = names
        .iter()
        .filter_map(|name| Some(plan.step(name)?.job_id.clone()))
        .collect();
    let records = state.coordinator.jobs(&ids).await?;
    Ok(names
        .into_iter()
        .zip(records)
        .filter_map(|(name, record)| {
            let record = record.filter(|r| r.status == JobStatus::Finished)?;
            Some((name.to_string(), record.result.unwrap_or(Value::Null)))
        })
        .collect())
}

/// A batch callback's args: how its jobs ended, and its own args.
fn summary(plan: &Plan, record: &FlowRecord, own_args: &Value) -> Value {
    let jobs: Vec<&Step> = plan
        .definition
        .steps
        .iter()
        .filter(|step| step.name != CALLBACK)
        .collect();
    let count = |status: &str| {
        jobs.iter()
            .filter(|step| record.steps.get(&step.name).is_some_and(|s| s == status))
            .count()
    };
    let unfinished: Vec<&str> = jobs
        .iter()
        .filter(|step| record.steps.get(&step.name).is_none_or(|s| s != "finished"))
        .map(|step| step.job_id.as_str())
        .collect();
    json!({
        "batch": plan.flow.id,
        "total": jobs.len(),
        "finished": count("finished"),
        "failed": count("failed"),
        "canceled": count("canceled"),
        "unfinished": unfinished,
        "args": own_args,
    })
}

/// Records `job` as ended without running and announces its result (which reaches the
/// driver and frees its dependents).
async fn end_unrun(
    state: &AppState,
    job: &JobMessage,
    status: JobStatus,
    error: &JobError,
) -> Result<(), FlowError> {
    if let EndEarly::Ended { record, .. } = state.coordinator.unrun(job, status, error).await? {
        announce(state, &record).await;
    }
    Ok(())
}

/// Records `jobs` and publishes those newly created; a group broken meanwhile ends its job
/// with `group_broken`.
async fn run_jobs(state: &AppState, jobs: &[JobMessage]) -> Result<(), FlowError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let news: Vec<NewJob<'_>> = jobs.iter().map(|job| NewJob::new(job, None)).collect();
    let answers = state.coordinator.submit_jobs(&news).await?;
    let mut created = Vec::new();
    for (job, answer) in jobs.iter().zip(answers) {
        match answer {
            Submitted::Created => created.push(job),
            Submitted::Existing(_) => {}
            Submitted::GroupBroken => {
                let error = JobError::new(ErrorKind::GroupBroken, format!("group {:?} is broken", job.group));
                end_unrun(state, job, JobStatus::Failed, &error).await?;
            }
        }
    }
    publish(state, &created).await;
    Ok(())
}

/// Publishes `jobs`; what fails stays recorded, queued, for the corrector to republish.
async fn publish(state: &AppState, jobs: &[&JobMessage]) {
    if jobs.is_empty() {
        return;
    }
    let sent = async {
        let channel = state.publisher.get().await?;
        let batch = jobs
            .iter()
            .map(|job| (*job, persistent_properties(&job.id, None)))
            .collect();
        publish_batch(&channel, &state.topology, batch).await
    };
    let failed = match tokio::time::timeout(crate::http::submission::CONFIRM_DEADLINE, sent).await {
        Ok(Ok(confirms)) => confirms.into_iter().filter(Result::is_err).count(),
        Ok(Err(_)) | Err(_) => jobs.len(),
    };
    if failed > 0 {
        state.publisher.invalidate().await;
        warn!(
            failed,
            "workflow steps: publish failed; the corrector republishes their jobs"
        );
    }
}
