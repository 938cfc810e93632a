//! The coordinator's vocabulary: job records, outcomes, and the verdicts its transitions
//! answer with, read from Redis replies.

use super::flow::Waiting;
use super::CoordinatorError;
use crate::message::{JobError, JobMessage, JobStatus, Membership, ResultMessage};
use deadpool_redis::redis::Value as RedisValue;
use serde_json::Value;
use std::collections::HashMap;

/// What a worker should do with a delivered job (the verdict of the claim script).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Run it: the job is now started by this worker, on this attempt.
    Run {
        /// The attempt number (1 on the first start).
        attempts: u32,
        /// When the job was submitted, as recorded.
        submitted_at: Option<i64>,
    },
    /// A duplicate of a started or terminal job: acknowledge and drop the message.
    Drop(JobStatus),
    /// Another live worker runs this job: park the copy and look again later.
    Hold,
    /// Flow control holds the job back (SPEC §9): it stays queued, in its group's held or
    /// delayed set, and is published again when it may start. Acknowledge the message.
    Waiting(Waiting),
    /// The job has no record and the claim carried no args: claim again with them.
    Missing,
    /// The job is terminal (or just failed fast): publish its result, then acknowledge.
    Ended(Box<JobRecord>),
    /// The job was deleted after it ended: acknowledge and drop the message, never run it.
    Gone,
    /// The job has no record and was submitted longer than the retention ago: it may have
    /// ended and its record expired, so it must not run. Dead-letter it with the reason.
    Expired,
}

/// How a job message reached the worker, which decides what a claim may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyKind {
    /// A first delivery: a duplicate of a started or terminal job is dropped.
    Fresh,
    /// Redelivered by the broker (a crash or lost channel): may take over a job whose
    /// owner is gone, and republishes the result of a terminal job.
    Redelivered,
    /// A parked copy back from a delay queue: may take over a job whose owner is gone, and
    /// republishes a terminal job's result only when its owner is gone.
    Parked,
}

impl CopyKind {
    pub(super) fn as_arg(self) -> &'static str {
        match self {
            CopyKind::Fresh => "0",
            CopyKind::Redelivered => "1",
            CopyKind::Parked => "2",
        }
    }
}

/// Whether a recorded outcome took effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// The outcome is recorded; publish the result.
    Recorded,
    /// The job was no longer this worker's attempt (canceled, taken over): publish nothing.
    Stale(Option<JobStatus>),
    /// The master ended the job (a cancel) and may have died before publishing its result:
    /// publish this record's result.
    Announce(Box<JobRecord>),
    /// The job has no record and no tombstone: a Redis failover lost it (the replica never
    /// had it). Hand the delivery back: its next claim records the job again and runs it.
    Lost,
}

/// What a submit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new queued record: publish the job.
    Created,
    /// The id or idempotency key names this existing job.
    Existing(String),
    /// The group is broken: nothing was recorded.
    GroupBroken,
}

/// What ending a job early did.
#[derive(Debug, Clone, PartialEq)]
pub enum EndEarly {
    /// Ended; publish the record's result.
    Ended {
        /// The status it had.
        previous: JobStatus,
        /// The record now.
        record: Box<JobRecord>,
    },
    /// Its status does not allow it (e.g. already terminal).
    Conflict(JobStatus),
    /// No such job.
    Missing,
}

/// What forgetting a job did.
#[derive(Debug, Clone, PartialEq)]
pub enum Forget {
    /// The master ended the job (a cancel) and its result is not confirmed published yet:
    /// nothing was deleted. Publish the record's result, mark it announced, then forget.
    Unannounced(Box<JobRecord>),
    /// The record is gone.
    Deleted,
    /// The job is not terminal yet.
    Conflict(JobStatus),
    /// No such job.
    Missing,
}

impl Completion {
    /// Reads the reply of complete.lua or retry.lua.
    pub(super) fn from_reply(reply: &RedisValue) -> Result<Completion, CoordinatorError> {
        let RedisValue::Array(items) = reply else {
            return Err(CoordinatorError::Corrupt(format!("completion reply {reply:?}")));
        };
        match items.first().and_then(text).as_deref() {
            Some("ok") => Ok(Completion::Recorded),
            Some("stale") => Ok(Completion::Stale(
                items.get(1).and_then(text).and_then(|s| s.parse().ok()),
            )),
            Some("announce") => Ok(Completion::Announce(Box::new(JobRecord::from_fields(
                fields_of(items.get(1).unwrap_or(&RedisValue::Nil))?,
            )?))),
            Some("lost") => Ok(Completion::Lost),
            _ => Err(CoordinatorError::Corrupt(format!("completion reply {reply:?}"))),
        }
    }
}

/// How an outcome changes its group's consecutive failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureEffect {
    /// A finished job resets the count.
    Reset,
    /// An infrastructure failure counts.
    Count,
    /// Anything else leaves it.
    Keep,
}

impl FailureEffect {
    /// The effect of an outcome on the failure policy (SPEC §2).
    pub fn of(status: JobStatus, error: Option<&JobError>) -> FailureEffect {
        match (status, error) {
            (JobStatus::Finished, _) => FailureEffect::Reset,
            (_, Some(error)) if error.kind.is_infrastructure() => FailureEffect::Count,
            _ => FailureEffect::Keep,
        }
    }

    pub(super) fn as_arg(self) -> &'static str {
        match self {
            FailureEffect::Reset => "reset",
            FailureEffect::Count => "count",
            FailureEffect::Keep => "none",
        }
    }
}

/// A job's end as a worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// finished, failed or canceled.
    pub status: JobStatus,
    /// The output, when finished.
    pub result: Option<Value>,
    /// The error, when failed or canceled.
    pub error: Option<JobError>,
    /// Execution time of this attempt.
    pub duration_ms: u64,
}

/// A job's record as the coordinator keeps it (times in unix ms).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The id.
    pub id: String,
    /// The group.
    pub group: String,
    /// The function.
    pub function: String,
    /// The status.
    pub status: JobStatus,
    /// The input.
    pub args: Value,
    /// The output, when finished.
    pub result: Option<Value>,
    /// The error, when failed or canceled.
    pub error: Option<JobError>,
    /// Times started.
    pub attempts: u32,
    /// The worker that ran (or runs) it.
    pub worker: Option<String>,
    /// Submitted.
    pub submitted_at: Option<i64>,
    /// Started (last attempt).
    pub started_at: Option<i64>,
    /// Ended.
    pub finished_at: Option<i64>,
    /// Execution time of the last attempt.
    pub duration_ms: Option<u64>,
    /// The job's own timeout, when its submit set one.
    pub timeout_ms: Option<u64>,
    /// A delayed job's start time (SPEC §9), unix ms.
    pub run_at: Option<i64>,
    /// The job this one retries (a bulk retry, SPEC §9).
    pub retry_of: Option<String>,
    /// The W3C trace context a delayed job's message carries when the leader publishes it.
    pub traceparent: Option<String>,
    /// The latest progress a running attempt reported (SPEC §10).
    pub progress: Option<Progress>,
    /// The job's priority (SPEC §9), when its submit set one.
    pub priority: Option<u8>,
    /// The workflow step or batch it belongs to (SPEC §10).
    pub member: Membership,
}

/// How far a job is, as it last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// 0 to 100.
    pub percent: f64,
    /// What it is doing, if it said.
    pub message: Option<String>,
}

impl JobRecord {
    pub(super) fn from_fields(mut fields: HashMap<String, String>) -> Result<JobRecord, CoordinatorError> {
        let status_text = fields
            .remove("status")
            .ok_or_else(|| CoordinatorError::Corrupt("record without status".into()))?;
        let status = status_text.parse()?;
        // A JSON field that cannot be read back (nested past serde_json's recursion limit,
        // or corrupt) keeps its stored text: one bad record must not hide the others.
        let json = |text: Option<String>| -> Option<Value> {
            text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
        };
        let number = |text: Option<String>| text.and_then(|t| t.parse::<i64>().ok());
        let error = match fields.remove("error_kind") {
            Some(kind) => Some(JobError {
                kind: kind.parse()?,
                message: fields.remove("error_message").unwrap_or_default(),
            }),
            None => None,
        };
        Ok(JobRecord {
            id: fields.remove("id").unwrap_or_default(),
            group: fields.remove("group").unwrap_or_default(),
            function: fields.remove("function").unwrap_or_default(),
            status,
            args: json(fields.remove("args")).unwrap_or(Value::Null),
            result: json(fields.remove("result")),
            error,
            attempts: number(fields.remove("attempts")).unwrap_or(0) as u32,
            worker: fields.remove("worker").filter(|w| !w.is_empty()),
            submitted_at: number(fields.remove("submitted_at")),
            started_at: number(fields.remove("started_at")),
            finished_at: number(fields.remove("finished_at")),
            duration_ms: number(fields.remove("duration_ms")).map(|d| d as u64),
            timeout_ms: number(fields.remove("timeout_ms")).map(|t| t as u64),
            run_at: number(fields.remove("run_at")),
            retry_of: fields.remove("retry_of"),
            traceparent: fields.remove("traceparent"),
            priority: fields.remove("priority").and_then(|p| p.parse().ok()),
            member: Membership {
                workflow: fields.remove("workflow"),
                step: fields.remove("step"),
                batch: fields.remove("batch"),
            },
            progress: fields
                .remove("progress")
                .and_then(|p| p.parse::<f64>().ok())
                .map(|percent| Progress {
                    percent,
                    message: fields.remove("progress_message").filter(|m| !m.is_empty()),
                }),
        })
    }

    /// The job message that runs this record's job now: its id, group, function, args,
    /// submission time, timeout and priority, without a delay (what the leader publishes when a
    /// delayed job is due, and the corrector when a job's message is lost).
    pub fn to_job_message(&self) -> JobMessage {
        JobMessage {
            id: self.id.clone(),
            group: self.group.clone(),
            function: self.function.clone(),
            args: self.args.clone(),
            submitted_at: self.submitted_at,
            timeout_ms: self.timeout_ms,
            run_at: None,
            delay_ms: None,
            priority: self.priority,
            member: self.member.clone(),
        }
    }

    /// The result message of a terminal record; `None` while the job is not terminal.
    pub fn to_result_message(&self) -> Option<ResultMessage> {
        if !self.status.is_terminal() {
            return None;
        }
        Some(ResultMessage {
            id: self.id.clone(),
            group: self.group.clone(),
            function: self.function.clone(),
            status: self.status,
            result: if self.status == JobStatus::Finished {
                Some(self.result.clone().unwrap_or(Value::Null))
            } else {
                None
            },
            error: self.error.clone(),
            attempts: self.attempts,
            worker: self.worker.clone().unwrap_or_default(),
            submitted_at: self.submitted_at,
            started_at: self.started_at,
            finished_at: self.finished_at.unwrap_or(0),
            duration_ms: self.duration_ms,
            member: self.member.clone(),
        })
    }
}

pub(super) fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisValue::SimpleString(s) => Some(s.clone()),
        RedisValue::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn fields_of(value: &RedisValue) -> Result<HashMap<String, String>, CoordinatorError> {
    let RedisValue::Array(items) = value else {
        return Err(CoordinatorError::Corrupt("expected a field list".into()));
    };
    let mut fields = HashMap::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        if let [name, value] = pair {
            if let (Some(name), Some(value)) = (text(name), text(value)) {
                fields.insert(name, value);
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ErrorKind;

    #[test]
    fn failure_effects_follow_the_policy() {
        assert_eq!(FailureEffect::of(JobStatus::Finished, None), FailureEffect::Reset);
        let crash = JobError::new(ErrorKind::Crashed, "x");
        let own = JobError::new(ErrorKind::FunctionError, "x");
        assert_eq!(
            FailureEffect::of(JobStatus::Failed, Some(&crash)),
            FailureEffect::Count
        );
        assert_eq!(
            FailureEffect::of(JobStatus::Failed, Some(&own)),
            FailureEffect::Keep
        );
        assert_eq!(
            FailureEffect::of(
                JobStatus::Canceled,
                Some(&JobError::new(ErrorKind::Canceled, "x"))
            ),
            FailureEffect::Keep
        );
    }

    #[test]
    fn a_record_is_read_from_its_fields() {
        let fields = HashMap::from(
            [
                ("id", "j"),
                ("group", "g"),
                ("function", "f"),
                ("status", "failed"),
                ("args", "{\"a\":1}"),
                ("attempts", "2"),
                ("error_kind", "timeout"),
                ("error_message", "slow"),
                ("finished_at", "9"),
                ("priority", "7"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let record = JobRecord::from_fields(fields).unwrap();
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.args, serde_json::json!({"a": 1}));
        assert_eq!(record.error, Some(JobError::new(ErrorKind::Timeout, "slow")));
        assert_eq!(record.to_job_message().priority, Some(7));
        let result = record.to_result_message().unwrap();
        assert_eq!(result.attempts, 2);
        assert_eq!(result.finished_at, 9);
        assert_eq!(result.result, None);
    }

    #[test]
    fn unreadable_json_fields_keep_their_text() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let fields = HashMap::from(
            [
                ("status", "finished"),
                ("args", deep.as_str()),
                ("result", "{not json"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let record = JobRecord::from_fields(fields).unwrap();
        assert_eq!(record.args, Value::String(deep));
        assert_eq!(record.result, Some(Value::String("{not json".into())));
    }

    #[test]
    fn an_unknown_status_or_error_kind_is_corrupt_data_that_names_its_cause() {
        use std::error::Error;
        let record = |status: &str, kind: &str| {
            let fields = [("status", status), ("error_kind", kind)];
            JobRecord::from_fields(HashMap::from(fields.map(|(k, v)| (k.to_string(), v.to_string()))))
        };
        for (err, cause) in [
            (record("lost", "timeout").unwrap_err(), "unknown status \"lost\""),
            (
                record("failed", "oops").unwrap_err(),
                "unknown error kind \"oops\"",
            ),
        ] {
            assert_eq!(err.to_string(), format!("corrupt coordinator data: {cause}"));
            assert!(!err.is_transient(), "{err}");
            let source = err.source().expect("the parse error is kept");
            assert_eq!(source.to_string(), cause);
        }
    }
}
