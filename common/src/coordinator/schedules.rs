//! The schedules created through the API (`NS:schedules`, name → definition JSON) and the
//! fire time each schedule last fired for (`NS:schedules:fired`, name → unix ms), which the
//! leader advances as it fires (SPEC §9).

use super::{Coordinator, CoordinatorError};
use crate::schedule::ScheduleConfig;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Sets a schedule's last fire time only forward, so a late writer never fires a time
/// again. KEYS[1] the fired hash; ARGV: 1 name, 2 fire time (ms).
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1') \
         if tonumber(ARGV[2]) > last then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end \
         return 0",
    )
});

/// A schedule created through the API, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedule {
    /// Its definition.
    pub schedule: ScheduleConfig,
    /// When it was created (unix ms): it fires for times after this.
    pub created_at: i64,
}

impl Coordinator {
    /// Stores a new schedule; `false` when one of that name exists already.
    pub async fn create_schedule(
        &self,
        name: &str,
        stored: &StoredSchedule,
    ) -> Result<bool, CoordinatorError> {
        let text = serde_json::to_string(stored).map_err(|e| CoordinatorError::Corrupt(e.to_string()))?;
        let mut conn = self.connection().await?;
        Ok(conn.hset_nx(self.keys.schedules(), name, text).await?)
    }

    /// The schedules created through the API, by name; an entry that does not parse (written
    /// by hand, or by a later version) is left out with a warning.
    pub async fn stored_schedules(&self) -> Result<Vec<(String, StoredSchedule)>, CoordinatorError> {
        let mut conn = self.connection().await?;
        let all: HashMap<String, String> = conn.hgetall(self.keys.schedules()).await?;
        let mut schedules: Vec<(String, StoredSchedule)> = all
            .into_iter()
            .filter_map(|(name, text)| match serde_json::from_str(&text) {
                Ok(stored) => Some((name, stored)),
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "unreadable schedule left out");
                    None
                }
            })
            .collect();
        schedules.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(schedules)
    }

    /// Deletes a schedule created through the API and its fire record; `false` when there
    /// was none.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let (removed, _): (u64, u64) = redis::pipe()
            .atomic()
            .hdel(self.keys.schedules(), name)
            .hdel(self.keys.schedules_fired(), name)
            .query_async(&mut *conn)
            .await?;
        Ok(removed == 1)
    }

    /// The fire time each schedule last fired for.
    pub async fn fired(&self) -> Result<HashMap<String, i64>, CoordinatorError> {
        let mut conn = self.connection().await?;
        Ok(conn.hgetall(self.keys.schedules_fired()).await?)
    }

    /// Records that schedule `name` fired for `fire_ms` (only ever forward).
    pub async fn advance_fired(&self, name: &str, fire_ms: i64) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: i64 = ADVANCE
            .key(self.keys.schedules_fired())
            .arg(name)
            .arg(fire_ms)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }
}
