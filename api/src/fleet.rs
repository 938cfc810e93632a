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
    /// Whether it is paused: it starts nothing, its queued jobs wait (SPEC §9).
    #[serde(default)]
    pub paused: bool,
    /// Its fleet-wide cap on started jobs in force, if any.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Its fleet-wide start rate in force (`N/s`, `N/m`, `N/h`), if any.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// The field of `args` whose every value has `rate_limit` of its own, if any.
    #[serde(default)]
    pub limit_key: Option<String>,
    /// Queued jobs held back while it is paused or at `max_running`.
    #[serde(default)]
    pub held: u64,
}

/// `PATCH /v1/groups/{group}/limits`: the limits to change at run time (admin). A field
/// left out stays as it is; `null` lifts the limit (none, whatever the config file says);
/// `DELETE` on the same path goes back to the config file's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// Fleet-wide cap on started jobs, at least 1; `null` for none.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub max_running: Option<Option<u32>>,
    /// Fleet-wide start rate, `N/s`, `N/m` or `N/h` with N at least 1; `null` for none.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "20/s")]
    pub rate_limit: Option<Option<String>>,
    /// A top-level field of `args` whose every value gets `rate_limit` of its own;
    /// `null` for none.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "customer_id")]
    pub limit_key: Option<Option<String>>,
}

/// A field that is present: `Some(None)` when it is `null`, `Some(value)` otherwise (a
/// missing field stays `None` through `#[serde(default)]`).
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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
