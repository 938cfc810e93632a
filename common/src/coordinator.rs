//! The Redis coordinator: one hash per job, atomic status transitions as SPEC §2 allows
//! (Lua scripts, no read-then-write races), group failure counts and the worker registry.

use crate::message::{JobError, JobMessage, JobStatus, ResultMessage};
use crate::topology::Topology;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, AsyncCommands, Script, Value as RedisValue};
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/enqueue.lua")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/complete.lua")));
static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/requeue.lua")));
static BAD_MESSAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/bad_message.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/retry.lua")));
static SUBMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/submit.lua")));
static END_EARLY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/end_early.lua")));
static FORGET: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/forget.lua")));
static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lease.lua")));

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// No connection could be had from the pool (Redis down or the pool exhausted).
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// Redis answered with an error or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A record or script reply has an unexpected shape.
    #[error("corrupt coordinator data: {0}")]
    Corrupt(String),
    /// The pool could not be built from the URL.
    #[error("redis config: {0}")]
    Config(String),
}

impl CoordinatorError {
    /// Whether the error is Redis being unreachable (worth retrying after a back-off).
    pub fn is_connection_error(&self) -> bool {
        match self {
            CoordinatorError::Pool(_) => true,
            CoordinatorError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || is_passing_server_state(e)
            }
            _ => false,
        }
    }
}

/// Whether Redis refused a call for a passing reason: loading its data after a restart, a
/// replica or a demoted primary during a failover, out of memory. Callers retry these.
fn is_passing_server_state(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::*;
    matches!(
        e.kind(),
        redis::ErrorKind::Server(BusyLoading | TryAgain | MasterDown | ReadOnly | ClusterDown)
    ) || matches!(e.code(), Some("OOM" | "LOADING" | "READONLY" | "MASTERDOWN"))
}

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
    /// The job has no record and the claim carried no args: claim again with them.
    Missing,
    /// The job is terminal (or just failed fast): publish its result, then acknowledge.
    Ended(Box<JobRecord>),
}

/// How a job message reached the worker, which decides what a claim may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// A first delivery: a duplicate of a started or terminal job is dropped.
    Fresh,
    /// Redelivered by the broker (a crash or lost channel): may take over a job whose
    /// owner is gone, and republishes the result of a terminal job.
    Redelivered,
    /// A parked copy back from a delay queue: may take over a job whose owner is gone, and
    /// republishes a terminal job's result only when its owner is gone.
    Parked,
}

impl Copy {
    fn as_arg(self) -> &'static str {
        match self {
            Copy::Fresh => "0",
            Copy::Redelivered => "1",
            Copy::Parked => "2",
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    /// The record is gone.
    Deleted,
    /// The job is not terminal yet.
    Conflict(JobStatus),
    /// No such job.
    Missing,
}

/// Which jobs a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only this status.
    pub status: Option<JobStatus>,
}

impl ListFilter {
    /// Whether a record passes the filter.
    pub fn matches(&self, record: &JobRecord) -> bool {
        self.group.as_ref().is_none_or(|g| *g == record.group)
            && self.function.as_ref().is_none_or(|f| *f == record.function)
            && self.status.is_none_or(|s| s == record.status)
    }
}

/// A position in the newest-first listing: the last entry examined (its index score, the
/// submission time in ms, and its id). Stays valid while jobs are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Index score of the last entry examined.
    pub score: i64,
    /// Id of the last entry examined.
    pub id: String,
}

impl Cursor {
    /// The opaque text form used in the HTTP API.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.score, self.id)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (score, id) = text.split_once('.')?;
        let score = score.parse().ok()?;
        crate::message::is_valid_job_id(id).then(|| Cursor {
            score,
            id: id.to_string(),
        })
    }
}

impl Completion {
    /// Reads the reply of complete.lua or retry.lua.
    fn from_reply(reply: &RedisValue) -> Result<Completion, CoordinatorError> {
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

    fn as_arg(self) -> &'static str {
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
}

impl JobRecord {
    fn from_fields(mut fields: HashMap<String, String>) -> Result<JobRecord, CoordinatorError> {
        let status_text = fields
            .remove("status")
            .ok_or_else(|| CoordinatorError::Corrupt("record without status".into()))?;
        let status = status_text
            .parse()
            .map_err(|e| CoordinatorError::Corrupt(format!("{e}")))?;
        let json = |text: Option<String>| -> Result<Option<Value>, CoordinatorError> {
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| CoordinatorError::Corrupt(format!("json field: {e}")))
            })
            .transpose()
        };
        let number = |text: Option<String>| text.and_then(|t| t.parse::<i64>().ok());
        let error = match fields.remove("error_kind") {
            Some(kind) => Some(JobError {
                kind: kind.parse().map_err(CoordinatorError::Corrupt)?,
                message: fields.remove("error_message").unwrap_or_default(),
            }),
            None => None,
        };
        Ok(JobRecord {
            id: fields.remove("id").unwrap_or_default(),
            group: fields.remove("group").unwrap_or_default(),
            function: fields.remove("function").unwrap_or_default(),
            status,
            args: json(fields.remove("args"))?.unwrap_or(Value::Null),
            result: json(fields.remove("result"))?,
            error,
            attempts: number(fields.remove("attempts")).unwrap_or(0) as u32,
            worker: fields.remove("worker").filter(|w| !w.is_empty()),
            submitted_at: number(fields.remove("submitted_at")),
            started_at: number(fields.remove("started_at")),
            finished_at: number(fields.remove("finished_at")),
            duration_ms: number(fields.remove("duration_ms")).map(|d| d as u64),
        })
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
        })
    }
}

/// The coordinator of one namespace, over a deadpool-redis pool.
#[derive(Clone)]
pub struct Coordinator {
    pool: Pool,
    shared: Arc<SharedConnection>,
    topology: Topology,
    retention: Duration,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("namespace", &self.topology.namespace())
            .finish_non_exhaustive()
    }
}

fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisValue::SimpleString(s) => Some(s.clone()),
        RedisValue::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn fields_of(value: &RedisValue) -> Result<HashMap<String, String>, CoordinatorError> {
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

/// The connection every call of a coordinator (and its clones) shares, with a generation
/// so that only the first failure of a broken one discards it.
#[derive(Default)]
struct SharedConnection {
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
}

/// A handle on the shared connection that discards it when it turns out broken.
struct Tracked {
    conn: MultiplexedConnection,
    generation: u64,
    shared: Arc<SharedConnection>,
}

impl Tracked {
    fn check<T>(&self, reply: &redis::RedisResult<T>) {
        if let Err(e) = reply {
            // A read-only or demoted server (a failover) also gets a fresh connection, which
            // goes to wherever the URL points now.
            let failed_over = matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
                )
            );
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_unrecoverable_error()
                || failed_over
            {
                let mut current = self.shared.current.lock().expect("redis connection");
                if current.as_ref().is_some_and(|(g, _)| *g == self.generation) {
                    *current = None;
                }
            }
        }
    }
}

impl ConnectionLike for Tracked {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, RedisValue> {
        Box::pin(async move {
            let reply = self.conn.req_packed_command(cmd).await;
            self.check(&reply);
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<RedisValue>> {
        Box::pin(async move {
            let reply = self.conn.req_packed_commands(cmd, offset, count).await;
            self.check(&reply);
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// What `Coordinator::connection` returns: `&mut *conn` is the tracked connection.
struct Conn(Tracked);

impl std::ops::Deref for Conn {
    type Target = Tracked;
    fn deref(&self) -> &Tracked {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Tracked {
        &mut self.0
    }
}

fn opt_ms(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

impl Coordinator {
    /// Builds a pool for `redis_url` (explicit wait/create timeouts) and the coordinator of `topology`.
    pub fn connect(
        redis_url: &str,
        topology: Topology,
        retention: Duration,
    ) -> Result<Coordinator, CoordinatorError> {
        let mut config = deadpool_redis::Config::from_url(redis_url);
        let timeout = Some(Duration::from_secs(5));
        config.pool = Some(PoolConfig {
            max_size: 16,
            timeouts: Timeouts {
                wait: timeout,
                create: timeout,
                recycle: timeout,
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| CoordinatorError::Config(e.to_string()))?;
        Ok(Coordinator {
            pool,
            shared: Default::default(),
            topology,
            retention,
        })
    }

    /// The topology whose keys this coordinator uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// How long terminal records are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// The shared multiplexed connection, taken from the pool when there is none yet or
    /// the last one broke. Concurrent calls pipeline on it; a pool checkout per call would
    /// cost a recycle round trip (UNWATCH + PING) each time.
    async fn connection(&self) -> Result<Conn, CoordinatorError> {
        if let Some((generation, conn)) = self.shared.current.lock().expect("redis connection").clone() {
            return Ok(Conn(Tracked {
                conn,
                generation,
                shared: self.shared.clone(),
            }));
        }
        let conn = deadpool_redis::Connection::take(self.pool.get().await?);
        let mut current = self.shared.current.lock().expect("redis connection");
        let generation = current.as_ref().map_or(0, |(g, _)| g + 1);
        *current = Some((generation, conn.clone()));
        Ok(Conn(Tracked {
            conn,
            generation,
            shared: self.shared.clone(),
        }))
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }

    /// Records published jobs as queued, one pipelined round trip for all of them; a job
    /// that already has a record is left as it is. Returns how many records were created.
    pub async fn record_queued(&self, jobs: &[JobMessage]) -> Result<usize, CoordinatorError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for job in jobs {
            let args = serde_json::to_string(&job.args).unwrap_or_else(|_| "null".into());
            let submitted_at = job.submitted_at.unwrap_or_else(crate::now_ms);
            pipe.invoke_script(
                ENQUEUE
                    .key(self.topology.job_key(&job.id))
                    .arg(&job.id)
                    .arg(&job.group)
                    .arg(&job.function)
                    .arg(args)
                    .arg(submitted_at)
                    .arg(self.topology.namespace()),
            );
        }
        let mut conn = self.connection().await?;
        let created: Vec<i64> = match pipe.query_async(&mut *conn).await {
            Ok(created) => created,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // The script cache is empty (Redis restarted): load it and pipeline again.
                ENQUEUE.prepare_invoke().load_async(&mut *conn).await?;
                pipe.query_async(&mut *conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(created.iter().filter(|&&c| c == 1).count())
    }

    /// Claims a delivered job for `worker_id` (see [`Claim`] and [`Copy`]). Without
    /// `with_args` a job that has no record yet answers [`Claim::Missing`] (so large args
    /// are sent only then). `token` is unique per delivery: the same claim retried after a
    /// lost reply gets the same answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim(
        &self,
        job: &JobMessage,
        worker_id: &str,
        copy: Copy,
        with_args: bool,
        now_ms: i64,
        token: &str,
    ) -> Result<Claim, CoordinatorError> {
        let args = if with_args {
            serde_json::to_string(&job.args).unwrap_or_else(|_| "null".into())
        } else {
            String::new()
        };
        let mut conn = self.connection().await?;
        let reply: RedisValue = CLAIM
            .key(self.topology.job_key(&job.id))
            .key(self.topology.group_key(&job.group))
            .arg(&job.id)
            .arg(&job.group)
            .arg(&job.function)
            .arg(args)
            .arg(opt_ms(job.submitted_at))
            .arg(worker_id)
            .arg(now_ms)
            .arg(copy.as_arg())
            .arg(self.topology.namespace())
            .arg(self.retention.as_secs().max(1))
            .arg(token)
            .invoke_async(&mut *conn)
            .await?;
        let RedisValue::Array(items) = &reply else {
            return Err(CoordinatorError::Corrupt(format!("claim reply {reply:?}")));
        };
        let verdict = items.first().and_then(text).unwrap_or_default();
        match verdict.as_str() {
            "run" => {
                let attempts = items
                    .get(1)
                    .and_then(text)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(1);
                let submitted_at = items.get(2).and_then(text).and_then(|s| s.parse().ok());
                Ok(Claim::Run {
                    attempts,
                    submitted_at,
                })
            }
            "drop" => {
                let status = items
                    .get(1)
                    .and_then(text)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| CoordinatorError::Corrupt("drop without status".into()))?;
                Ok(Claim::Drop(status))
            }
            "hold" => Ok(Claim::Hold),
            "missing" => Ok(Claim::Missing),
            "ended" => {
                let fields = fields_of(items.get(1).unwrap_or(&RedisValue::Nil))?;
                Ok(Claim::Ended(Box::new(JobRecord::from_fields(fields)?)))
            }
            other => Err(CoordinatorError::Corrupt(format!("claim verdict {other:?}"))),
        }
    }

    /// Records the outcome of `attempt` of a job run by `worker_id`, and applies the group's
    /// failure policy with `max_failures`, in one round trip.
    pub async fn complete(
        &self,
        job: &JobMessage,
        worker_id: &str,
        attempt: u32,
        outcome: &Outcome,
        max_failures: u32,
        now_ms: i64,
    ) -> Result<Completion, CoordinatorError> {
        let result = match (&outcome.status, &outcome.result) {
            (JobStatus::Finished, Some(result)) => {
                serde_json::to_string(result).unwrap_or_else(|_| "null".into())
            }
            (JobStatus::Finished, None) => "null".into(),
            _ => String::new(),
        };
        let (kind, message) = match &outcome.error {
            Some(error) => (error.kind.as_str(), error.message.as_str()),
            None => ("", ""),
        };
        let effect = FailureEffect::of(outcome.status, outcome.error.as_ref());
        let mut conn = self.connection().await?;
        let reply: RedisValue = COMPLETE
            .key(self.topology.job_key(&job.id))
            .key(self.topology.group_key(&job.group))
            .arg(worker_id)
            .arg(attempt)
            .arg(outcome.status.as_str())
            .arg(result)
            .arg(kind)
            .arg(message)
            .arg(now_ms)
            .arg(outcome.duration_ms)
            .arg(self.retention.as_secs().max(1))
            .arg(effect.as_arg())
            .arg(max_failures)
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        Completion::from_reply(&reply)
    }

    /// Sends `attempt` of a failed job back for a retry (started → queued) that becomes
    /// available at `available_at_ms`, and applies the group's failure policy.
    pub async fn retry(
        &self,
        job: &JobMessage,
        worker_id: &str,
        attempt: u32,
        error: &JobError,
        available_at_ms: i64,
        max_failures: u32,
    ) -> Result<Completion, CoordinatorError> {
        let effect = FailureEffect::of(JobStatus::Failed, Some(error));
        let mut conn = self.connection().await?;
        let reply: RedisValue = RETRY
            .key(self.topology.job_key(&job.id))
            .key(self.topology.group_key(&job.group))
            .arg(worker_id)
            .arg(attempt)
            .arg(error.kind.as_str())
            .arg(&error.message)
            .arg(available_at_ms)
            .arg(effect.as_arg())
            .arg(max_failures)
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        Completion::from_reply(&reply)
    }

    /// Hands a started job back to the queue (started → queued) when its worker drains
    /// without finishing it. Returns whether it was handed back.
    pub async fn requeue(&self, id: &str, worker_id: &str, attempt: u32) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let moved: i64 = REQUEUE
            .key(self.topology.job_key(id))
            .arg(worker_id)
            .arg(attempt)
            .arg(crate::now_ms())
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        Ok(moved == 1)
    }

    /// Records an undecodable job as failed with `bad_message` (if not started or ended yet).
    pub async fn record_bad_message(
        &self,
        id: &str,
        group: &str,
        function: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let recorded: i64 = BAD_MESSAGE
            .key(self.topology.job_key(id))
            .arg(id)
            .arg(reason)
            .arg(now_ms)
            .arg(self.retention.as_secs().max(1))
            .arg(group)
            .arg(function)
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        Ok(recorded == 1)
    }

    /// A job's record, or `None` for an unknown id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let fields: HashMap<String, String> = conn.hgetall(self.topology.job_key(id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        JobRecord::from_fields(fields).map(Some)
    }

    /// Many records in one pipelined round trip, in the order of `ids`.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>, CoordinatorError> {
        let mut records = Vec::with_capacity(ids.len());
        let mut conn = self.connection().await?;
        // Chunks keep each reply well inside the response timeout.
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.topology.job_key(id));
            }
            let all: Vec<HashMap<String, String>> = pipe.query_async(&mut *conn).await?;
            for fields in all {
                records.push(if fields.is_empty() {
                    None
                } else {
                    Some(JobRecord::from_fields(fields)?)
                });
            }
        }
        Ok(records)
    }

    /// A group's consecutive infrastructure failures and whether it is broken.
    pub async fn group_health(&self, group: &str) -> Result<(u32, bool), CoordinatorError> {
        let mut conn = self.connection().await?;
        let (failures, broken): (Option<u32>, Option<String>) = redis::cmd("HMGET")
            .arg(self.topology.group_key(group))
            .arg("failures")
            .arg("broken")
            .query_async(&mut *conn)
            .await?;
        Ok((failures.unwrap_or(0), broken.as_deref() == Some("1")))
    }

    /// Clears a group's broken flag and failure count.
    pub async fn reset_group(&self, group: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = conn.del(self.topology.group_key(group)).await?;
        Ok(())
    }

    fn workers_key(&self) -> String {
        format!("{}:workers", self.topology.namespace())
    }

    /// Writes a worker's record: a liveness key with a time to live (while it lives, no
    /// other worker takes over the worker's started jobs) and its info in the registry.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        info: &Value,
        ttl: Duration,
    ) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let info = info.to_string();
        let _: () = redis::pipe()
            .set_ex(self.topology.worker_key(worker_id), &info, ttl.as_secs().max(1))
            .ignore()
            .hset(self.workers_key(), worker_id, &info)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Removes a worker's record (a clean stop), so its jobs can be taken over at once.
    pub async fn deregister(&self, worker_id: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = redis::pipe()
            .del(self.topology.worker_key(worker_id))
            .ignore()
            .hdel(self.workers_key(), worker_id)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// The registry split by liveness: (live workers' info, dead workers' last info).
    async fn registry(&self) -> Result<(Vec<Value>, Vec<(String, Value)>), CoordinatorError> {
        let mut conn = self.connection().await?;
        let entries: Vec<(String, String)> = conn.hgetall(self.workers_key()).await?;
        if entries.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut pipe = redis::pipe();
        for (id, _) in &entries {
            pipe.get(self.topology.worker_key(id));
        }
        let current: Vec<Option<String>> = pipe.query_async(&mut *conn).await?;
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for ((id, last), now) in entries.into_iter().zip(current) {
            match now {
                Some(info) => live.push(serde_json::from_str(&info).unwrap_or(Value::Null)),
                None => dead.push((id, serde_json::from_str(&last).unwrap_or(Value::Null))),
            }
        }
        Ok((live, dead))
    }

    /// The info of every live worker (as written by its last heartbeat).
    pub async fn workers(&self) -> Result<Vec<Value>, CoordinatorError> {
        Ok(self.registry().await?.0)
    }

    /// Ids of the workers whose record is alive.
    pub async fn live_workers(&self) -> Result<Vec<String>, CoordinatorError> {
        Ok(self
            .workers()
            .await?
            .iter()
            .filter_map(|w| w["id"].as_str().map(String::from))
            .collect())
    }

    /// Removes workers whose heartbeat stopped from the registry, counts a crash for each
    /// of their groups (`max_failures` per group from `max_failures_of`), and returns them.
    pub async fn reap_dead_workers(
        &self,
        max_failures_of: impl Fn(&str) -> u32,
    ) -> Result<Vec<(String, Value)>, CoordinatorError> {
        let (_, dead) = self.registry().await?;
        let mut conn = self.connection().await?;
        let mut reaped = Vec::new();
        for (id, info) in dead {
            let removed: i64 = conn.hdel(self.workers_key(), &id).await?;
            if removed == 0 {
                continue; // another master reaped it first
            }
            for group in info["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let key = self.topology.group_key(group);
                let failures: u32 = conn.hincr(&key, "failures", 1).await?;
                if failures >= max_failures_of(group) {
                    let _: () = conn.hset(&key, "broken", 1).await?;
                }
            }
            reaped.push((id, info));
        }
        Ok(reaped)
    }

    /// Creates a submitted job's queued record unless its id or idempotency key already
    /// names a job (then that job's id), or its group is broken.
    pub async fn submit(
        &self,
        job: &JobMessage,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, CoordinatorError> {
        let args = serde_json::to_string(&job.args).unwrap_or_else(|_| "null".into());
        let idem = idempotency_key
            .map(|k| format!("{}:idem:{k}", self.topology.namespace()))
            .unwrap_or_default();
        let mut conn = self.connection().await?;
        let reply: Vec<String> = SUBMIT
            .key(self.topology.job_key(&job.id))
            .key(idem)
            .key(self.topology.group_key(&job.group))
            .arg(&job.id)
            .arg(&job.group)
            .arg(&job.function)
            .arg(args)
            .arg(job.submitted_at.unwrap_or_else(crate::now_ms))
            .arg(job.timeout_ms.map(|t| t.to_string()).unwrap_or_default())
            .arg(self.topology.namespace())
            .arg(self.retention.as_secs().max(1))
            .invoke_async(&mut *conn)
            .await?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("created"), _) => Ok(Submitted::Created),
            (Some("existing"), Some(id)) => Ok(Submitted::Existing(id.clone())),
            (Some("broken"), _) => Ok(Submitted::GroupBroken),
            _ => Err(CoordinatorError::Corrupt(format!("submit reply {reply:?}"))),
        }
    }

    /// Ends a job early: a cancel (`queued|started → canceled`) or a queue timeout
    /// (`queued → failed`). The caller publishes the result, then calls
    /// [`Coordinator::announced`].
    pub async fn end_early(
        &self,
        id: &str,
        status: JobStatus,
        error: &JobError,
        allowed_from: &[JobStatus],
    ) -> Result<EndEarly, CoordinatorError> {
        let from: Vec<&str> = allowed_from.iter().map(|s| s.as_str()).collect();
        let mut conn = self.connection().await?;
        let reply: RedisValue = END_EARLY
            .key(self.topology.job_key(id))
            .arg(status.as_str())
            .arg(error.kind.as_str())
            .arg(&error.message)
            .arg(crate::now_ms())
            .arg(self.retention.as_secs().max(1))
            .arg(from.join(","))
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        let RedisValue::Array(items) = &reply else {
            return Err(CoordinatorError::Corrupt(format!("end reply {reply:?}")));
        };
        match items.first().and_then(text).as_deref() {
            Some("ended") => {
                let previous = items
                    .get(1)
                    .and_then(text)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| CoordinatorError::Corrupt("ended without status".into()))?;
                let record = JobRecord::from_fields(fields_of(items.get(2).unwrap_or(&RedisValue::Nil))?)?;
                Ok(EndEarly::Ended {
                    previous,
                    record: Box::new(record),
                })
            }
            Some("conflict") => Ok(EndEarly::Conflict(
                items
                    .get(1)
                    .and_then(text)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(JobStatus::Finished),
            )),
            Some("missing") => Ok(EndEarly::Missing),
            other => Err(CoordinatorError::Corrupt(format!("end verdict {other:?}"))),
        }
    }

    /// Removes a submitted job whose publish failed (its record, index entries and
    /// idempotency key), so that a retried submit starts afresh.
    pub async fn discard(
        &self,
        id: &str,
        group: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(), CoordinatorError> {
        let ns = self.topology.namespace();
        let mut pipe = redis::pipe();
        pipe.del(self.topology.job_key(id)).ignore();
        pipe.zrem(format!("{ns}:index"), id).ignore();
        pipe.zrem(format!("{ns}:queued:{group}"), id).ignore();
        if let Some(key) = idempotency_key {
            pipe.del(format!("{ns}:idem:{key}")).ignore();
        }
        let mut conn = self.connection().await?;
        let _: () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }

    /// Marks an early-ended job's result as published.
    pub async fn announced(&self, id: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = conn.hdel(self.topology.job_key(id), "announce").await?;
        Ok(())
    }

    /// Forgets a terminal job's record and index entries.
    pub async fn forget(&self, id: &str) -> Result<Forget, CoordinatorError> {
        let mut conn = self.connection().await?;
        let reply: Vec<String> = FORGET
            .key(self.topology.job_key(id))
            .arg(id)
            .arg(self.topology.namespace())
            .invoke_async(&mut *conn)
            .await?;
        match reply.first().map(String::as_str) {
            Some("deleted") => Ok(Forget::Deleted),
            Some("conflict") => Ok(Forget::Conflict(
                reply
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(JobStatus::Queued),
            )),
            Some("missing") => Ok(Forget::Missing),
            _ => Err(CoordinatorError::Corrupt(format!("forget reply {reply:?}"))),
        }
    }

    /// Jobs newest first from the index, filtered, after `cursor` (an opaque position from a
    /// previous page). Returns the page and the cursor of the next one.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<JobRecord>, Option<Cursor>), CoordinatorError> {
        let index = format!("{}:index", self.topology.namespace());
        let mut conn = self.connection().await?;
        let mut page = Vec::with_capacity(limit);
        let max = cursor
            .map(|c| c.score.to_string())
            .unwrap_or_else(|| "+inf".into());
        let batch = (limit * 2).clamp(50, 1000);
        let mut offset = 0;
        let mut last: Option<Cursor>;
        loop {
            let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(batch)
                .query_async(&mut *conn)
                .await?;
            offset += entries.len();
            let exhausted = entries.len() < batch;
            // Equal scores come in reverse id order, so "after the cursor" is a lower score,
            // or the same score and a lower id.
            let fresh: Vec<(String, i64)> = entries
                .into_iter()
                .map(|(id, score)| (id, score as i64))
                .filter(|(id, score)| {
                    cursor.is_none_or(|c| {
                        *score < c.score || (*score == c.score && id.as_str() < c.id.as_str())
                    })
                })
                .collect();
            let mut pipe = redis::pipe();
            for (id, _) in &fresh {
                pipe.hgetall(self.topology.job_key(id));
            }
            let records: Vec<HashMap<String, String>> = if fresh.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut *conn).await?
            };
            for ((id, score), fields) in fresh.into_iter().zip(records) {
                last = Some(Cursor { score, id });
                if fields.is_empty() {
                    continue; // expired; the sweep removes its index entry
                }
                let record = JobRecord::from_fields(fields)?;
                if filter.matches(&record) {
                    page.push(record);
                    if page.len() == limit {
                        return Ok((page, last));
                    }
                }
            }
            if exhausted {
                return Ok((page, None));
            }
        }
    }

    /// Removes the index entries older than `older_than_ms` whose record has expired,
    /// walking them oldest first in batches of `batch`, past entries whose records live on
    /// (jobs still queued or running), examining at most `max_examined`. Returns how many
    /// were removed.
    pub async fn sweep_index(
        &self,
        older_than_ms: i64,
        batch: usize,
        max_examined: usize,
    ) -> Result<usize, CoordinatorError> {
        let index = format!("{}:index", self.topology.namespace());
        let mut conn = self.connection().await?;
        let (mut removed, mut alive, mut examined) = (0, 0, 0);
        while examined < max_examined {
            let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(&index)
                .arg("-inf")
                .arg(older_than_ms)
                .arg("LIMIT")
                .arg(alive)
                .arg(batch)
                .query_async(&mut *conn)
                .await?;
            if ids.is_empty() {
                break;
            }
            examined += ids.len();
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.exists(self.topology.job_key(id));
            }
            let exists: Vec<bool> = pipe.query_async(&mut *conn).await?;
            let gone: Vec<&String> = ids
                .iter()
                .zip(&exists)
                .filter(|(_, e)| !**e)
                .map(|(id, _)| id)
                .collect();
            alive += exists.iter().filter(|e| **e).count();
            if !gone.is_empty() {
                let _: () = conn.zrem(&index, gone.clone()).await?;
                removed += gone.len();
            }
            if ids.len() < batch {
                break;
            }
        }
        Ok(removed)
    }

    /// Ids of a group's queued jobs enqueued before `before_ms`, oldest first.
    pub async fn queued_before(
        &self,
        group: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let key = format!("{}:queued:{group}", self.topology.namespace());
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(before_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut *conn)
            .await?)
    }

    /// How many of a group's jobs are started now.
    pub async fn running(&self, group: &str) -> Result<u64, CoordinatorError> {
        let mut conn = self.connection().await?;
        Ok(conn
            .scard(format!("{}:running:{group}", self.topology.namespace()))
            .await?)
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`; returns whether it holds it.
    pub async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let held: i64 = LEASE
            .key(format!("{}:lease:{name}", self.topology.namespace()))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await?;
        Ok(held == 1)
    }

    /// Deletes every Redis key of this namespace (tests and `jobfleet` tooling).
    pub async fn purge_namespace(&self) -> Result<u64, CoordinatorError> {
        let mut conn = self.connection().await?;
        let pattern = format!("{}:*", self.topology.namespace());
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut *conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = conn.del(&keys).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
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
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let record = JobRecord::from_fields(fields).unwrap();
        assert_eq!(record.status, JobStatus::Failed);
        assert_eq!(record.args, serde_json::json!({"a": 1}));
        assert_eq!(record.error, Some(JobError::new(ErrorKind::Timeout, "slow")));
        let result = record.to_result_message().unwrap();
        assert_eq!(result.attempts, 2);
        assert_eq!(result.finished_at, 9);
        assert_eq!(result.result, None);
    }
}
