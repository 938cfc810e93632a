//! Records that nothing may bring to an end by itself, for the master's run-record
//! corrector: started jobs whose owner is no longer alive, and results the master owes.

use super::record::JobRecord;
use super::{Coordinator, CoordinatorError};
use deadpool_redis::redis::{self, AsyncCommands};
use std::collections::HashMap;

impl Coordinator {
    /// Ids of `group`'s started jobs whose owner's liveness key is gone (it died or was cut
    /// off longer than its heartbeat TTL).
    pub async fn orphaned(&self, group: &str) -> Result<Vec<String>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let ids: Vec<String> = conn.smembers(self.keys.running(group)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.keys.job(group, id), "worker");
        }
        let owners: Vec<Option<String>> = pipe.query_async(&mut *conn).await?;
        let mut pipe = redis::pipe();
        for owner in &owners {
            pipe.exists(self.keys.alive(group, owner.as_deref().unwrap_or("")));
        }
        let alive: Vec<bool> = pipe.query_async(&mut *conn).await?;
        Ok(ids
            .into_iter()
            .zip(alive)
            .filter(|(_, alive)| !alive)
            .map(|(id, _)| id)
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
