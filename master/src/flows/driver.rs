//! The workflow driver: every master consumes `NS.flows` (the results of workflow steps
//! and batch jobs) and, for each, records the step's end once and releases the steps
//! that wait for nothing more. Every decision is made once in Redis
//! ([`Coordinator::step_ended`](jobfleet_common::coordinator::Coordinator::step_ended)),
//! so two masters, a redelivered result or the reconcile repeating one change nothing. A
//! result lost by a crash (it is acknowledged before it is handled) is made good by the
//! leader's [`reconcile`](super::reconcile), which reads the step jobs' records.

use super::release::release;
use super::FlowError;
use crate::state::AppState;
use jobfleet_common::client::{backoff, ResultSubscriber};
use jobfleet_common::config::QueueType;
use jobfleet_common::coordinator::FlowId;
use jobfleet_common::message::{JobStatus, ResultMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::plan::{Definition, Plan};

/// Plans read so far (a definition never changes while its flow exists), at most
/// [`PLAN_CACHE`] of them, each for [`PLAN_FRESH`]: an id can name a new flow once the old
/// one expired, so no plan is trusted for long.
#[derive(Debug, Default)]
pub struct Plans {
    cached: Mutex<HashMap<FlowId, (Instant, Arc<Plan>)>>,
}

/// How many plans a master keeps in memory.
const PLAN_CACHE: usize = 1000;
/// How long a plan read from Redis is used before it is read again.
const PLAN_FRESH: Duration = Duration::from_secs(30);

impl Plans {
    /// The plan of `flow`, from memory or Redis; `None` when the flow is gone.
    pub async fn get(&self, state: &AppState, flow: &FlowId) -> Result<Option<Arc<Plan>>, FlowError> {
        if let Some((read_at, plan)) = self.cached.lock().expect("plans").get(flow) {
            if read_at.elapsed() < PLAN_FRESH {
                return Ok(Some(plan.clone()));
            }
        }
        let Some(record) = state.coordinator.flow(flow).await? else {
            return Ok(None);
        };
        let plan = Arc::new(plan_of(flow, &record.definition)?);
        let mut cached = self.cached.lock().expect("plans");
        if cached.len() >= PLAN_CACHE {
            cached.retain(|_, (read_at, _)| read_at.elapsed() < PLAN_FRESH);
            if cached.len() >= PLAN_CACHE {
                cached.clear();
            }
        }
        cached.insert(flow.clone(), (Instant::now(), plan.clone()));
        Ok(Some(plan))
    }
}

/// The plan of a stored definition.
pub fn plan_of(flow: &FlowId, definition: &str) -> Result<Plan, FlowError> {
    let definition: Definition =
        serde_json::from_str(definition).map_err(|e| FlowError::Corrupt(e.to_string()))?;
    Ok(Plan::new(flow.clone(), definition))
}

/// How many step results a master handles at once. Their order does not matter: each
/// end is recorded once in Redis and each release is idempotent.
const IN_FLIGHT: usize = 64;

/// Consumes `NS.flows` until `shutdown`, reconnecting after failures.
pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut attempt = 0;
    while !shutdown.is_cancelled() {
        let subscriber = tokio::select! {
            _ = shutdown.cancelled() => return,
            subscriber = subscribe(&state) => subscriber,
        };
        match subscriber {
            Ok(mut subscriber) => {
                attempt = 0;
                consume(&state, &mut subscriber, &shutdown).await;
                subscriber.close().await;
            }
            Err(e) => {
                warn!(error = %e, "workflow driver: cannot subscribe; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

async fn subscribe(state: &AppState) -> Result<ResultSubscriber, FlowError> {
    let endpoint = state.config.amqp_endpoint();
    let queue = state.topology.flows();
    let topology = state.topology.clone();
    let subscriber = match state.config.dead_letters_queue_type() {
        QueueType::Quorum => ResultSubscriber::durable_quorum(endpoint, topology, &queue, &[]).await?,
        QueueType::Classic => ResultSubscriber::durable(endpoint, topology, &queue, &[]).await?,
    };
    Ok(subscriber)
}

/// Handles results as they come, up to [`IN_FLIGHT`] at once.
async fn consume(state: &Arc<AppState>, subscriber: &mut ResultSubscriber, shutdown: &CancellationToken) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = subscriber.next() => next,
        };
        let result = match next {
            Ok(result) => result,
            Err(e) => {
                debug!(error = %e, "workflow driver: an undecodable result");
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = on_result(&state, &result).await {
                warn!(error = %e, job_id = %result.id, "workflow driver: a step's end is left to the reconcile");
            }
            drop(slot);
        });
    }
}

/// Handles the result of a workflow step or batch job.
pub async fn on_result(state: &AppState, result: &ResultMessage) -> Result<(), FlowError> {
    let flow = match (&result.member.workflow, &result.member.batch) {
        (Some(id), _) => FlowId::workflow(id),
        (None, Some(id)) => FlowId::batch(id),
        (None, None) => return Ok(()),
    };
    let Some(plan) = state.flows.get(state, &flow).await? else {
        return Ok(());
    };
    // A result that is not the step's own job (a producer's forged fields) changes nothing.
    let Some(step) = plan.step_of_job(&result.id) else {
        return Ok(());
    };
    // The record says how the step ended, not the message: anyone who may publish to
    // NS.results could claim a running step finished. A record not ended (or gone) is
    // left to the reconcile, which reads records too.
    let recorded = state
        .coordinator
        .job_statuses(&[(step.group.as_str(), step.job_id.as_str())])
        .await?;
    match recorded.into_iter().next().flatten() {
        Some(status) if status.is_terminal() => step_ended(state, &plan, &step.name, status).await,
        _ => Ok(()),
    }
}

/// Records that `name` ended with `status` and releases what it frees.
pub async fn step_ended(
    state: &AppState,
    plan: &Plan,
    name: &str,
    status: JobStatus,
) -> Result<(), FlowError> {
    let dependents = plan.dependents(name);
    let ended = state
        .coordinator
        .step_ended(&plan.flow, name, status, &dependents)
        .await?;
    let Some(ended) = ended else {
        return Ok(());
    };
    release(state, plan, &ended.ready).await?;
    if ended.state != "running" {
        state.coordinator.flow_inactive(&plan.flow).await?;
    }
    Ok(())
}
