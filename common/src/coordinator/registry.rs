//! The fleet's living parts: worker heartbeats and liveness, the registry the monitor reaps,
//! group health (failure counts, broken flags), and the leader lease.

use super::{Coordinator, CoordinatorError};
use deadpool_redis::redis::{self, AsyncCommands, Script};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/lease.lua")));

impl Coordinator {
    /// A group's consecutive infrastructure failures and whether it is broken.
    pub async fn group_health(&self, group: &str) -> Result<(u32, bool), CoordinatorError> {
        let mut conn = self.connection().await?;
        let (failures, broken): (Option<u32>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.group(group))
            .arg("failures")
            .arg("broken")
            .query_async(&mut *conn)
            .await?;
        Ok((failures.unwrap_or(0), broken.as_deref() == Some("1")))
    }

    /// Clears a group's broken flag and failure count.
    pub async fn reset_group(&self, group: &str) -> Result<(), CoordinatorError> {
        let mut conn = self.connection().await?;
        let _: () = conn.del(self.keys.group(group)).await?;
        Ok(())
    }

    /// Writes a worker's record: liveness keys with a time to live, fleet-wide and one per
    /// group it serves (while they live, no other worker takes over its started jobs), and
    /// its info in the registry.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        groups: &[String],
        info: &Value,
        ttl: Duration,
    ) -> Result<(), CoordinatorError> {
        let info = info.to_string();
        let ttl = ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        pipe.set_ex(self.keys.worker(worker_id), &info, ttl).ignore();
        for group in groups {
            pipe.set_ex(self.keys.alive(group, worker_id), 1, ttl).ignore();
        }
        pipe.hset(self.keys.workers(), worker_id, &info).ignore();
        let mut conn = self.connection().await?;
        let _: () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }

    /// Removes a worker's record (a clean stop), so its jobs can be taken over at once.
    pub async fn deregister(&self, worker_id: &str, groups: &[String]) -> Result<(), CoordinatorError> {
        let mut pipe = redis::pipe();
        pipe.del(self.keys.worker(worker_id)).ignore();
        for group in groups {
            pipe.del(self.keys.alive(group, worker_id)).ignore();
        }
        pipe.hdel(self.keys.workers(), worker_id).ignore();
        let mut conn = self.connection().await?;
        let _: () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }

    /// The registry split by liveness: (live workers' info, dead workers' last info).
    async fn registry(&self) -> Result<(Vec<Value>, Vec<(String, Value)>), CoordinatorError> {
        let mut conn = self.connection().await?;
        let entries: Vec<(String, String)> = conn.hgetall(self.keys.workers()).await?;
        if entries.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut pipe = redis::pipe();
        for (id, _) in &entries {
            pipe.get(self.keys.worker(id));
        }
        let current: Vec<Option<String>> = pipe.query_async(&mut *conn).await?;
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for ((id, last), now) in entries.into_iter().zip(current) {
            match now {
                Some(info) => live.push(serde_json::from_str(&info).unwrap_or(Value::Null)),
                None => dead.push((id, serde_json::from_str(&last).unwrap_or(Value::Null))),
            }
        }
        Ok((live, dead))
    }

    /// The info of every live worker (as written by its last heartbeat).
    pub async fn workers(&self) -> Result<Vec<Value>, CoordinatorError> {
        Ok(self.registry().await?.0)
    }

    /// Ids of the workers whose record is alive.
    pub async fn live_workers(&self) -> Result<Vec<String>, CoordinatorError> {
        Ok(self
            .workers()
            .await?
            .iter()
            .filter_map(|w| w["id"].as_str().map(String::from))
            .collect())
    }

    /// Removes workers whose heartbeat stopped from the registry, counts a crash for each
    /// of their groups (`max_failures` per group from `max_failures_of`), and returns them.
    pub async fn reap_dead_workers(
        &self,
        max_failures_of: impl Fn(&str) -> u32,
    ) -> Result<Vec<(String, Value)>, CoordinatorError> {
        let (_, dead) = self.registry().await?;
        let mut conn = self.connection().await?;
        let mut reaped = Vec::new();
        for (id, info) in dead {
            let removed: i64 = conn.hdel(self.keys.workers(), &id).await?;
            if removed == 0 {
                continue; // another master reaped it first
            }
            for group in info["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let key = self.keys.group(group);
                let failures: u32 = conn.hincr(&key, "failures", 1).await?;
                if failures >= max_failures_of(group) {
                    let _: () = conn.hset(&key, "broken", 1).await?;
                }
            }
            reaped.push((id, info));
        }
        Ok(reaped)
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`; returns whether it holds it.
    pub async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, CoordinatorError> {
        let mut conn = self.connection().await?;
        let held: i64 = LEASE
            .key(self.keys.lease(name))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await?;
        Ok(held == 1)
    }
}
