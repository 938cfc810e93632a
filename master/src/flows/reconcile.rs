//! The leader's reconcile: the safety net under the driver. Every [`RECONCILE_EVERY`] it
//! looks at the oldest active flows and makes good whatever a crash or a lost result left
//! undone: steps whose dependencies all ended but that were never released (a master died
//! between recording an end and releasing), and released steps whose job ended without
//! the driver hearing of it (a result acknowledged by a master that then died). Each
//! repair goes through the same once-only calls as the driver.

use super::driver::{plan_of, step_ended};
use super::plan::Step;
use super::release::release;
use super::FlowError;
use crate::state::AppState;
use jobfleet_common::coordinator::FlowId;
use std::time::Duration;

/// How often the leader reconciles (from the scheduler's tick).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// How many flows one reconcile looks at (the oldest first).
const FLOWS_PER_PASS: usize = 100;
/// A flow in the active set with no state yet may be being created: left alone this long.
const CREATION_GRACE_MS: i64 = 60_000;

/// One pass over the oldest active flows.
pub async fn reconcile(state: &AppState) -> Result<(), FlowError> {
    let now = jobfleet_common::now_ms();
    for (flow, since) in state.coordinator.active_flows(FLOWS_PER_PASS).await? {
        match state.coordinator.flow(&flow).await? {
            None if now - since > CREATION_GRACE_MS => state.coordinator.flow_inactive(&flow).await?,
            None => {}
            Some(record) if record.state != "running" => state.coordinator.flow_inactive(&flow).await?,
            Some(record) => repair(state, &flow, &record).await?,
        }
    }
    Ok(())
}

/// Makes good what `flow` was left owing.
async fn repair(
    state: &AppState,
    flow: &FlowId,
    record: &jobfleet_common::coordinator::FlowRecord,
) -> Result<(), FlowError> {
    let plan = plan_of(flow, &record.definition)?;
    let is_ended = |s: &str| matches!(s, "finished" | "failed" | "canceled");
    // Roots never released (the creating master died before releasing them).
    let roots: Vec<(String, bool)> = plan
        .roots()
        .into_iter()
        .filter(|name| !record.steps.contains_key(*name))
        .map(|name| (name.to_string(), false))
        .collect();
    release(state, &plan, &roots).await?;
    // Released steps whose jobs ended unheard.
    let released: Vec<&Step> = plan
        .definition
        .steps
        .iter()
        .filter(|step| record.steps.get(&step.name).is_some_and(|s| s == "released"))
        .collect();
    let jobs: Vec<(&str, &str)> = released
        .iter()
        .map(|step| (step.group.as_str(), step.job_id.as_str()))
        .collect();
    let statuses = state.coordinator.job_statuses(&jobs).await?;
    for (step, status) in released.iter().zip(statuses) {
        if let Some(status) = status.filter(|s| s.is_terminal()) {
            step_ended(state, &plan, &step.name, status).await?;
        }
    }
    // Ended steps with dependents never released (repeating the end answers them).
    for step in &plan.definition.steps {
        let Some(status) = record.steps.get(&step.name).filter(|s| is_ended(s)) else {
            continue;
        };
        let waiting = plan
            .dependents(&step.name)
            .iter()
            .any(|d| !record.steps.contains_key(*d));
        if waiting {
            let status = status.parse().map_err(|e| FlowError::Corrupt(format!("{e}")))?;
            step_ended(state, &plan, &step.name, status).await?;
        }
    }
    Ok(())
}
