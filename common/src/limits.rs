//! Flow control of a group (SPEC §9): how many of its jobs may run at once fleet-wide
//! (`max_running`), how fast they may start (`rate_limit`, optionally per `limit_key`),
//! and whether it is paused. The config file sets a group's limits; admins override them
//! at run time (kept in Redis, so they outlive restarts), and the claim script applies
//! whatever is in force when a job is about to start.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A start rate: at most `count` starts per `period_ms`, spread evenly (one every
/// `period_ms / count`), fleet-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts per period, at least 1.
    pub count: u32,
    /// The period, ms: 1,000 (`/s`), 60,000 (`/m`) or 3,600,000 (`/h`).
    pub period_ms: u64,
}

/// Why a rate limit text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate_limit {0:?}: write N/s, N/m or N/h with N a whole number of at least 1")]
pub struct BadRateLimit(pub String);

impl FromStr for RateLimit {
    type Err = BadRateLimit;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadRateLimit(text.to_string());
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period_ms = match unit.trim() {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(RateLimit { count, period_ms })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period_ms {
            1_000 => "s",
            60_000 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A group's limits in force: the config file's, overridden by what admins set at run
/// time. `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Whether the group is paused: it starts nothing.
    pub paused: bool,
    /// The fleet-wide cap on its started jobs.
    pub max_running: Option<u32>,
    /// The fleet-wide start rate.
    pub rate_limit: Option<RateLimit>,
    /// The top-level field of `args` whose value has a rate limit of its own.
    pub limit_key: Option<String>,
}

/// A change of one limit at run time: set it, lift it (no limit, whatever the config
/// says), or leave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// Leave it as it is.
    #[default]
    Keep,
    /// No limit.
    Lift,
    /// This limit.
    Set(T),
}

/// What an admin changes of a group's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsChange {
    /// `max_running`.
    pub max_running: Change<u32>,
    /// `rate_limit`.
    pub rate_limit: Change<RateLimit>,
    /// `limit_key`.
    pub limit_key: Change<String>,
}

/// The value stored for a lifted limit (an override meaning "none").
pub(crate) const LIFTED: &str = "none";

impl<T: ToString> Change<T> {
    /// The override to store: `None` to leave the field, else its stored text.
    pub(crate) fn stored(&self) -> Option<String> {
        match self {
            Change::Keep => None,
            Change::Lift => Some(LIFTED.to_string()),
            Change::Set(value) => Some(value.to_string()),
        }
    }
}

/// Whether `name` can be a `limit_key`: a top-level field name of `args`, 1..=64 chars.
pub fn is_valid_limit_key(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.contains(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_three_units() {
        assert_eq!(
            "20/s".parse(),
            Ok(RateLimit {
                count: 20,
                period_ms: 1_000
            })
        );
        assert_eq!(
            " 5 / m".parse(),
            Ok(RateLimit {
                count: 5,
                period_ms: 60_000
            })
        );
        assert_eq!("100/h".parse::<RateLimit>().unwrap().to_string(), "100/h");
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in ["", "20", "0/s", "-1/s", "2.5/s", "20/d", "x/s", "20/"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_change_stores_its_override() {
        assert_eq!(Change::<u32>::Keep.stored(), None);
        assert_eq!(Change::<u32>::Lift.stored().as_deref(), Some(LIFTED));
        assert_eq!(Change::Set(5u32).stored().as_deref(), Some("5"));
    }
}
