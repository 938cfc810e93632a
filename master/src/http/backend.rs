//! Calls from request handlers to Redis and the broker, each under a deadline: a slow,
//! paused or blocked backing service answers 503 `unavailable` in bounded time, never a
//! request that hangs.

use super::error::ApiError;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;
use std::future::Future;
use std::time::Duration;

/// How long one Redis call of a request may take (the redis crate times out each command
/// after 500 ms; this bounds what it does not: pool waits, calls of several round trips).
pub const REDIS_DEADLINE: Duration = Duration::from_secs(5);
/// How long one broker call of a request may take: opening a channel, a passive declare, a
/// publish and its confirm.
pub const BROKER_DEADLINE: Duration = Duration::from_secs(5);

/// Runs a Redis call under [`REDIS_DEADLINE`].
pub async fn redis<T>(call: impl Future<Output = Result<T, CoordinatorError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(REDIS_DEADLINE, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::deadline("coordinator (Redis)", REDIS_DEADLINE)),
    }
}

/// Runs a broker call under [`BROKER_DEADLINE`].
pub async fn broker<T>(call: impl Future<Output = Result<T, ClientError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(BROKER_DEADLINE, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::deadline("broker (RabbitMQ)", BROKER_DEADLINE)),
    }
}
