//! The wire types of SPEC §2–3: statuses, error kinds, job and result messages.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A job's status; lowercase on every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Published, waiting for a worker.
    Queued,
    /// Claimed by a worker and running.
    Started,
    /// Ran to completion; terminal.
    Finished,
    /// Ended with an error; terminal.
    Failed,
    /// Stopped on request; terminal.
    Canceled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Started,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Started => "started",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Whether nothing may ever change a job in this status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Whether a job may move from `self` to `next`: the moves of SPEC §2, plus
    /// queued → failed for a job failed before it starts (its group is broken, no worker
    /// took it within the queue timeout, or its message is undecodable), documented in
    /// docs/design.md.
    pub fn can_move_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued, Started)
                | (Queued, Canceled)
                | (Queued, Failed)
                | (Started, Finished)
                | (Started, Failed)
                | (Started, Canceled)
                | (Started, Queued)
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a status or error kind name that SPEC §2 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    /// What was named: `status` or `error kind`.
    pub what: &'static str,
    /// The name.
    pub name: String,
}

impl FromStr for JobStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_wire_name("status", &JobStatus::ALL, JobStatus::as_str, s)
    }
}

/// The machine-readable kind of a job's error (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The args do not fit what the function expects.
    InvalidArgs,
    /// The group's workers have no function of that name.
    UnknownFunction,
    /// The function itself reported an error.
    FunctionError,
    /// The job ran past its timeout.
    Timeout,
    /// The sandbox crashed or could not start.
    Crashed,
    /// The job was canceled.
    Canceled,
    /// The group is broken by its failure policy.
    GroupBroken,
    /// No worker picked the job up within the group's queue timeout.
    NoWorker,
    /// The job or its args exceed a size limit.
    TooLarge,
    /// The job message could not be decoded.
    BadMessage,
    /// A workflow step whose dependency failed or was canceled never ran (SPEC §10).
    DependencyFailed,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidArgs,
        ErrorKind::UnknownFunction,
        ErrorKind::FunctionError,
        ErrorKind::Timeout,
        ErrorKind::Crashed,
        ErrorKind::Canceled,
        ErrorKind::GroupBroken,
        ErrorKind::NoWorker,
        ErrorKind::TooLarge,
        ErrorKind::BadMessage,
        ErrorKind::DependencyFailed,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgs => "invalid_args",
            ErrorKind::UnknownFunction => "unknown_function",
            ErrorKind::FunctionError => "function_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Crashed => "crashed",
            ErrorKind::Canceled => "canceled",
            ErrorKind::GroupBroken => "group_broken",
            ErrorKind::NoWorker => "no_worker",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::BadMessage => "bad_message",
            ErrorKind::DependencyFailed => "dependency_failed",
        }
    }

    /// Whether a job that failed this way may be retried (`max_retries`): its own error,
    /// a crash or a timeout; not bad input, a cancel or a broken group.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::FunctionError | ErrorKind::Crashed | ErrorKind::Timeout
        )
    }

    /// Whether the failure policy counts this as an infrastructure failure (SPEC §2):
    /// a sandbox that crashed, could not start, or was killed by its timeout.
    pub fn is_infrastructure(self) -> bool {
        matches!(self, ErrorKind::Crashed | ErrorKind::Timeout)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_wire_name("error kind", &ErrorKind::ALL, ErrorKind::as_str, s)
    }
}

/// The one of `all` whose wire name (`as_str`) is `name`, or an error naming `what`.
fn by_wire_name<T: Copy>(
    what: &'static str,
    all: &[T],
    as_str: fn(T) -> &'static str,
    name: &str,
) -> Result<T, UnknownName> {
    let found = all.iter().copied().find(|&item| as_str(item) == name);
    found.ok_or_else(|| UnknownName {
        what,
        name: name.to_string(),
    })
}

/// A job's error: `{kind, message}` on every interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// What went wrong, machine-readable.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl JobError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        JobError {
            kind,
            message: message.into(),
        }
    }
}

impl JobError {
    /// A function's own error (`function_error`).
    pub fn function(message: impl Into<String>) -> Self {
        JobError::new(ErrorKind::FunctionError, message)
    }

    /// Args that do not fit the function (`invalid_args`).
    pub fn invalid_args(message: impl Into<String>) -> Self {
        JobError::new(ErrorKind::InvalidArgs, message)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for JobError {}

/// The job message body (SPEC §3), published to `NS.jobs` with the group as routing key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Unique id, 1..128 chars of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// The consumer group; equals the routing key.
    pub group: String,
    /// The function to run.
    pub function: String,
    /// The function's input; nil when absent.
    #[serde(default)]
    pub args: Value,
    /// When the job was submitted, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<i64>,
    /// Overrides the function's timeout, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A delayed job: start no earlier than this, unix milliseconds (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<i64>,
    /// A delayed job: start no earlier than this many milliseconds after `submitted_at`
    /// (after the worker first sees the message when it has none); `run_at` wins when both
    /// are set. At most [`MAX_DELAY_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// 0..=[`MAX_PRIORITY`], higher first (SPEC §9), for a group with `max_priority`; sent
    /// as the message's AMQP `priority` property too. None: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// The workflow or batch the job belongs to (SPEC §10); none for a job of its own.
    #[serde(flatten)]
    pub member: Membership,
}

/// The workflow step or batch a job belongs to (SPEC §10): carried by its message, kept
/// in its record and copied to its result, whose publish then also reaches the master's
/// workflow driver. All empty for a job of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The workflow's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The step's name within its workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The batch's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

impl Membership {
    /// Why these fields cannot be a job's: ids as job ids, a step name as a function
    /// name, a step only within a workflow.
    pub fn check(&self) -> Result<(), String> {
        for (what, id) in [("workflow", &self.workflow), ("batch", &self.batch)] {
            if let Some(id) = id.as_deref().filter(|id| !is_valid_job_id(id)) {
                return Err(format!(
                    "invalid {what} id {id:?}: 1..128 chars of [A-Za-z0-9._:-]"
                ));
            }
        }
        match (&self.workflow, self.step.as_deref()) {
            (_, Some(step)) if !is_valid_name(step) => Err(format!(
                "invalid step name {step:?}: 1..64 chars of [A-Za-z0-9_-]"
            )),
            (None, Some(_)) => Err("a step outside a workflow".into()),
            (Some(_), None) => Err("a workflow job without its step".into()),
            _ => Ok(()),
        }
    }
}

/// The highest job priority, and the most a group's `max_priority` may be.
pub const MAX_PRIORITY: u8 = 9;

/// The longest delay of a delayed job, milliseconds: 30 days. Longer delays are refused
/// (422 at the API, `bad_message` on the wire).
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3600 * 1000;

impl JobMessage {
    /// A job with a fresh random id, submitted now.
    pub fn new(group: impl Into<String>, function: impl Into<String>, args: Value) -> Self {
        JobMessage {
            id: new_job_id(),
            group: group.into(),
            function: function.into(),
            args,
            submitted_at: Some(crate::now_ms()),
            timeout_ms: None,
            run_at: None,
            delay_ms: None,
            priority: None,
            member: Membership::default(),
        }
    }

    /// The same job with `priority` (0..=[`MAX_PRIORITY`]).
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The same job, delayed until `run_at` (unix ms).
    pub fn with_run_at(mut self, run_at: i64) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// The same job, delayed by `delay` after its submission.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// When the job may start (unix ms): `run_at`, else `submitted_at` (or `seen_at` when the
    /// message has none) plus `delay_ms`; `None` for a job without a delay.
    pub fn due_at(&self, seen_at: i64) -> Option<i64> {
        match (self.run_at, self.delay_ms) {
            (Some(run_at), _) => Some(run_at),
            (None, Some(delay)) => {
                let delay = i64::try_from(delay).unwrap_or(i64::MAX);
                Some(self.submitted_at.unwrap_or(seen_at).saturating_add(delay))
            }
            (None, None) => None,
        }
    }

    /// The same job with the given id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The same job with a timeout overriding the function's.
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }
}

/// A fresh job id: a random UUID in its simple (32 hex digits) form.
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `id` is a valid job id: 1..128 chars of `[A-Za-z0-9._:-]`.
pub fn is_valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `name` is usable as a group or function name: 1..64 chars of `[A-Za-z0-9_-]`,
/// so that it can stand in a queue name and a topic routing key segment.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The result message (SPEC §3), published to `NS.results` with routing key
/// `<group>.<function>.<status>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The job's id.
    pub id: String,
    /// The job's group.
    pub group: String,
    /// The job's function.
    pub function: String,
    /// The terminal status.
    pub status: JobStatus,
    /// The function's output, when finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, when failed or canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// How many times the job was started.
    pub attempts: u32,
    /// The id of the worker that ended the job.
    #[serde(default)]
    pub worker: String,
    /// Submitted, unix ms.
    #[serde(default)]
    pub submitted_at: Option<i64>,
    /// Started (last attempt), unix ms.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Ended, unix ms.
    pub finished_at: i64,
    /// Execution time of the last attempt, ms.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// The workflow or batch the job belongs to (SPEC §10).
    #[serde(flatten)]
    pub member: Membership,
}

impl ResultMessage {
    /// The routing key on `NS.results`: `<group>.<function>.<status>`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.group, self.function, self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_follow_the_spec_moves() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!(JobStatus::Queued.can_move_to(JobStatus::Started));
        assert!(JobStatus::Started.can_move_to(JobStatus::Queued));
        assert!(!JobStatus::Queued.can_move_to(JobStatus::Finished));
        assert!(JobStatus::Queued.can_move_to(JobStatus::Failed));
        for terminal in [JobStatus::Finished, JobStatus::Failed, JobStatus::Canceled] {
            assert!(terminal.is_terminal());
            assert!(JobStatus::ALL.iter().all(|next| !terminal.can_move_to(*next)));
        }
        assert!("QUEUED".parse::<JobStatus>().is_err());
    }

    #[test]
    fn error_kinds_use_their_wire_names() {
        for kind in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(kind.as_str().parse::<ErrorKind>().unwrap(), kind);
        }
        assert!(ErrorKind::Crashed.is_infrastructure());
        assert!(!ErrorKind::FunctionError.is_infrastructure());
    }

    #[test]
    fn job_ids_are_checked_against_the_spec_alphabet() {
        assert!(is_valid_job_id("a"));
        assert!(is_valid_job_id("order-17:retry_2.x"));
        assert!(is_valid_job_id(&"x".repeat(128)));
        assert!(!is_valid_job_id(""));
        assert!(!is_valid_job_id(&"x".repeat(129)));
        assert!(!is_valid_job_id("has space"));
        assert!(!is_valid_job_id("slash/no"));
        assert!(is_valid_job_id(&new_job_id()));
    }

    #[test]
    fn membership_fields_a_producer_sends_are_checked() {
        let member = |workflow: Option<&str>, step: Option<&str>, batch: Option<&str>| Membership {
            workflow: workflow.map(String::from),
            step: step.map(String::from),
            batch: batch.map(String::from),
        };
        assert_eq!(member(None, None, None).check(), Ok(()));
        assert_eq!(member(Some("w1"), Some("a"), None).check(), Ok(()));
        assert_eq!(member(None, None, Some("b.7")).check(), Ok(()));
        for bad in [
            member(Some("has space"), Some("a"), None),
            member(None, None, Some(&"x".repeat(129))),
            member(Some("w1"), Some("a.b"), None),
            member(None, Some("a"), None),
            member(Some("w1"), None, None),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_delay_counts_from_the_submission_and_run_at_wins() {
        let mut job = JobMessage::new("g", "f", Value::Null);
        job.submitted_at = Some(1_000);
        assert_eq!(job.due_at(5_000), None);
        let delayed = job.clone().with_delay(std::time::Duration::from_millis(250));
        assert_eq!(delayed.due_at(5_000), Some(1_250));
        assert_eq!(delayed.clone().with_run_at(9).due_at(5_000), Some(9));
        let unsubmitted = JobMessage {
            submitted_at: None,
            ..delayed
        };
        assert_eq!(unsubmitted.due_at(5_000), Some(5_250));
        // Old consumers see no new fields on an immediate job.
        let text = serde_json::to_value(&job).unwrap();
        assert!(text.get("run_at").is_none() && text.get("delay_ms").is_none());
    }
}
