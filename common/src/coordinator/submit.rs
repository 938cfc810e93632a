//! Submitting jobs (→ queued): submit.lua for each, many of them pipelined, so that a batch
//! costs the round trips of one job.

use super::flows::member_fields;
use super::transitions::{json_text, NewJob};
use super::{Coordinator, CoordinatorError, Submitted};
use deadpool_redis::redis::{self, FromRedisValue, Script, ScriptInvocation, Value as RedisValue};
use std::sync::LazyLock;

static SUBMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/submit.lua")));

impl Coordinator {
    /// Submits each of `jobs` as [`Coordinator::submit_job`] describes, in two pipelined
    /// round trips whatever their number: one looks for ids that name a job of another
    /// group (that job is the original), one runs the others' submit scripts in order.
    /// The answers follow the order of `jobs`; a repeated id or idempotency key within
    /// `jobs` answers `existing` from its second job on.
    pub async fn submit_jobs(&self, jobs: &[NewJob<'_>]) -> Result<Vec<Submitted>, CoordinatorError> {
        let ids: Vec<&str> = jobs.iter().map(|new| new.job.id.as_str()).collect();
        let holders = self.groups_of(&ids).await?;
        let mut answers: Vec<Option<Submitted>> = vec![None; jobs.len()];
        let mut pipe = redis::pipe();
        let mut sent = Vec::with_capacity(jobs.len());
        for (i, (new, holder)) in jobs.iter().zip(holders).enumerate() {
            match holder {
                Some(group) if group != new.job.group => {
                    answers[i] = Some(Submitted::Existing(new.job.id.clone()));
                }
                _ => {
                    pipe.invoke_script(&self.submit_call(new));
                    sent.push(i);
                }
            }
        }
        if !sent.is_empty() {
            let replies = self.pipelined(&mut pipe, &SUBMIT.prepare_invoke()).await?;
            for (i, reply) in sent.into_iter().zip(replies) {
                answers[i] = Some(Submitted::from_submit_reply(reply)?);
            }
        }
        answers
            .into_iter()
            .map(|answer| answer.ok_or_else(|| CoordinatorError::Corrupt("a submit without reply".into())))
            .collect()
    }

    /// The submit.lua call that records `new`.
    fn submit_call(&self, new: &NewJob<'_>) -> ScriptInvocation<'static> {
        let NewJob {
            job, idempotency_key, ..
        } = *new;
        let k = &self.keys;
        let idem = idempotency_key
            .map(|key| k.idempotency(&job.group, key))
            .unwrap_or_default();
        let submitted_at = job.submitted_at.unwrap_or_else(crate::now_ms);
        let run_at = new.delay_until.or(job.run_at);
        let mut call = self.record_call(&SUBMIT, job, json_text(&job.args), submitted_at);
        call.key(k.group(&job.group))
            .key(idem)
            .key(k.job(&job.group, ""))
            .key(k.delayed(&job.group))
            .arg(job.timeout_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.retention_secs(&job.group))
            .arg(run_at.map(|t| t.to_string()).unwrap_or_default())
            .arg(if new.delay_until.is_some() { "1" } else { "0" });
        for (name, value) in new.fields.iter().copied().chain(member_fields(job)) {
            call.arg(name).arg(value);
        }
        call
    }
}

impl Submitted {
    /// Reads the reply of submit.lua.
    fn from_submit_reply(reply: RedisValue) -> Result<Submitted, CoordinatorError> {
        let reply = Vec::<String>::from_redis_value(reply).map_err(redis::RedisError::from)?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("created"), _) => Ok(Submitted::Created),
            (Some("existing"), Some(id)) => Ok(Submitted::Existing(id.clone())),
            (Some("broken"), _) => Ok(Submitted::GroupBroken),
            _ => Err(CoordinatorError::Corrupt(format!("submit reply {reply:?}"))),
        }
    }
}
