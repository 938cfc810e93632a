//! Workflows and batches (SPEC §10) in Redis: each one's state in a hash of its own (its
//! definition, every step's state, how many dependencies each step still waits for), the
//! set of those not ended, and the record of a step that ends without running. The
//! master's workflow driver decides what to release; these calls make each decision
//! happen once, whoever repeats it.

use super::record::fields_of;
use super::{Coordinator, CoordinatorError, EndEarly};
use crate::message::{JobError, JobMessage, JobStatus};
use deadpool_redis::redis::{self, Script, Value as RedisValue};
use std::collections::HashMap;
use std::sync::LazyLock;

static CREATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/flow_create.lua")));
static STEP_ENDED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/flow_step_ended.lua")));
static RELEASED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/flow_released.lua")));
static CANCEL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/flow_cancel.lua")));
static UNRUN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/unrun.lua")));

/// Whether a flow is a workflow (a DAG of steps) or a batch (jobs and a callback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// `POST /v1/workflows`.
    Workflow,
    /// `POST /v1/batches`.
    Batch,
}

impl FlowKind {
    /// `workflow` or `batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Workflow => "workflow",
            FlowKind::Batch => "batch",
        }
    }
}

/// A workflow's or batch's id, with its kind (the two have ids of their own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowId {
    /// Workflow or batch.
    pub kind: FlowKind,
    /// Its id (a job id's alphabet).
    pub id: String,
}

impl FlowId {
    /// The workflow `id`.
    pub fn workflow(id: impl Into<String>) -> FlowId {
        FlowId {
            kind: FlowKind::Workflow,
            id: id.into(),
        }
    }

    /// The batch `id`.
    pub fn batch(id: impl Into<String>) -> FlowId {
        FlowId {
            kind: FlowKind::Batch,
            id: id.into(),
        }
    }

    /// `<kind>:<id>`, its member in the active set.
    fn member(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }

    /// Reads a member of the active set.
    fn from_member(member: &str) -> Option<FlowId> {
        match member.split_once(':')? {
            ("workflow", id) => Some(FlowId::workflow(id)),
            ("batch", id) => Some(FlowId::batch(id)),
            _ => None,
        }
    }
}

/// A flow as stored: its definition (the master's JSON) and what happened so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    /// The definition, as created.
    pub definition: String,
    /// `running`, or how it ended: `finished`, `failed`, `canceled`.
    pub state: String,
    /// Whether a cancel reached it while it ran.
    pub canceled: bool,
    /// Created, unix ms.
    pub created_at: i64,
    /// Ended, unix ms.
    pub ended_at: Option<i64>,
    /// Each step's state as the flow knows it: `released` (its job is recorded) or the
    /// terminal status of its job; absent while it waits.
    pub steps: HashMap<String, String>,
}

/// What a step's end changed: the flow's state, and the dependents to release now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEnded {
    /// The flow's state after it (`running` or terminal).
    pub state: String,
    /// Dependents waiting for nothing and not released yet, each with whether one of its
    /// dependencies failed or was canceled.
    pub ready: Vec<(String, bool)>,
}

impl Coordinator {
    /// Creates a flow's state from `definition` unless it exists: `pending` names each
    /// step that waits for others, with how many; `steps` counts them all. The flow joins
    /// the active set first, so a master that dies half-way leaves it to the reconcile.
    /// Returns whether it was created (else it existed).
    pub async fn create_flow(
        &self,
        flow: &FlowId,
        definition: &str,
        steps: usize,
        pending: &[(&str, usize)],
    ) -> Result<bool, CoordinatorError> {
        let now = crate::now_ms();
        let mut conn = self.connection().await?;
        let _: () = redis::cmd("ZADD")
            .arg(self.keys.active_flows())
            .arg("NX")
            .arg(now)
            .arg(flow.member())
            .query_async(&mut *conn)
            .await?;
        drop(conn);
        let mut call = CREATE.key(self.keys.flow(flow));
        call.arg(definition).arg(now).arg(steps);
        for (name, count) in pending {
            call.arg(*name).arg(*count);
        }
        let reply: String = self.transition(&call).await?;
        Ok(reply == "created")
    }

    /// Records that `step` ended with `status` (once; repeats change nothing) and answers
    /// which of its `dependents` are ready; `None` when the flow is gone.
    pub async fn step_ended(
        &self,
        flow: &FlowId,
        step: &str,
        status: JobStatus,
        dependents: &[&str],
    ) -> Result<Option<StepEnded>, CoordinatorError> {
        let mut call = STEP_ENDED.key(self.keys.flow(flow));
        call.arg(step)
            .arg(status.as_str())
            .arg(crate::now_ms())
            .arg(self.retention.default.as_secs().max(1));
        for dependent in dependents {
            call.arg(*dependent);
        }
        let reply: Vec<String> = self.transition(&call).await?;
        let Some((state, ready)) = reply.split_first() else {
            return Err(CoordinatorError::Corrupt("empty step reply".into()));
        };
        if state == "missing" {
            return Ok(None);
        }
        let ready = ready
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair.get(1).is_some_and(|f| f == "1")))
            .collect();
        Ok(Some(StepEnded {
            state: state.clone(),
            ready,
        }))
    }

    /// Marks `steps` released (their jobs are recorded) unless they ended already.
    pub async fn steps_released(&self, flow: &FlowId, steps: &[&str]) -> Result<(), CoordinatorError> {
        if steps.is_empty() {
            return Ok(());
        }
        let mut call = RELEASED.key(self.keys.flow(flow));
        for step in steps {
            call.arg(*step);
        }
        let _: i64 = self.transition(&call).await?;
        Ok(())
    }

    /// Marks a running flow canceled (nothing more is released to run); the state it had,
    /// `None` when it is unknown.
    pub async fn cancel_flow(&self, flow: &FlowId) -> Result<Option<String>, CoordinatorError> {
        let state: String = self.transition(&CANCEL.key(self.keys.flow(flow))).await?;
        Ok((state != "missing").then_some(state))
    }

    /// Whether a cancel reached `flow` (a single field read, not the whole record).
    pub async fn flow_canceled(&self, flow: &FlowId) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let canceled: Option<String> = redis::cmd("HGET")
            .arg(self.keys.flow(flow))
            .arg("canceled")
            .query_async(&mut *conn)
            .await?;
        Ok(canceled.as_deref() == Some("1"))
    }

    /// A flow's record; `None` when it is unknown or expired.
    pub async fn flow(&self, flow: &FlowId) -> Result<Option<FlowRecord>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let reply: RedisValue = redis::cmd("HGETALL")
            .arg(self.keys.flow(flow))
            .query_async(&mut *conn)
            .await?;
        let mut fields = fields_of(&reply)?;
        let Some(definition) = fields.remove("def") else {
            return Ok(None);
        };
        let number = |text: Option<&String>| text.and_then(|t| t.parse::<i64>().ok());
        let steps = fields
            .iter()
            .filter_map(|(name, value)| Some((name.strip_prefix("s:")?.to_string(), value.clone())))
            .collect();
        Ok(Some(FlowRecord {
            definition,
            state: fields.remove("state").unwrap_or_else(|| "running".into()),
            canceled: fields.get("canceled").is_some_and(|c| c == "1"),
            created_at: number(fields.get("created_at")).unwrap_or(0),
            ended_at: number(fields.get("ended_at")),
            steps,
        }))
    }

    /// The oldest `limit` flows of the active set, with the time each joined it (ms).
    pub async fn active_flows(&self, limit: usize) -> Result<Vec<(FlowId, i64)>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let members: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(self.keys.active_flows())
            .arg(0)
            .arg(limit.saturating_sub(1))
            .arg("WITHSCORES")
            .query_async(&mut *conn)
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|(member, at)| Some((FlowId::from_member(&member)?, at)))
            .collect())
    }

    /// The status of each job named by (group, id), in one pipelined round trip; `None`
    /// for a job with no record.
    pub async fn job_statuses(
        &self,
        jobs: &[(&str, &str)],
    ) -> Result<Vec<Option<JobStatus>>, CoordinatorError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (group, id) in jobs {
            pipe.hget(self.keys.job(group, id), "status");
        }
        let mut conn = self.connection().await?;
        let statuses: Vec<Option<String>> = pipe.query_async(&mut *conn).await?;
        Ok(statuses
            .into_iter()
            .map(|status| status.and_then(|s| s.parse().ok()))
            .collect())
    }

    /// Takes an ended (or vanished) flow out of the active set.
    pub async fn flow_inactive(&self, flow: &FlowId) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = redis::cmd("ZREM")
            .arg(self.keys.active_flows())
            .arg(flow.member())
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Records `job` as ended with `status` and `error` without running (a workflow step
    /// whose dependency failed, or canceled with its workflow), unless a job of its id
    /// exists or existed. The caller publishes the result of an [`EndEarly::Ended`], then
    /// calls [`Coordinator::announced`] (until then the corrector owes it).
    pub async fn unrun(
        &self,
        job: &JobMessage,
        status: JobStatus,
        error: &JobError,
    ) -> Result<EndEarly, CoordinatorError> {
        let k = &self.keys;
        let mut call = UNRUN.key(k.job(&job.group, &job.id));
        call.key(k.index(&job.group))
            .key(k.owed(&job.group))
            .key(k.tombstone(&job.group, &job.id))
            .arg(&job.id)
            .arg(&job.group)
            .arg(&job.function)
            .arg(super::transitions::json_text(&job.args))
            .arg(crate::now_ms())
            .arg(status.as_str())
            .arg(error.kind.as_str())
            .arg(&error.message)
            .arg(self.retention_secs(&job.group));
        for (name, value) in member_fields(job) {
            call.arg(name).arg(value);
        }
        let reply: RedisValue = self.transition(&call).await?;
        EndEarly::from_reply(&reply)
    }
}

/// The record fields of a job's workflow or batch membership, as name, value pairs.
pub(super) fn member_fields(job: &JobMessage) -> Vec<(&'static str, &str)> {
    let member = &job.member;
    [
        ("workflow", member.workflow.as_deref()),
        ("step", member.step.as_deref()),
        ("batch", member.batch.as_deref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect()
}
