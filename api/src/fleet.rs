//! `/v1/groups`, `/v1/workers` and the health checks: the fleet as the master sees it.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The `{group}` of the `/v1/groups/{group}` routes (the master extracts it as
/// `Path<GroupName>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupName {
    /// The group
    pub group: String,
}

/// A group's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Name.
    pub name: String,
    /// Its functions.
    pub functions: Vec<String>,
    /// Live workers serving it.
    pub workers: u64,
    /// Jobs waiting in its queue.
    pub queue_depth: u64,
    /// Jobs running now.
    pub running: u64,
    /// Consecutive infrastructure failures.
    pub consecutive_failures: u64,
    /// Whether the failure policy broke it.
    pub broken: bool,
}

/// All groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    /// The groups.
    pub groups: Vec<GroupView>,
}

/// A live worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u64,
    /// Groups it consumes.
    pub groups: Vec<String>,
    /// Jobs running now.
    pub running: u64,
    /// Their ids.
    pub running_jobs: Vec<String>,
    /// Jobs in flight at most.
    pub concurrency: u64,
    /// Last heartbeat (RFC 3339).
    pub last_heartbeat: String,
}

/// All live workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    /// The workers.
    pub workers: Vec<WorkerView>,
}

/// Health and readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}
