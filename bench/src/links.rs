//! `--link-delay MS`: the broker and Redis reached through loopback TCP proxies
//! ([`jobfleet_proxy::Proxy`]) that hold every chunk for MS milliseconds each way, as a real
//! network between machines would (Sidekiq's published benchmark adds 1 ms the same way).
//! Every client of the run — the ceiling's, the fleet's processes, the bench's own — goes
//! through them, so the ceiling and jobfleet pay the same links.

use anyhow::{bail, Context, Result};
use jobfleet_proxy::Proxy;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The two proxies of a run, and the URLs behind them.
pub struct Links {
    /// In front of RabbitMQ.
    pub broker: Proxy,
    /// In front of Redis.
    pub redis: Proxy,
    /// The broker's own URL (for finding its process: CPU per job).
    pub broker_url: String,
    /// Redis's own URL.
    pub redis_url: String,
}

impl Links {
    /// Proxies in front of `broker_url` and `redis_url` (single hosts) adding `delay` each way.
    pub async fn start(broker_url: &str, redis_url: &str, delay: Duration) -> Result<Links> {
        let broker = Proxy::start(upstream(broker_url, 5672)?).await;
        let redis = Proxy::start(upstream(redis_url, 6379)?).await;
        broker.set_delay(delay);
        redis.set_delay(delay);
        Ok(Links {
            broker,
            redis,
            broker_url: broker_url.to_string(),
            redis_url: redis_url.to_string(),
        })
    }

    /// The broker URL that goes through the proxy.
    pub fn proxied_broker_url(&self) -> String {
        through(&self.broker_url, self.broker.addr())
    }

    /// The Redis URL that goes through the proxy.
    pub fn proxied_redis_url(&self) -> String {
        through(&self.redis_url, self.redis.addr())
    }
}

/// `scheme://[user@]host[:port][/rest]` → (authority start, authority end) in `url`.
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (host_start, end)
}

/// The address `url` (one host, not a list) connects to.
fn upstream(url: &str, default_port: u16) -> Result<SocketAddr> {
    if url.contains(',') {
        bail!("--link-delay takes a single broker and Redis, not a list: {url}");
    }
    let (start, end) = authority(url);
    let host_port = &url[start..end];
    let with_port = match host_port.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host_port.to_string(),
        _ => format!("{host_port}:{default_port}"),
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("no address for {with_port}"))
}

/// `url` with its host and port replaced by `proxy`.
fn through(url: &str, proxy: SocketAddr) -> String {
    let (start, end) = authority(url);
    format!("{}{proxy}{}", &url[..start], &url[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_credentials_and_path_and_take_the_proxy_address() {
        let proxy: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(
            through("amqp://guest:guest@127.0.0.1:5672/%2f", proxy),
            "amqp://guest:guest@127.0.0.1:40001/%2f"
        );
        assert_eq!(
            through("redis://127.0.0.1:6379", proxy),
            "redis://127.0.0.1:40001"
        );
        assert_eq!(through("redis://localhost/3", proxy), "redis://127.0.0.1:40001/3");
        assert_eq!(
            upstream("redis://127.0.0.1", 6379).unwrap(),
            "127.0.0.1:6379".parse().unwrap()
        );
        assert!(upstream("amqp://a:1,amqp://b:2", 5672).is_err());
    }
}
