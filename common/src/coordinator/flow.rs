//! Flow control of a group (SPEC §9) in Redis: the limits admins set at run time
//! (`NS:{g}:limits`, over the config file's), pause and resume, and the held set
//! (`NS:{g}:held`) of queued jobs the claim held back while the group was paused or at
//! `max_running`, which the leader releases ([`Coordinator::release_held`]) as the
//! limits allow. The gate itself is part of the claim (claim.lua), so a start and its
//! check are one atomic step.

use super::{Coordinator, CoordinatorError};
use crate::limits::{Limits, LimitsChange, RateLimit, LIFTED};
use deadpool_redis::redis::{self, Script};
use std::collections::HashMap;
use std::sync::LazyLock;

static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/release.lua")));

/// Why flow control holds a job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The group is paused.
    Paused,
    /// The group runs `max_running` jobs already.
    MaxRunning,
    /// The start rate is used up: the job waits for the start slot reserved for it.
    RateLimit,
}

impl Waiting {
    /// The reason as claim.lua and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Paused => "paused",
            Waiting::MaxRunning => "max_running",
            Waiting::RateLimit => "rate_limit",
        }
    }

    pub(super) fn from_reply(reason: &str) -> Option<Waiting> {
        match reason {
            "paused" => Some(Waiting::Paused),
            "max_running" => Some(Waiting::MaxRunning),
            "rate_limit" => Some(Waiting::RateLimit),
            _ => None,
        }
    }
}

/// A limit as a script argument: its text, or `''` for none.
pub(super) fn optional(limit: Option<impl ToString>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_default()
}

impl Coordinator {
    /// The limits in force for `group`: `configured` (the config file's) with the admins'
    /// run-time overrides on top.
    pub async fn limits(&self, group: &str, configured: &Limits) -> Result<Limits, CoordinatorError> {
        let mut conn = self.connection().await?;
        let set: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.limits(group))
            .query_async(&mut *conn)
            .await?;
        Ok(in_force(configured, &set))
    }

    /// Applies an admin's change of `group`'s limits (kept until changed again or reset);
    /// a change of nothing changes nothing.
    pub async fn change_limits(&self, group: &str, change: &LimitsChange) -> Result<(), CoordinatorError> {
        let fields = [
            ("max_running", change.max_running.stored()),
            ("rate_limit", change.rate_limit.stored()),
            ("limit_key", change.limit_key.stored()),
        ];
        let changed: Vec<(&str, String)> = fields
            .into_iter()
            .filter_map(|(field, value)| Some((field, value?)))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (field, value) in changed {
            pipe.hset(self.keys.limits(group), field, value).ignore();
        }
        let mut conn = self.connection().await?;
        pipe.query_async::<()>(&mut *conn).await?;
        Ok(())
    }

    /// Drops the admins' overrides of `group`'s limits: the config file's apply again.
    /// Whether the group is paused stays as it is.
    pub async fn reset_limits(&self, group: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        redis::cmd("HDEL")
            .arg(self.keys.limits(group))
            .arg(&["max_running", "rate_limit", "limit_key"])
            .query_async::<()>(&mut *conn)
            .await?;
        Ok(())
    }

    /// Pauses (`true`) or resumes `group`: a paused group starts nothing; the jobs its
    /// workers meet wait in its held set until it is resumed.
    pub async fn set_paused(&self, group: &str, paused: bool) -> Result<(), CoordinatorError> {
        let key = self.keys.limits(group);
        let mut conn = self.connection().await?;
        let mut command = if paused {
            redis::cmd("HSET")
        } else {
            redis::cmd("HDEL")
        };
        command.arg(key).arg("paused");
        if paused {
            command.arg("1");
        }
        command.query_async::<()>(&mut *conn).await?;
        Ok(())
    }

    /// The leader's release of `group`'s held jobs, oldest first, as many as its limits
    /// allow now (none while paused) and at most `most`: each becomes due in the delayed
    /// set, for the promotion to publish. Returns how many were released.
    pub async fn release_held(
        &self,
        group: &str,
        configured: &Limits,
        now_ms: i64,
        most: usize,
    ) -> Result<u64, CoordinatorError> {
        let k = &self.keys;
        let mut conn = self.connection().await?;
        let released = RELEASE
            .key(k.held(group))
            .key(k.limits(group))
            .key(k.running(group))
            .key(k.delayed(group))
            .key(k.queued(group))
            .key(k.job(group, ""))
            .arg(now_ms)
            .arg(optional(configured.max_running))
            .arg(most)
            .invoke_async(&mut *conn)
            .await?;
        Ok(released)
    }

    /// How many jobs each of `groups` holds back (paused or at `max_running`), in one
    /// round trip.
    pub async fn held_counts(&self, groups: &[String]) -> Result<Vec<u64>, CoordinatorError> {
        let mut pipe = redis::pipe();
        for group in groups {
            pipe.zcard(self.keys.held(group));
        }
        let mut conn = self.connection().await?;
        Ok(pipe.query_async(&mut *conn).await?)
    }
}

/// The limits in force: the overrides `set` (field → stored text; `none` lifts a limit)
/// over `configured`. An override that does not parse is ignored.
fn in_force(configured: &Limits, set: &HashMap<String, String>) -> Limits {
    fn pick<T: Clone>(
        configured: &Option<T>,
        set: Option<&String>,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        match set.map(String::as_str) {
            Some(LIFTED) => None,
            Some(text) => parse(text).or_else(|| configured.clone()),
            None => configured.clone(),
        }
    }
    Limits {
        paused: set.get("paused").is_some_and(|p| p == "1"),
        max_running: pick(&configured.max_running, set.get("max_running"), |t| {
            t.parse().ok()
        }),
        rate_limit: pick(&configured.rate_limit, set.get("rate_limit"), |t| {
            t.parse::<RateLimit>().ok()
        }),
        limit_key: pick(&configured.limit_key, set.get("limit_key"), |t| {
            Some(t.to_string())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_none_lifts_a_limit() {
        let configured = Limits {
            paused: false,
            max_running: Some(5),
            rate_limit: "20/s".parse().ok(),
            limit_key: Some("customer".into()),
        };
        let set = HashMap::from([
            ("paused".to_string(), "1".to_string()),
            ("max_running".to_string(), "9".to_string()),
            ("rate_limit".to_string(), LIFTED.to_string()),
        ]);
        let limits = in_force(&configured, &set);
        assert!(limits.paused);
        assert_eq!(limits.max_running, Some(9));
        assert_eq!(limits.rate_limit, None);
        assert_eq!(limits.limit_key.as_deref(), Some("customer"));
        assert_eq!(in_force(&configured, &HashMap::new()), configured);
    }
}
