//! Cron schedules (SPEC §9): a schedule names a cron expression (5 fields, or 6 with
//! seconds first), an IANA time zone (default UTC) and the job each firing submits. Parsed
//! by `croner` (POSIX/Vixie cron semantics, optional seconds, DST-aware through
//! `chrono-tz`).
//!
//! Each firing is a job with the id `<name>:<fire time>` (RFC 3339 UTC, whole seconds), so
//! whoever fires a schedule twice for one time gets the one job. Missed firings (no master
//! ran, a leader handover, a slow tick): every fire time in the last [`CATCH_UP`] is fired;
//! of the older ones only the most recent, once (see [`Timing::to_fire`]).

use crate::message::is_valid_name;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// How far back missed fire times are all fired; of older ones only the most recent is.
pub const CATCH_UP: Duration = Duration::from_secs(60);
/// Firings of one schedule per check, at most (the rest wait for the next check).
pub const MAX_FIRINGS_PER_CHECK: usize = 100;

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The name is not usable in a job id.
    #[error("schedule name {0:?}: use 1..64 chars of [A-Za-z0-9_-]")]
    Name(String),
    /// The cron expression does not parse, or has another number of fields.
    #[error("invalid cron expression {cron:?}: {reason}")]
    Cron {
        /// The expression.
        cron: String,
        /// Why.
        reason: String,
    },
    /// The time zone is no IANA name.
    #[error("unknown time zone {0:?}: use an IANA name such as UTC or Europe/Paris")]
    TimeZone(String),
}

/// A schedule as the config file (`[schedules.<name>]`) and the API define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first.
    pub cron: String,
    /// The group of the jobs it submits.
    pub group: String,
    /// The function they run.
    pub function: String,
    /// Their args.
    #[serde(default)]
    pub args: Value,
    /// An IANA time zone name; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl ScheduleConfig {
    /// The parsed cron expression in its time zone.
    pub fn timing(&self) -> Result<Timing, ScheduleError> {
        Timing::parse(&self.cron, self.timezone.as_deref())
    }
}

/// A cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: Tz,
}

impl Timing {
    /// Parses `cron` (5 fields, or 6 with seconds first) in `timezone` (an IANA name;
    /// `None` is UTC).
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<Timing, ScheduleError> {
        let invalid = |reason: String| ScheduleError::Cron {
            cron: cron.to_string(),
            reason,
        };
        let fields = cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(invalid(format!(
                "{fields} fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            )));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron_parsed = parser.parse(cron).map_err(|e| invalid(e.to_string()))?;
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
        };
        // An expression that never matches (February 30th) is refused now, not at its
        // first check.
        let timing = Timing {
            cron: cron_parsed,
            zone,
        };
        if timing.next_after(crate::now_ms()).is_none() {
            return Err(invalid("it never matches a time".into()));
        }
        Ok(timing)
    }

    /// The first fire time strictly after `after_ms` (unix ms, whole seconds), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = self.zone.from_utc_datetime(&utc_second(after_ms)?.naive_utc());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The fire times strictly after `after_ms` and at most `until_ms`, earliest first, at
    /// most `limit`.
    pub fn between(&self, after_ms: i64, until_ms: i64, limit: usize) -> Vec<i64> {
        let mut times = Vec::new();
        let mut cursor = after_ms;
        while times.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until_ms => {
                    times.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        times
    }
}

impl Timing {
    /// The last fire time strictly before `before_ms`'s second, if any.
    pub fn previous_before(&self, before_ms: i64) -> Option<i64> {
        let start = self.zone.from_utc_datetime(&utc_second(before_ms)?.naive_utc());
        let previous = self.cron.find_previous_occurrence(&start, false).ok()?;
        Some(previous.timestamp_millis())
    }

    /// The fire times to fire at `now_ms` for a schedule that last fired for `last_ms` (or
    /// was created then): every one within [`CATCH_UP`] of now (at most
    /// [`MAX_FIRINGS_PER_CHECK`], the rest at the next check); when none is, the most recent
    /// older one, once; older ones are skipped.
    pub fn to_fire(&self, last_ms: i64, now_ms: i64) -> Vec<i64> {
        let horizon = now_ms - CATCH_UP.as_millis() as i64;
        let recent = self.between(last_ms.max(horizon - 1), now_ms, MAX_FIRINGS_PER_CHECK);
        if !recent.is_empty() || last_ms >= horizon {
            return recent;
        }
        self.previous_before(horizon)
            .filter(|&time| time > last_ms)
            .into_iter()
            .collect()
    }
}

/// `ms` as a UTC time, floored to its second.
fn utc_second(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ms.div_euclid(1000), 0)
}

/// Checks a schedule's name (it goes into job ids).
pub fn check_name(name: &str) -> Result<(), ScheduleError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ScheduleError::Name(name.to_string()))
    }
}

/// The job id of a schedule's firing: `<name>:<fire time>`, the time in RFC 3339 UTC with
/// whole seconds (`nightly:2030-01-01T00:00:00Z`).
pub fn firing_id(name: &str, fire_ms: i64) -> String {
    let secs = u64::try_from(fire_ms.div_euclid(1000)).unwrap_or(0);
    let time = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    format!("{name}:{time}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_YEAR_2030: i64 = 1_893_456_000_000;

    #[test]
    fn five_and_six_field_expressions_fire_at_their_times() {
        let hourly = Timing::parse("0 * * * *", None).unwrap();
        assert_eq!(hourly.next_after(NEW_YEAR_2030), Some(NEW_YEAR_2030 + 3_600_000));
        let every_second = Timing::parse("* * * * * *", None).unwrap();
        assert_eq!(
            every_second.between(NEW_YEAR_2030 + 400, NEW_YEAR_2030 + 3_000, 10),
            vec![
                NEW_YEAR_2030 + 1_000,
                NEW_YEAR_2030 + 2_000,
                NEW_YEAR_2030 + 3_000
            ]
        );
        assert_eq!(
            every_second
                .between(NEW_YEAR_2030, NEW_YEAR_2030 + 60_000, 5)
                .len(),
            5
        );
    }

    #[test]
    fn a_time_zone_moves_the_fire_time() {
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = Timing::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            paris.next_after(NEW_YEAR_2030),
            Some(NEW_YEAR_2030 + 8 * 3_600_000)
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_why() {
        for (cron, needle) in [
            ("* * * *", "4 fields"),
            ("* * * * * * *", "7 fields"),
            ("61 * * * *", "invalid cron"),
            ("0 0 30 2 *", "never matches"),
            ("@hourly", "1 fields"),
        ] {
            let err = Timing::parse(cron, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{cron}: {err}");
        }
        let err = Timing::parse("* * * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(err, ScheduleError::TimeZone("Mars/Olympus".into()));
        assert!(check_name("has:colon").is_err());
    }

    #[test]
    fn firing_ids_name_the_schedule_and_the_second() {
        assert_eq!(
            firing_id("nightly", NEW_YEAR_2030 + 999),
            "nightly:2030-01-01T00:00:00Z"
        );
        assert!(crate::message::is_valid_job_id(&firing_id(
            &"n".repeat(64),
            NEW_YEAR_2030
        )));
    }

    #[test]
    fn missed_firings_within_the_catch_up_all_fire_older_ones_once() {
        let now = NEW_YEAR_2030 + 500;
        let every_second = Timing::parse("* * * * * *", None).unwrap();
        let last = NEW_YEAR_2030 - 3_000;
        assert_eq!(
            every_second.to_fire(last, now),
            vec![NEW_YEAR_2030 - 2_000, NEW_YEAR_2030 - 1_000, NEW_YEAR_2030]
        );
        assert!(every_second.to_fire(NEW_YEAR_2030, now).is_empty());
        // Down for a day: the last minute's firings catch up (at most 100 a check).
        let caught_up = every_second.to_fire(NEW_YEAR_2030 - 86_400_000, now);
        assert_eq!(caught_up.len(), 60);
        assert_eq!(caught_up.last(), Some(&NEW_YEAR_2030));
        // An hourly schedule down for three hours fires the last missed hour once.
        let hourly = Timing::parse("0 * * * *", None).unwrap();
        let after_outage = hourly.to_fire(NEW_YEAR_2030 - 3 * 3_600_000, now + 1_800_000);
        assert_eq!(after_outage, vec![NEW_YEAR_2030]);
        assert!(hourly.to_fire(NEW_YEAR_2030, now + 1_800_000).is_empty());
    }
}
