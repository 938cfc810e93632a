//! The Redis coordinator: one hash per job, atomic status transitions as SPEC §2 allows
//! (Lua scripts, no read-then-write races), group failure counts and the worker registry.
//!
//! - [`keys`]: every key name (a hash tag per group, so a transition stays in one slot)
//! - [`connection`](self): the shared multiplexed connection
//! - [`pool`](self): where connections come from (a URL, or a Sentinel set's primary)
//! - [`sentinel`](self): the `redis+sentinel://` URL and the watch for a moved primary
//! - [`replication`](self): `redis_min_replicas`, a `WAIT` after each transition
//! - [`record`](self): records and the verdicts transitions answer with
//! - transitions: submit, claim, complete, retry, requeue, end early, forget
//! - registry: worker heartbeats and liveness, group health, the leader lease
//! - listing: lookups by id, newest-first listings, index expiry
//! - [`activity`]: a running job's log lines and progress (SPEC §10)
//! - orphans: started jobs whose owner died, for the run-record corrector
//! - delayed: delayed jobs waiting for their time, deferred by workers, published by the
//!   leader
//! - flow: a group's run-time limits, pause and resume, the held jobs the leader releases
//! - flows: workflows and batches (SPEC §10): their state, steps ended once, unrun steps
//! - priority: the priority of a producer's job in its record (SPEC §9)

pub mod activity;
mod audit;
mod connection;
mod delayed;
mod flow;
mod flows;
pub mod keys;
mod listing;
mod orphans;
mod pool;
mod priority;
mod record;
mod registry;
mod replication;
mod schedules;
mod sentinel;
mod submit;
mod transitions;

pub use delayed::{Deferral, DueJob};
pub use flow::Waiting;
pub use flows::{FlowId, FlowKind, FlowRecord, StepEnded};
pub use keys::Keys;
pub use listing::{Cursor, ListFilter};
pub use orphans::Orphan;
pub use record::{
    Claim, Completion, CopyKind, EndEarly, FailureEffect, Forget, JobRecord, Outcome, Progress, Submitted,
};
pub use replication::ReplicaWait;
pub use schedules::StoredSchedule;
pub use sentinel::{SentinelUrl, SentinelUrlError};
pub use transitions::{
    AttemptKey, BadMessage, ClaimRequest, CompleteRequest, EndRequest, NewJob, RetryRequest,
};

use crate::config::Config;
use crate::tls::{Endpoint, TlsError};
use crate::topology::Topology;
use connection::SharedConnection;
use deadpool_redis::redis;
use pool::RedisPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a coordinator call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A record holds a status or error kind that SPEC §2 does not define.
    #[error("corrupt coordinator data: {0}")]
    UnknownName(#[from] crate::message::UnknownName),
    /// The pool could not be built from the URL.
    #[error("redis config: {0}")]
    Config(#[from] deadpool_redis::CreatePoolError),
    /// The `[tls]` settings are unusable.
    #[error("redis config: {0}")]
    Tls(#[from] Box<TlsError>),
    /// The Redis Sentinel URL is unusable.
    #[error("redis config: {0}")]
    SentinelUrl(#[from] SentinelUrlError),
    /// Fewer replicas than `redis_min_replicas` acknowledged a transition in time. It is
    /// applied on the primary but may be lost in a failover; retrying it is safe.
    #[error("redis: only {acknowledged} of {wanted} replicas acknowledged the write within {timeout:?}")]
    Unreplicated {
        /// Replicas that acknowledged it.
        acknowledged: u32,
        /// Replicas asked for.
        wanted: u32,
        /// How long it waited.
        timeout: Duration,
    },
}

impl CoordinatorError {
    /// Whether the error is Redis being unreachable (worth retrying after a back-off).
    pub fn is_connection_error(&self) -> bool {
        match self {
            CoordinatorError::Pool(_) | CoordinatorError::Unreplicated { .. } => true,
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

impl CoordinatorError {
    /// Whether retrying the same call later can succeed: every failure of Redis or of the
    /// way to it (down, slow, loading, read-only, out of memory, `MISCONF`, `NOAUTH`, busy
    /// with a script), as opposed to a reply this code cannot use (a corrupt record, a
    /// script error, a wrong type), which would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            CoordinatorError::Pool(_) | CoordinatorError::Unreplicated { .. } => true,
            CoordinatorError::Redis(e) => !is_deterministic(e),
            CoordinatorError::Corrupt(_)
            | CoordinatorError::UnknownName(_)
            | CoordinatorError::Config(_)
            | CoordinatorError::Tls(_)
            | CoordinatorError::SentinelUrl(_) => false,
        }
    }
}

/// Whether a Redis error would come back on every retry: the reply's shape, the call
/// itself, or a script failing on the data.
fn is_deterministic(e: &redis::RedisError) -> bool {
    use redis::ErrorKind::*;
    match e.kind() {
        Parse | UnexpectedReturnType | InvalidClientConfig | Client => true,
        Server(redis::ServerErrorKind::CrossSlot) => true,
        _ => {
            e.code() == Some("WRONGTYPE")
                || (e.code() == Some("ERR") && e.to_string().to_ascii_lowercase().contains("script"))
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

/// How long terminal records are kept: the fleet's retention, and the groups' own.
#[derive(Debug, Clone)]
struct Retention {
    default: Duration,
    groups: Arc<HashMap<String, Duration>>,
}

impl Retention {
    fn of(&self, group: &str) -> Duration {
        self.groups.get(group).copied().unwrap_or(self.default)
    }
}

/// The coordinator of one namespace, over a deadpool-redis pool.
#[derive(Clone)]
pub struct Coordinator {
    pool: RedisPool,
    shared: Arc<SharedConnection>,
    keys: Keys,
    topology: Topology,
    retention: Retention,
    /// The fleet's groups: where a lookup by job id alone searches.
    groups: Arc<[String]>,
    /// `redis_min_replicas`: replicas that must acknowledge each transition.
    replica_wait: Option<ReplicaWait>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("namespace", &self.topology.namespace())
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Builds a pool for `endpoint` (a URL, or a URL with `[tls]` settings such as
    /// [`Config::redis_endpoint`]; `redis+sentinel://` for the primary of a Sentinel set)
    /// and the coordinator of `topology`. It knows no groups: lookups by id alone find
    /// nothing until [`Coordinator::with_groups`] names them, and it waits for no replica
    /// (see [`Coordinator::from_config`]).
    pub fn connect(
        endpoint: impl Into<Endpoint>,
        topology: Topology,
        retention: Duration,
    ) -> Result<Coordinator, CoordinatorError> {
        let pool = RedisPool::new(&endpoint.into())?;
        Ok(Coordinator {
            pool,
            shared: Default::default(),
            keys: Keys::new(topology.namespace()),
            topology,
            retention: Retention {
                default: retention,
                groups: Default::default(),
            },
            groups: Arc::from(Vec::new()),
            replica_wait: None,
        })
    }

    /// The coordinator of a fleet configuration: its Redis, namespace, retention, groups
    /// and replica wait.
    pub fn from_config(config: &Config, topology: Topology) -> Result<Coordinator, CoordinatorError> {
        let groups: Vec<String> = config.groups.keys().cloned().collect();
        let retention = config
            .groups
            .iter()
            .filter_map(|(name, group)| Some((name.clone(), group.retention?)));
        Ok(
            Coordinator::connect(config.redis_endpoint(), topology, config.retention)?
                .with_groups(groups)
                .with_group_retention(retention)
                .with_replica_wait(ReplicaWait::of(config)),
        )
    }

    /// The same coordinator, keeping the terminal records of the groups named here as long
    /// as given instead of the fleet's retention.
    pub fn with_group_retention(
        mut self,
        groups: impl IntoIterator<Item = (String, Duration)>,
    ) -> Coordinator {
        self.retention.groups = Arc::new(groups.into_iter().collect());
        self
    }

    /// The same coordinator, searching `groups` on lookups by job id alone.
    pub fn with_groups(mut self, groups: impl IntoIterator<Item = String>) -> Coordinator {
        let mut groups: Vec<String> = groups.into_iter().collect();
        groups.sort();
        groups.dedup();
        self.groups = Arc::from(groups);
        self
    }

    /// The topology whose namespace this coordinator uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The key names of this coordinator's namespace.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The groups a lookup by id searches.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// How long terminal records are kept: the fleet's retention.
    pub fn retention(&self) -> Duration {
        self.retention.default
    }

    /// The shortest retention of any group (the fleet's when no group has its own).
    pub fn shortest_retention(&self) -> Duration {
        let own = self.retention.groups.values().copied();
        own.fold(self.retention.default, Duration::min)
    }

    /// The retention of `group` in whole seconds, as the scripts take it.
    fn retention_secs(&self, group: &str) -> u64 {
        self.retention.of(group).as_secs().max(1)
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }
}
