//! The Redis connection pool of a coordinator: for a `rediss://` URL, over rustls with the
//! `[tls]` settings (a private CA replaces the system roots; a client certificate is shown);
//! for a `redis+sentinel://` URL, to the primary the sentinels name (see [`super::sentinel`]).

use super::connection::SharedConnection;
use super::sentinel::{SentinelManager, SentinelUrl};
use super::CoordinatorError;
use crate::tls::{self, Endpoint};
use deadpool::managed;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, IntoConnectionInfo};
use deadpool_redis::{ConfigError, CreatePoolError, Manager, PoolConfig, PoolError, Runtime, Timeouts};
use std::sync::Weak;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where a coordinator's connections come from: one Redis, or the primary of a Sentinel set.
#[derive(Clone)]
pub(super) enum RedisPool {
    /// A `redis://` or `rediss://` URL.
    Direct(managed::Pool<Manager>),
    /// A `redis+sentinel://` or `rediss+sentinel://` URL.
    Sentinel(managed::Pool<SentinelManager>),
}

impl RedisPool {
    /// A pool of at most 16 connections to `endpoint`, with explicit wait/create/recycle
    /// timeouts. Nothing connects here.
    pub(super) fn new(endpoint: &Endpoint) -> Result<RedisPool, CoordinatorError> {
        let unusable = |e: redis::RedisError| CreatePoolError::Config(ConfigError::Redis(e));
        if SentinelUrl::is_sentinel(&endpoint.url) {
            let url = SentinelUrl::parse(&endpoint.url)?;
            let certificates = match url.tls {
                true => endpoint.tls.redis_certificates().map_err(Box::new)?,
                false => None,
            };
            let manager = SentinelManager::new(&url, certificates).map_err(unusable)?;
            return Ok(RedisPool::Sentinel(built(manager)?));
        }
        let manager = Manager::new(connection_info(endpoint)?).map_err(unusable)?;
        Ok(RedisPool::Direct(built(manager)?))
    }

    /// A new connection, taken out of the pool for good (the coordinator shares it).
    pub(super) async fn connection(&self) -> Result<MultiplexedConnection, PoolError> {
        Ok(match self {
            RedisPool::Direct(pool) => managed::Object::take(pool.get().await?),
            RedisPool::Sentinel(pool) => managed::Object::take(pool.get().await?),
        })
    }

    /// For a Sentinel set, starts watching for a moved primary: `shared`'s connection is
    /// dropped on each move, until `stop`.
    pub(super) fn watch(&self, shared: Weak<SharedConnection>, stop: CancellationToken) {
        if let RedisPool::Sentinel(pool) = self {
            pool.manager().watch(shared, stop);
        }
    }
}

fn built<M: managed::Manager>(manager: M) -> Result<managed::Pool<M>, CreatePoolError> {
    let timeout = Some(Duration::from_secs(5));
    managed::Pool::builder(manager)
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
        .map_err(CreatePoolError::Build)
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
