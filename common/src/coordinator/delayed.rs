//! Delayed jobs (SPEC §9): each group's delayed set `NS:{g}:delayed` holds the ids of jobs
//! that may not start yet, scored by their `run_at`. The master's submit puts a delayed job
//! there instead of publishing it; a worker that meets a delayed job's message early
//! (a producer published it with `run_at` or `delay_ms`) defers it there and acknowledges
//! the message. The leader master reads the due entries ([`Coordinator::due`]), publishes
//! their jobs with confirms, then removes the entries ([`Coordinator::promoted`]): a job is
//! published at least once, and the claim lets only one copy run.

use super::record::{fields_of, text};
use super::transitions::json_text;
use super::{Coordinator, CoordinatorError, JobRecord};
use crate::message::JobMessage;
use deadpool_redis::redis::{self, Script, Value as RedisValue};
use std::sync::LazyLock;

static DEFER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/defer.lua")));
static DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/due.lua")));
static PROMOTED: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/promoted.lua")));

/// A delayed job that is due: its queued record and the score its entry had.
#[derive(Debug, Clone, PartialEq)]
pub struct DueJob {
    /// The job's record.
    pub record: JobRecord,
    /// The entry's score as read (its `run_at`), so only this entry is removed.
    pub score: String,
}

/// What deferring a delivered job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The job waits in its group's delayed set: acknowledge the message.
    Delayed,
    /// The job is not queued (started, ended, deleted, or too old to have a record):
    /// claim it as any other copy.
    Claim,
}

impl Coordinator {
    /// Defers a delivered job whose `run_at` is still ahead: creates its queued record if it
    /// has none, records `run_at` (and its priority) and puts it in the group's delayed set.
    pub async fn defer(
        &self,
        job: &JobMessage,
        run_at: i64,
        now_ms: i64,
    ) -> Result<Deferral, CoordinatorError> {
        let submitted_at = job.submitted_at.map(|t| t.to_string()).unwrap_or_default();
        let mut call = self.record_call(&DEFER, job, json_text(&job.args), submitted_at);
        call.key(self.keys.delayed(&job.group))
            .arg(run_at)
            .arg(now_ms)
            .arg(self.retention_secs(&job.group))
            .arg(job.priority.map(|p| p.to_string()).unwrap_or_default());
        let mut conn = self.connection().await?;
        let reply: Vec<String> = call.invoke_async(&mut *conn).await?;
        match reply.first().map(String::as_str) {
            Some("delayed") => Ok(Deferral::Delayed),
            Some("claim") => Ok(Deferral::Claim),
            _ => Err(CoordinatorError::Corrupt(format!("defer reply {reply:?}"))),
        }
    }

    /// Up to `limit` of `group`'s delayed jobs due at `now_ms`, earliest first, with their
    /// records. Entries of jobs no longer queued leave the set; the others stay until
    /// [`Coordinator::promoted`].
    pub async fn due(&self, group: &str, now_ms: i64, limit: usize) -> Result<Vec<DueJob>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let reply: RedisValue = DUE
            .key(self.keys.delayed(group))
            .key(self.keys.job(group, ""))
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut *conn)
            .await?;
        let RedisValue::Array(entries) = reply else {
            return Err(CoordinatorError::Corrupt(format!("due reply {reply:?}")));
        };
        entries.iter().map(due_job).collect()
    }

    /// Removes the delayed-set entries of `jobs` once their jobs are published (each only
    /// while it keeps the score read). Returns how many were removed.
    pub async fn promoted(&self, group: &str, jobs: &[DueJob]) -> Result<usize, CoordinatorError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut call = PROMOTED.key(self.keys.delayed(group));
        for job in jobs {
            call.arg(&job.record.id).arg(&job.score);
        }
        let mut conn = self.connection().await?;
        let removed: usize = call.invoke_async(&mut *conn).await?;
        Ok(removed)
    }

    /// How many jobs wait in each of `groups`' delayed sets, in one round trip.
    pub async fn delayed_counts(&self, groups: &[String]) -> Result<Vec<u64>, CoordinatorError> {
        let mut pipe = redis::pipe();
        for group in groups {
            pipe.zcard(self.keys.delayed(group));
        }
        let mut conn = self.connection().await?;
        Ok(pipe.query_async(&mut *conn).await?)
    }
}

/// One entry of due.lua's reply: `{id, score, {field, value, ...}}`.
fn due_job(entry: &RedisValue) -> Result<DueJob, CoordinatorError> {
    let corrupt = || CoordinatorError::Corrupt(format!("due entry {entry:?}"));
    let RedisValue::Array(items) = entry else {
        return Err(corrupt());
    };
    let [_, score, fields] = items.as_slice() else {
        return Err(corrupt());
    };
    Ok(DueJob {
        record: JobRecord::from_fields(fields_of(fields)?)?,
        score: text(score).ok_or_else(corrupt)?,
    })
}
