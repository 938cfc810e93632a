//! The audit trail (SPEC §8): who cancelled or administered what, and when, as a bounded
//! list of entries, newest first. The entries' shape belongs to the master; here they are
//! opaque text.

use super::{Coordinator, CoordinatorError};
use deadpool_redis::redis::{self, AsyncCommands};

impl Coordinator {
    /// Appends `entry` to the audit trail, keeping the newest `keep` entries.
    pub async fn append_audit(&self, entry: &str, keep: usize) -> Result<(), CoordinatorError> {
        let key = self.keys.audit();
        let last = isize::try_from(keep).unwrap_or(isize::MAX).saturating_sub(1);
        let mut conn = self.connection().await?;
        let _: () = redis::pipe()
            .atomic()
            .lpush(&key, entry)
            .ignore()
            .ltrim(&key, 0, last)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<String>, CoordinatorError> {
        let last = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        Ok(conn.lrange(self.keys.audit(), 0, last).await?)
    }
}
