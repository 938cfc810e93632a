//! The one multiplexed Redis connection a coordinator and its clones share, dropped and
//! taken anew from the pool when it breaks, its server is demoted, or the sentinels name
//! another primary (a failover).

use super::{Coordinator, CoordinatorError};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, Value as RedisValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// The connection every call of a coordinator (and its clones) shares, with a generation
/// so that only the first failure of a broken one discards it.
#[derive(Default)]
pub(super) struct SharedConnection {
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// The generation of the next connection (never reused, so that a failure seen on a
    /// discarded connection cannot discard its successor).
    generations: AtomicU64,
    /// Starts the pool's watch (a Sentinel set's) with the first connection.
    watching: OnceLock<()>,
    /// Stops that watch when the last coordinator clone is gone.
    stop: CancellationToken,
}

impl SharedConnection {
    /// Drops the current connection, whatever its generation, so that the next call takes
    /// a new one. Returns whether there was one.
    pub(super) fn discard(&self) -> bool {
        self.current.lock().expect("redis connection").take().is_some()
    }
}

impl Drop for SharedConnection {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A handle on the shared connection that discards it when it turns out broken.
pub(super) struct Tracked {
    conn: MultiplexedConnection,
    generation: u64,
    shared: Arc<SharedConnection>,
}

impl Tracked {
    fn check<T>(&self, reply: &redis::RedisResult<T>) {
        if let Err(e) = reply {
            // A read-only or demoted server (a failover) also gets a fresh connection, which
            // goes to wherever the URL points now.
            let failed_over = matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
                )
            );
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_unrecoverable_error()
                || failed_over
            {
                let mut current = self.shared.current.lock().expect("redis connection");
                if current.as_ref().is_some_and(|(g, _)| *g == self.generation) {
                    *current = None;
                }
            }
        }
    }
}

impl ConnectionLike for Tracked {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, RedisValue> {
        Box::pin(async move {
            let reply = self.conn.req_packed_command(cmd).await;
            self.check(&reply);
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<RedisValue>> {
        Box::pin(async move {
            let reply = self.conn.req_packed_commands(cmd, offset, count).await;
            self.check(&reply);
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// What `Coordinator::connection` returns: `&mut *conn` is the tracked connection.
pub(super) struct Conn(Tracked);

impl std::ops::Deref for Conn {
    type Target = Tracked;
    fn deref(&self) -> &Tracked {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Tracked {
        &mut self.0
    }
}

impl Coordinator {
    /// The shared multiplexed connection, taken from the pool when there is none yet or
    /// the last one broke. Concurrent calls pipeline on it; a pool checkout per call would
    /// cost a recycle round trip (UNWATCH + PING) each time.
    pub(super) async fn connection(&self) -> Result<Conn, CoordinatorError> {
        if let Some((generation, conn)) = self.shared.current.lock().expect("redis connection").clone() {
            return Ok(Conn(Tracked {
                conn,
                generation,
                shared: self.shared.clone(),
            }));
        }
        self.shared.watching.get_or_init(|| {
            self.pool
                .watch(Arc::downgrade(&self.shared), self.shared.stop.clone())
        });
        let conn = self.pool.connection().await?;
        let mut current = self.shared.current.lock().expect("redis connection");
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        *current = Some((generation, conn.clone()));
        Ok(Conn(Tracked {
            conn,
            generation,
            shared: self.shared.clone(),
        }))
    }
}
