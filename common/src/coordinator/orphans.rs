//! Records that nothing may bring to an end by itself, for the master's run-record
//! corrector: started jobs whose owner is no longer alive or no longer runs them, and
//! results the master owes.

use super::record::JobRecord;
use super::{Coordinator, CoordinatorError};
use deadpool_redis::redis::{self, AsyncCommands};
use std::collections::HashMap;

/// Whether a worker's heartbeat record (its JSON info) lists `id` among its running jobs.
/// A record that cannot be read says nothing: it counts as listing every job.
fn lists_running(info: Option<&str>, id: &str) -> bool {
    let Some(info) = info.and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()) else {
        return true;
    };
    match info["running"].as_array() {
        Some(running) => running.iter().any(|job| job.as_str() == Some(id)),
        None => true,
    }
}

/// A started job that nothing brings to an end by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// Its owner died: the owner's liveness key for the group is gone.
    OwnerDead(String),
    /// Its owner lives but does not run it (the owner's heartbeat does not list it): the
    /// attempt's end was recorded on a primary that a failover then lost.
    Unlisted {
        /// The job.
        id: String,
        /// The owner the record names.
        worker: String,
        /// The attempt the record names.
        attempt: u32,
    },
}

impl Orphan {
    /// The job's id.
    pub fn id(&self) -> &str {
        match self {
            Orphan::OwnerDead(id) | Orphan::Unlisted { id, .. } => id,
        }
    }
}

impl Coordinator {
    /// `group`'s started jobs whose owner's liveness key is gone (it died or was cut off
    /// longer than its heartbeat TTL), or whose live owner's heartbeat does not list them.
    pub async fn orphaned(&self, group: &str) -> Result<Vec<Orphan>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let ids: Vec<String> = conn.smembers(self.keys.running(group)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hmget(self.keys.job(group, id), &["worker", "attempts"]);
        }
        let owners: Vec<(Option<String>, Option<u32>)> = pipe.query_async(&mut *conn).await?;
        let mut pipe = redis::pipe();
        for (owner, _) in &owners {
            let owner = owner.as_deref().unwrap_or("");
            pipe.exists(self.keys.alive(group, owner))
                .get(self.keys.worker(owner));
        }
        let liveness: Vec<(bool, Option<String>)> = pipe.query_async(&mut *conn).await?;
        Ok(ids
            .into_iter()
            .zip(owners)
            .zip(liveness)
            .filter_map(|((id, (owner, attempt)), (alive, info))| match (owner, attempt) {
                _ if !alive => Some(Orphan::OwnerDead(id)),
                (Some(worker), Some(attempt)) if !lists_running(info.as_deref(), &id) => {
                    Some(Orphan::Unlisted { id, worker, attempt })
                }
                _ => None,
            })
            .collect())
    }

    /// Records of `group` whose result the master has owed since before `before_ms` (at
    /// most `limit`): ended by a cancel or a queue timeout, and never confirmed published,
    /// neither by the master nor by a worker meeting the job's message (there may be none).
    /// Entries whose record is gone or no longer owed are dropped from the ledger.
    pub async fn owed_before(
        &self,
        group: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<JobRecord>, CoordinatorError> {
        let owed = self.keys.owed(group);
        let mut conn = self.connection().await?;
        let ids: Vec<String> = conn
            .zrangebyscore_limit(&owed, "-inf", before_ms, 0, limit as isize)
            .await?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: HashMap<String, String> = conn.hgetall(self.keys.job(group, &id)).await?;
            if fields.get("announce").map(String::as_str) == Some("1") {
                records.push(JobRecord::from_fields(fields)?);
            } else {
                let _: () = conn.zrem(&owed, &id).await?;
            }
        }
        Ok(records)
    }

    /// Job `id`'s record in `group`, or `None`.
    pub async fn job_in(&self, group: &str, id: &str) -> Result<Option<JobRecord>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let fields: HashMap<String, String> = conn.hgetall(self.keys.job(group, id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        JobRecord::from_fields(fields).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::lists_running;

    #[test]
    fn a_job_is_unlisted_only_by_a_readable_record_without_it() {
        let info = r#"{"id":"w1","running":["a","b"]}"#;
        assert!(lists_running(Some(info), "a"));
        assert!(!lists_running(Some(info), "c"));
        assert!(!lists_running(Some(r#"{"running":[]}"#), "a"));
        assert!(lists_running(None, "a"), "no record: nothing is known");
        assert!(lists_running(Some("not json"), "a"));
        assert!(
            lists_running(Some(r#"{"id":"w1"}"#), "a"),
            "an older worker without the list"
        );
    }
}
