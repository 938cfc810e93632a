//! `/v1/schedules` (SPEC §9): cron schedules whose firings are jobs `<name>:<fire time>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/schedules` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// 1..64 chars of `[A-Za-z0-9_-]`; the firings' job ids start with it.
    pub name: String,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
    pub cron: String,
    /// The group of the jobs it submits.
    pub group: String,
    /// The function they run.
    pub function: String,
    /// Their args.
    #[serde(default)]
    #[schema(value_type = Object, nullable)]
    pub args: Option<Value>,
    /// An IANA time zone name (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Its name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// The group of its jobs.
    pub group: String,
    /// The function they run.
    pub function: String,
    /// Their args.
    #[schema(value_type = Object, nullable)]
    pub args: Value,
    /// Its time zone.
    pub timezone: String,
    /// `config` (the config file's `[schedules.<name>]`) or `api`.
    pub source: String,
    /// The next fire time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
    /// The fire time it last fired for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<String>,
}

/// `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Every schedule, by name.
    pub schedules: Vec<ScheduleView>,
}

/// The `{name}` of `/v1/schedules/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ScheduleName {
    /// The schedule's name
    pub name: String,
}
