//! The status transitions of SPEC §2, each one Lua script on the keys of one group: submit
//! and enqueue (→ queued), claim (→ started), complete and retry (fenced by the attempt),
//! requeue (a drain), bad messages, the master's early ends, and forgetting a record.

use super::flow::{optional, Waiting};
use super::record::{fields_of, text};
use super::{Claim, Completion, Coordinator, CoordinatorError, CopyKind, EndEarly, FailureEffect};
use super::{Forget, JobRecord, Outcome, Submitted};
use crate::limits::Limits;
use crate::message::{JobError, JobMessage, JobStatus};
use deadpool_redis::redis::{self, Script, ScriptInvocation, ToRedisArgs, Value as RedisValue};
use std::sync::LazyLock;

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/enqueue.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/claim.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| attempt_script(include_str!("../lua/complete.lua")));
static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/requeue.lua")));
static BAD_MESSAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/bad_message.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| attempt_script(include_str!("../lua/retry.lua")));
static END_EARLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/end_early.lua")));
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/forget.lua")));
static DISCARD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/discard.lua")));
static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/mark.lua")));

/// A script that ends a started attempt (complete.lua, retry.lua): `body` after the
/// functions of attempt.lua it calls (the fence, the failure policy).
fn attempt_script(body: &str) -> Script {
    Script::new(&format!("{}{body}", include_str!("../lua/attempt.lua")))
}

/// A claim of one delivered job.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The delivered job.
    pub job: &'a JobMessage,
    /// The claiming worker.
    pub worker_id: &'a str,
    /// How the message reached the worker.
    pub copy: CopyKind,
    /// Whether to send the args (needed only when the job has no record yet).
    pub with_args: bool,
    /// Now, unix ms.
    pub now_ms: i64,
    /// Unique per delivery: the same claim retried after a lost reply gets the same answer.
    pub token: &'a str,
    /// How often a started job may be taken over from a worker that died before it fails
    /// with `crashed` (a job that kills its worker must not loop forever).
    pub max_takeovers: u32,
    /// The group's failure limit (a job failed by the takeover limit counts).
    pub max_failures: u32,
    /// The group's limits in the config file (run-time overrides in Redis win).
    pub limits: &'a Limits,
}

/// Which attempt of which job a worker holds: the fencing token of complete, retry and
/// requeue (a stale owner cannot add a second outcome).
#[derive(Debug, Clone, Copy)]
pub struct AttemptKey<'a> {
    /// The job.
    pub job: &'a JobMessage,
    /// The worker running it.
    pub worker_id: &'a str,
    /// The attempt number its claim returned.
    pub attempt: u32,
}

/// The outcome of an attempt, to record.
#[derive(Debug, Clone, Copy)]
pub struct CompleteRequest<'a> {
    /// The attempt that ended.
    pub attempt: AttemptKey<'a>,
    /// How it ended.
    pub outcome: &'a Outcome,
    /// The group's failure limit (SPEC §2 failure policy).
    pub max_failures: u32,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// A failed attempt sent back for another.
#[derive(Debug, Clone, Copy)]
pub struct RetryRequest<'a> {
    /// The attempt that failed.
    pub attempt: AttemptKey<'a>,
    /// Why it failed.
    pub error: &'a JobError,
    /// When the next attempt may start, unix ms.
    pub available_at_ms: i64,
    /// The group's failure limit.
    pub max_failures: u32,
}

/// An undecodable job message with a readable id.
#[derive(Debug, Clone, Copy)]
pub struct BadMessage<'a> {
    /// The id read from the message.
    pub id: &'a str,
    /// The group (the routing key it arrived with).
    pub group: &'a str,
    /// The function, if readable.
    pub function: &'a str,
    /// What is wrong with it.
    pub reason: &'a str,
    /// Now, unix ms.
    pub now_ms: i64,
}

/// A job the master's submit records (see [`Coordinator::submit_job`]).
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The validated job.
    pub job: &'a JobMessage,
    /// The caller's idempotency key, scoped to the job's group.
    pub idempotency_key: Option<&'a str>,
    /// When set, the job waits unpublished in its group's delayed set until this time (unix
    /// ms), and the leader publishes it then; when `None` the caller publishes it.
    pub delay_until: Option<i64>,
    /// More fields of the record, as name and value (`retry_of`, `traceparent`, `schedule`).
    pub fields: &'a [(&'a str, &'a str)],
}

impl<'a> NewJob<'a> {
    /// An immediate job with no more fields.
    pub fn new(job: &'a JobMessage, idempotency_key: Option<&'a str>) -> NewJob<'a> {
        NewJob {
            job,
            idempotency_key,
            delay_until: None,
            fields: &[],
        }
    }
}

/// The master ending a job early: a cancel or a queue timeout.
#[derive(Debug, Clone, Copy)]
pub struct EndRequest<'a> {
    /// The job.
    pub id: &'a str,
    /// Its group, when the caller knows it (else the fleet's groups are searched).
    pub group: Option<&'a str>,
    /// The terminal status it gets.
    pub status: JobStatus,
    /// Why.
    pub error: &'a JobError,
    /// The statuses it may end from.
    pub allowed_from: &'a [JobStatus],
}

pub(super) fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Coordinator {
    /// Records published jobs as queued, one pipelined round trip for all of them; a job
    /// that already has a record is left as it is. Returns how many records were created.
    pub async fn record_queued(&self, jobs: &[JobMessage]) -> Result<usize, CoordinatorError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        let now = crate::now_ms();
        for job in jobs {
            let submitted_at = job.submitted_at.unwrap_or(now);
            // A job due later waits in the delayed set (its message is deferred there too).
            let run_at = job.due_at(now).filter(|&at| at > now);
            let mut call = self.record_call(&ENQUEUE, job, json_text(&job.args), submitted_at);
            call.key(self.keys.delayed(&job.group))
                .arg(run_at.map(|t| t.to_string()).unwrap_or_default());
            pipe.invoke_script(&call);
        }
        let created = self.transitions(&mut pipe, &ENQUEUE.prepare_invoke()).await?;
        Ok(created.iter().filter(|&&c| c == 1).count())
    }

    /// Claims a delivered job (see [`Claim`] and [`CopyKind`]). Without `with_args` a job
    /// that has no record yet answers [`Claim::Missing`] (so large args are sent only then).
    pub async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, CoordinatorError> {
        let ClaimRequest { job, .. } = request;
        let k = &self.keys;
        let args = if request.with_args {
            json_text(&job.args)
        } else {
            String::new()
        };
        let submitted_at = job.submitted_at.map(|v| v.to_string()).unwrap_or_default();
        let reply: RedisValue = self
            .transition(
                self.record_call(&CLAIM, job, args, submitted_at)
                    .key(k.group(&job.group))
                    .key(k.running(&job.group))
                    .arg(request.worker_id)
                    .arg(request.now_ms)
                    .arg(request.copy.as_arg())
                    .arg(k.alive_prefix(&job.group))
                    .arg(self.retention_secs(&job.group))
                    .arg(request.token)
                    .arg(request.max_takeovers)
                    .arg(request.max_failures)
                    .key(k.limits(&job.group))
                    .key(k.held(&job.group))
                    .key(k.rate_prefix(&job.group))
                    .key(k.delayed(&job.group))
                    .arg(optional(request.limits.max_running))
                    .arg(optional(request.limits.rate_limit))
                    .arg(request.limits.limit_key.as_deref().unwrap_or_default())
                    .arg(optional(job.priority)),
            )
            .await?;
        Claim::from_reply(&reply)
    }

    /// Records the outcome of an attempt, and applies the group's failure policy, in one
    /// round trip.
    pub async fn complete(&self, request: CompleteRequest<'_>) -> Result<Completion, CoordinatorError> {
        let CompleteRequest { attempt, outcome, .. } = request;
        let result = match (&outcome.status, &outcome.result) {
            (JobStatus::Finished, Some(result)) => json_text(result),
            (JobStatus::Finished, None) => "null".into(),
            _ => String::new(),
        };
        let (kind, message) = match &outcome.error {
            Some(error) => (error.kind.as_str(), error.message.as_str()),
            None => ("", ""),
        };
        let effect = FailureEffect::of(outcome.status, outcome.error.as_ref());
        let reply: RedisValue = self
            .transition(
                self.attempt_call(&COMPLETE, attempt)
                    .arg(outcome.status.as_str())
                    .arg(result)
                    .arg(kind)
                    .arg(message)
                    .arg(request.now_ms)
                    .arg(outcome.duration_ms)
                    .arg(self.retention_secs(&attempt.job.group))
                    .arg(effect.as_arg())
                    .arg(request.max_failures),
            )
            .await?;
        Completion::from_reply(&reply)
    }

    /// Sends a failed attempt back for a retry (started → queued) that becomes available at
    /// `available_at_ms`, and applies the group's failure policy.
    pub async fn retry(&self, request: RetryRequest<'_>) -> Result<Completion, CoordinatorError> {
        let RetryRequest { attempt, error, .. } = request;
        let job = attempt.job;
        let effect = FailureEffect::of(JobStatus::Failed, Some(error));
        let reply: RedisValue = self
            .transition(
                self.attempt_call(&RETRY, attempt)
                    .key(self.keys.queued(&job.group))
                    .arg(error.kind.as_str())
                    .arg(&error.message)
                    .arg(request.available_at_ms)
                    .arg(effect.as_arg())
                    .arg(request.max_failures),
            )
            .await?;
        Completion::from_reply(&reply)
    }

    /// Hands a started job back to the queue (started → queued) when its worker drains
    /// without finishing it. Returns whether it was handed back.
    pub async fn requeue(&self, attempt: AttemptKey<'_>) -> Result<bool, CoordinatorError> {
        let job = attempt.job;
        let moved: i64 = self
            .transition(
                REQUEUE
                    .key(self.keys.job(&job.group, &job.id))
                    .key(self.keys.running(&job.group))
                    .key(self.keys.queued(&job.group))
                    .arg(attempt.worker_id)
                    .arg(attempt.attempt)
                    .arg(crate::now_ms()),
            )
            .await?;
        Ok(moved == 1)
    }

    /// Records an undecodable job as failed with `bad_message` (if not started or ended yet).
    pub async fn record_bad_message(&self, bad: BadMessage<'_>) -> Result<bool, CoordinatorError> {
        let recorded: i64 = self
            .transition(
                BAD_MESSAGE
                    .key(self.keys.job(bad.group, bad.id))
                    .key(self.keys.index(bad.group))
                    .key(self.keys.queued(bad.group))
                    .arg(bad.id)
                    .arg(bad.reason)
                    .arg(bad.now_ms)
                    .arg(self.retention_secs(bad.group))
                    .arg(bad.group)
                    .arg(bad.function),
            )
            .await?;
        Ok(recorded == 1)
    }

    /// Creates a submitted job's queued record unless its id or idempotency key (scoped to
    /// its group) already names a job (then that job's id), or its group is broken.
    pub async fn submit(
        &self,
        job: &JobMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, CoordinatorError> {
        self.submit_job(NewJob::new(job, idempotency_key)).await
    }

    /// [`Coordinator::submit`] with a delay and more fields: a delayed job's record keeps
    /// `run_at`, enters the delayed set, and counts as queued from `run_at` on (the queued
    /// set's score, which the queue timeout and the corrector read).
    pub async fn submit_job(&self, new: NewJob<'_>) -> Result<Submitted, CoordinatorError> {
        let mut submitted = self.submit_jobs(&[new]).await?;
        submitted
            .pop()
            .ok_or_else(|| CoordinatorError::Corrupt("no submit reply".into()))
    }

    /// Ends a job early: a cancel (`queued|started → canceled`) or a queue timeout
    /// (`queued → failed`). The caller publishes the result, then calls
    /// [`Coordinator::announced`].
    pub async fn end_early(&self, request: EndRequest<'_>) -> Result<EndEarly, CoordinatorError> {
        let group = match request.group {
            Some(group) => group.to_string(),
            None => match self.group_of(request.id).await? {
                Some(group) => group,
                None => return Ok(EndEarly::Missing),
            },
        };
        let from: Vec<&str> = request.allowed_from.iter().map(|s| s.as_str()).collect();
        let reply: RedisValue = self
            .transition(
                END_EARLY
                    .key(self.keys.job(&group, request.id))
                    .key(self.keys.queued(&group))
                    .key(self.keys.running(&group))
                    .key(self.keys.owed(&group))
                    .key(self.keys.delayed(&group))
                    .arg(request.status.as_str())
                    .arg(request.error.kind.as_str())
                    .arg(&request.error.message)
                    .arg(crate::now_ms())
                    .arg(self.retention_secs(&group))
                    .arg(from.join(",")),
            )
            .await?;
        EndEarly::from_reply(&reply)
    }

    /// Removes the record of a submit that was refused (its publish failed, or its Redis
    /// calls ran out), with its index entries and idempotency key, so that a retried
    /// submit starts afresh; but only while the record is still that submit's own: queued,
    /// never claimed, with `job`'s submit time, and never answered as `existing` to
    /// another caller. Returns whether it was removed.
    pub async fn discard_refused(
        &self,
        job: &JobMessage,
        idempotency_key: Option<&str>,
    ) -> Result<bool, CoordinatorError> {
        let k = &self.keys;
        let idem = idempotency_key
            .map(|key| k.idempotency(&job.group, key))
            .unwrap_or_default();
        let submitted_at = job.submitted_at.map(|t| t.to_string()).unwrap_or_default();
        let discarded: i64 = self
            .transition(
                DISCARD
                    .key(k.job(&job.group, &job.id))
                    .key(k.index(&job.group))
                    .key(k.queued(&job.group))
                    .key(idem)
                    .arg(&job.id)
                    .arg(submitted_at),
            )
            .await?;
        Ok(discarded == 1)
    }

    /// Marks the result of early-ended job `id` of `group` as published.
    pub async fn announced(&self, group: &str, id: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = redis::pipe()
            .atomic()
            .hdel(self.keys.job(group, id), "announce")
            .ignore()
            .zrem(self.keys.owed(group), id)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Marks that `attempt` parked its delivery (a long job's handoff): from now on a parked
    /// copy is the job's only copy, kept until [`Coordinator::mark_published`].
    pub async fn mark_handoff(&self, attempt: AttemptKey<'_>) -> Result<(), CoordinatorError> {
        let value = format!("{}:{}", attempt.worker_id, attempt.attempt);
        self.mark(&attempt.job.group, &attempt.job.id, "handoff", &value)
            .await
    }

    /// Marks a job's result as confirmed published by the worker that ended it.
    pub async fn mark_published(&self, group: &str, id: &str) -> Result<(), CoordinatorError> {
        self.mark(group, id, "published", "1").await
    }

    async fn mark(&self, group: &str, id: &str, field: &str, value: &str) -> Result<(), CoordinatorError> {
        let _: i64 = self
            .transition(MARK.key(self.keys.job(group, id)).arg(field).arg(value))
            .await?;
        Ok(())
    }

    /// Forgets a terminal job's record and index entries, leaving a tombstone for the
    /// retention so a copy of its message still waiting somewhere never runs it again.
    pub async fn forget(&self, id: &str) -> Result<Forget, CoordinatorError> {
        let Some(group) = self.group_of(id).await? else {
            return Ok(Forget::Missing);
        };
        let reply: RedisValue = self
            .transition(
                FORGET
                    .key(self.keys.job(&group, id))
                    .key(self.keys.index(&group))
                    .key(self.keys.tombstone(&group, id))
                    .key(self.keys.events(&group, id))
                    .arg(id)
                    .arg(self.retention_secs(&group)),
            )
            .await?;
        Forget::from_reply(&reply)
    }
}

impl Coordinator {
    /// The start of a call of a script that ends a started attempt (complete.lua,
    /// retry.lua), as attempt.lua reads it: KEYS 1–4 the record, the group key, the
    /// group's running set and the job's tombstone; ARGV 1–2 the fencing token (worker id,
    /// attempt). Each script's own keys and args follow.
    fn attempt_call<'s>(&self, script: &'s Script, attempt: AttemptKey<'_>) -> ScriptInvocation<'s> {
        let job = attempt.job;
        let mut call = script.key(self.keys.job(&job.group, &job.id));
        call.key(self.keys.group(&job.group))
            .key(self.keys.running(&job.group))
            .key(self.keys.tombstone(&job.group, &job.id))
            .arg(attempt.worker_id)
            .arg(attempt.attempt);
        call
    }

    /// The start of a call of a script that may create a job's record (enqueue.lua,
    /// submit.lua, claim.lua), which all take the same first keys and args: KEYS 1–4 the
    /// record, the group's index and queued set, the id's tombstone; ARGV 1–5 the job's
    /// id, group, function, `args` (its JSON, or '' when not sent) and `submitted_at`.
    /// Each script's own keys and args follow.
    pub(super) fn record_call<'s>(
        &self,
        script: &'s Script,
        job: &JobMessage,
        args: String,
        submitted_at: impl ToRedisArgs,
    ) -> ScriptInvocation<'s> {
        let k = &self.keys;
        let mut call = script.key(k.job(&job.group, &job.id));
        call.key(k.index(&job.group))
            .key(k.queued(&job.group))
            .key(k.tombstone(&job.group, &job.id))
            .arg(&job.id)
            .arg(&job.group)
            .arg(&job.function)
            .arg(args)
            .arg(submitted_at);
        call
    }
}

impl Forget {
    /// Reads the reply of forget.lua.
    fn from_reply(reply: &RedisValue) -> Result<Forget, CoordinatorError> {
        let RedisValue::Array(items) = reply else {
            return Err(CoordinatorError::Corrupt(format!("forget reply {reply:?}")));
        };
        match items.first().and_then(text).as_deref() {
            Some("deleted") => Ok(Forget::Deleted),
            Some("conflict") => Ok(Forget::Conflict(
                items
                    .get(1)
                    .and_then(text)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(JobStatus::Queued),
            )),
            Some("unannounced") => {
                let fields = fields_of(items.get(1).unwrap_or(&RedisValue::Nil))?;
                Ok(Forget::Unannounced(Box::new(JobRecord::from_fields(fields)?)))
            }
            Some("missing") => Ok(Forget::Missing),
            other => Err(CoordinatorError::Corrupt(format!("forget verdict {other:?}"))),
        }
    }
}

impl Claim {
    /// Reads the reply of claim.lua.
    fn from_reply(reply: &RedisValue) -> Result<Claim, CoordinatorError> {
        let RedisValue::Array(items) = reply else {
            return Err(CoordinatorError::Corrupt(format!("claim reply {reply:?}")));
        };
        let item = |i: usize| items.get(i).and_then(text);
        match item(0).unwrap_or_default().as_str() {
            "run" => Ok(Claim::Run {
                attempts: item(1).and_then(|a| a.parse().ok()).unwrap_or(1),
                submitted_at: item(2).and_then(|s| s.parse().ok()),
            }),
            "drop" => item(1)
                .and_then(|s| s.parse().ok())
                .map(Claim::Drop)
                .ok_or_else(|| CoordinatorError::Corrupt("drop without status".into())),
            "hold" => Ok(Claim::Hold),
            "waiting" => item(1)
                .and_then(|reason| Waiting::from_reply(&reason))
                .map(Claim::Waiting)
                .ok_or_else(|| CoordinatorError::Corrupt(format!("claim reply {reply:?}"))),
            "gone" => Ok(Claim::Gone),
            "expired" => Ok(Claim::Expired),
            "missing" => Ok(Claim::Missing),
            "ended" => {
                let fields = fields_of(items.get(1).unwrap_or(&RedisValue::Nil))?;
                Ok(Claim::Ended(Box::new(JobRecord::from_fields(fields)?)))
            }
            other => Err(CoordinatorError::Corrupt(format!("claim verdict {other:?}"))),
        }
    }
}

impl EndEarly {
    /// Reads the reply of end_early.lua.
    pub(super) fn from_reply(reply: &RedisValue) -> Result<EndEarly, CoordinatorError> {
        let RedisValue::Array(items) = reply else {
            return Err(CoordinatorError::Corrupt(format!("end reply {reply:?}")));
        };
        let status = |i: usize| items.get(i).and_then(text).and_then(|s| s.parse().ok());
        match items.first().and_then(text).as_deref() {
            Some("ended") => {
                let previous =
                    status(1).ok_or_else(|| CoordinatorError::Corrupt("ended without status".into()))?;
                let record = JobRecord::from_fields(fields_of(items.get(2).unwrap_or(&RedisValue::Nil))?)?;
                Ok(EndEarly::Ended {
                    previous,
                    record: Box::new(record),
                })
            }
            Some("conflict") => Ok(EndEarly::Conflict(status(1).unwrap_or(JobStatus::Finished))),
            Some("missing") => Ok(EndEarly::Missing),
            other => Err(CoordinatorError::Corrupt(format!("end verdict {other:?}"))),
        }
    }
}
