//! Shared by every jobfleet part: the wire types and their codec, the AMQP topology,
//! the Redis coordinator, the fleet configuration, the producer/subscriber client, the
//! control messages (cancel broadcasts) and what the binaries' `main`s share.

pub mod auth;
pub mod binary;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod limits;
pub mod message;
pub mod publish;
pub mod schedule;
pub mod schema;
pub mod telemetry;
pub mod tls;
pub mod topology;
pub mod trace;

pub use deadpool_redis::redis;
pub use lapin;

/// Milliseconds since the Unix epoch, the time unit of every wire and Redis timestamp.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
