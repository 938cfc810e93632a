//! A running job's activity (SPEC §10): its log lines and progress reports, kept in a
//! bounded Redis stream per job that expires with the record, and its latest progress in
//! the record itself. The stream's entry ids order the events and let a reader resume.

use super::{Coordinator, CoordinatorError, JobRecord};
use deadpool_redis::redis::{self, Script};
use std::collections::HashMap;
use std::sync::LazyLock;

static ACTIVITY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/activity.lua")));

/// A stream entry as XRANGE answers it: its id and its fields.
type StreamEntry = (String, HashMap<String, String>);

/// Most events kept per job; older ones are dropped as new ones arrive.
pub const MAX_EVENTS_PER_JOB: usize = 1_000;

/// What one event says.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityKind {
    /// A line the job logged.
    Log {
        /// The line, without its line break.
        line: String,
    },
    /// How far the job is.
    Progress {
        /// 0 to 100.
        percent: f64,
        /// What it is doing, if it said.
        message: Option<String>,
    },
}

/// One event of a running attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEntry {
    /// When it happened, unix ms.
    pub at_ms: i64,
    /// The attempt that reported it.
    pub attempt: u32,
    /// What it says.
    pub kind: ActivityKind,
}

/// An event as stored: its stream id (ordered, usable to resume after it) and content.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredActivity {
    /// The stream entry id, e.g. `1796135991427-0`.
    pub id: String,
    /// The event.
    pub entry: ActivityEntry,
}

/// A job's record and its events after a point, read together.
#[derive(Debug, Clone)]
pub struct ActivityPage {
    /// The record, `None` once it is gone.
    pub record: Option<JobRecord>,
    /// Events in order.
    pub events: Vec<StoredActivity>,
}

impl Coordinator {
    /// Appends the events of `attempt` of job `id` of `group`, while that attempt still owns
    /// the job; returns how many were stored (0 when the job ended or moved on).
    pub async fn append_activity(
        &self,
        group: &str,
        id: &str,
        attempt: u32,
        entries: &[ActivityEntry],
    ) -> Result<usize, CoordinatorError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut call = ACTIVITY.key(self.keys.job(group, id));
        call.key(self.keys.events(group, id))
            .arg(self.retention_secs(group))
            .arg(MAX_EVENTS_PER_JOB)
            .arg(attempt);
        for entry in entries {
            let (kind, text, percent) = match &entry.kind {
                ActivityKind::Log { line } => ("log", line.as_str(), String::new()),
                ActivityKind::Progress { percent, message } => {
                    ("progress", message.as_deref().unwrap_or(""), percent.to_string())
                }
            };
            call.arg(kind).arg(entry.at_ms).arg(text).arg(percent);
        }
        let mut conn = self.connection().await?;
        let appended: usize = call.invoke_async(&mut *conn).await?;
        Ok(appended)
    }

    /// Job `id`'s record and up to `count` of its events after the event `after` (from the
    /// first when `None`), in one round trip; `None` when no group holds the job.
    pub async fn activity(
        &self,
        id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Option<ActivityPage>, CoordinatorError> {
        let Some(group) = self.group_of(id).await? else {
            return Ok(None);
        };
        self.activity_of(&group, id, after, count).await.map(Some)
    }

    /// [`Coordinator::activity`] for a job whose group is known.
    pub async fn activity_of(
        &self,
        group: &str,
        id: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<ActivityPage, CoordinatorError> {
        // `(id` is exclusive: the events after the one the reader has.
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let mut conn = self.connection().await?;
        let (fields, raw): (HashMap<String, String>, Vec<StreamEntry>) = redis::pipe()
            .hgetall(self.keys.job(group, id))
            .cmd("XRANGE")
            .arg(self.keys.events(group, id))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut *conn)
            .await?;
        let record = if fields.is_empty() {
            None
        } else {
            Some(JobRecord::from_fields(fields)?)
        };
        let events = raw
            .into_iter()
            .filter_map(|(id, fields)| {
                Some(StoredActivity {
                    entry: entry_of(&fields)?,
                    id,
                })
            })
            .collect();
        Ok(ActivityPage { record, events })
    }
}

/// An event from its stream fields; `None` for an entry of an unknown kind.
fn entry_of(fields: &HashMap<String, String>) -> Option<ActivityEntry> {
    let number = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok());
    let kind = match fields.get("k").map(String::as_str)? {
        "log" => ActivityKind::Log {
            line: fields.get("line").cloned().unwrap_or_default(),
        },
        "progress" => ActivityKind::Progress {
            percent: number("p").unwrap_or(0.0),
            message: fields.get("m").filter(|m| !m.is_empty()).cloned(),
        },
        _ => return None,
    };
    Some(ActivityEntry {
        at_ms: number("at").unwrap_or(0.0) as i64,
        attempt: number("n").unwrap_or(0.0) as u32,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stream_fields_read_back_as_events() {
        let log = entry_of(&fields(&[("k", "log"), ("at", "5"), ("n", "2"), ("line", "hi")])).unwrap();
        assert_eq!(
            log,
            ActivityEntry {
                at_ms: 5,
                attempt: 2,
                kind: ActivityKind::Log { line: "hi".into() }
            }
        );
        let progress = entry_of(&fields(&[
            ("k", "progress"),
            ("at", "6"),
            ("n", "1"),
            ("p", "42.5"),
            ("m", ""),
        ]));
        assert_eq!(
            progress.unwrap().kind,
            ActivityKind::Progress {
                percent: 42.5,
                message: None
            }
        );
        assert!(entry_of(&fields(&[("k", "other")])).is_none());
    }
}
