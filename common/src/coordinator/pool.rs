//! The Redis connection pool of a coordinator: for a `rediss://` URL, over rustls with the
//! `[tls]` settings (a private CA replaces the system roots; a client certificate is shown).

use super::CoordinatorError;
use crate::tls::{self, Endpoint};
use deadpool_redis::redis::{self, IntoConnectionInfo};
use deadpool_redis::{ConfigError, CreatePoolError, Manager, Pool, PoolConfig, Runtime, Timeouts};
use std::time::Duration;

/// A pool of at most 16 connections to `endpoint`, with explicit wait/create/recycle
/// timeouts. Nothing connects here.
pub(super) fn redis_pool(endpoint: &Endpoint) -> Result<Pool, CoordinatorError> {
    let unusable = |e: redis::RedisError| CreatePoolError::Config(ConfigError::Redis(e));
    let manager = Manager::new(connection_info(endpoint)?).map_err(unusable)?;
    let timeout = Some(Duration::from_secs(5));
    Pool::builder(manager)
        .config(PoolConfig {
            max_size: 16,
            timeouts: Timeouts {
                wait: timeout,
                create: timeout,
                recycle: timeout,
            },
            ..PoolConfig::default()
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| CreatePoolError::Build(e).into())
}

/// Where and how to connect: the URL's address, with the `[tls]` certificates for `rediss://`.
fn connection_info(endpoint: &Endpoint) -> Result<redis::ConnectionInfo, CoordinatorError> {
    let unusable = |e: redis::RedisError| CreatePoolError::Config(ConfigError::Redis(e));
    if !is_tls_url(&endpoint.url) {
        return Ok(endpoint.url.as_str().into_connection_info().map_err(unusable)?);
    }
    // The redis crate builds its rustls configuration with the process's default provider.
    tls::install_default_provider();
    match endpoint.tls.redis_certificates().map_err(Box::new)? {
        None => Ok(endpoint.url.as_str().into_connection_info().map_err(unusable)?),
        Some(certificates) => Ok(redis::Client::build_with_tls(endpoint.url.as_str(), certificates)
            .map_err(unusable)?
            .get_connection_info()
            .clone()),
    }
}

fn is_tls_url(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}
