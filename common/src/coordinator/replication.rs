//! `redis_min_replicas`: a status transition counts as done only once that many replicas
//! acknowledge it (`WAIT` in the same round trip as its script), so a failover to one of
//! them cannot lose it. Fewer acknowledgements within the timeout is a transient error:
//! callers retry it as they retry a reply that timed out, and every transition script
//! answers a retried call as it answered the first (claim tokens, attempt fences).

use super::{Coordinator, CoordinatorError};
use crate::config::Config;
use deadpool_redis::redis::{self, FromRedisValue, Pipeline, ScriptInvocation};
use std::time::Duration;

/// How many replicas must acknowledge each transition, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    /// Replicas that must have the write (`WAIT`'s first argument), at least 1.
    pub replicas: u32,
    /// How long to wait for them (`WAIT`'s timeout), at least 1 ms.
    pub timeout: Duration,
}

impl ReplicaWait {
    /// The wait `config` asks for (`redis_min_replicas`, `redis_wait_timeout`), if any.
    pub fn of(config: &Config) -> Option<ReplicaWait> {
        (config.redis_min_replicas > 0).then(|| ReplicaWait {
            replicas: config.redis_min_replicas,
            timeout: config.redis_wait_timeout.max(Duration::from_millis(1)),
        })
    }

    /// Appends `WAIT` to `pipe`.
    fn append_to(&self, pipe: &mut Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout.as_millis().max(1) as u64);
    }

    /// Checks `WAIT`'s answer.
    fn check(&self, acknowledged: u32) -> Result<(), CoordinatorError> {
        if acknowledged >= self.replicas {
            return Ok(());
        }
        Err(CoordinatorError::Unreplicated {
            acknowledged,
            wanted: self.replicas,
            timeout: self.timeout,
        })
    }
}

impl Coordinator {
    /// The same coordinator, waiting for `wait`'s replicas after each transition (none:
    /// asynchronous replication, the default).
    pub fn with_replica_wait(mut self, wait: Option<ReplicaWait>) -> Coordinator {
        self.replica_wait = wait;
        self
    }

    /// The replica wait of this coordinator.
    pub fn replica_wait(&self) -> Option<ReplicaWait> {
        self.replica_wait
    }

    /// Runs a transition script; with a replica wait, `WAIT` follows it in the same round
    /// trip on the same connection.
    pub(super) async fn transition<T: FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, CoordinatorError> {
        let mut conn = self.connection().await?;
        let Some(wait) = self.replica_wait else {
            return Ok(call.invoke_async(&mut *conn).await?);
        };
        let mut pipe = redis::pipe();
        pipe.invoke_script(call);
        wait.append_to(&mut pipe);
        let (reply, acknowledged): (T, u32) = match pipe.query_async(&mut *conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // The script cache is empty (a restarted or new primary): load it, then again.
                call.load_async(&mut *conn).await?;
                pipe.query_async(&mut *conn).await?
            }
            other => other?,
        };
        wait.check(acknowledged)?;
        Ok(reply)
    }

    /// Sends `pipe` (scripts that answer integers) on the shared connection, reloading
    /// `reload`'s script once if Redis lost its script cache; with a replica wait, `WAIT`
    /// follows in the same round trip. The scripts' answers, in order.
    pub(super) async fn transitions(
        &self,
        pipe: &mut Pipeline,
        reload: &ScriptInvocation<'_>,
    ) -> Result<Vec<i64>, CoordinatorError> {
        let replies = self.pipelined(pipe, reload).await?;
        let answers: Result<Vec<i64>, redis::ParsingError> =
            replies.into_iter().map(i64::from_redis_value).collect();
        Ok(answers.map_err(redis::RedisError::from)?)
    }

    /// [`Coordinator::transitions`] for scripts that answer anything: their replies, in order.
    pub(super) async fn pipelined(
        &self,
        pipe: &mut Pipeline,
        reload: &ScriptInvocation<'_>,
    ) -> Result<Vec<redis::Value>, CoordinatorError> {
        if let Some(wait) = self.replica_wait {
            wait.append_to(pipe);
        }
        let mut conn = self.connection().await?;
        let mut replies: Vec<redis::Value> = match pipe.query_async(&mut *conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                reload.load_async(&mut *conn).await?;
                pipe.query_async(&mut *conn).await?
            }
            other => other?,
        };
        if let Some(wait) = self.replica_wait {
            let acknowledged = match replies.pop() {
                Some(reply) => i64::from_redis_value(reply).map_err(redis::RedisError::from)?,
                None => 0,
            };
            wait.check(u32::try_from(acknowledged).unwrap_or(0))?;
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wait_unless_replicas_are_asked_for() {
        let mut config = Config::default();
        assert_eq!(ReplicaWait::of(&config), None);
        config.redis_min_replicas = 2;
        config.redis_wait_timeout = Duration::ZERO;
        let wait = ReplicaWait::of(&config).unwrap();
        assert_eq!(wait.replicas, 2);
        assert_eq!(
            wait.timeout,
            Duration::from_millis(1),
            "WAIT 2 0 would block forever"
        );
    }

    #[test]
    fn fewer_acknowledgements_are_a_transient_error() {
        let wait = ReplicaWait {
            replicas: 1,
            timeout: Duration::from_millis(100),
        };
        assert!(wait.check(1).is_ok());
        assert!(wait.check(2).is_ok());
        let err = wait.check(0).unwrap_err();
        assert!(err.is_transient() && err.is_connection_error(), "{err}");
        assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    }
}
