//! Redis Sentinel (SPEC §12): the `redis+sentinel://host:port,host:port/<master>/<db>` URL,
//! the pool manager whose connections go to the primary the sentinels name now, and the
//! watch on `+switch-master` that drops the shared connection when the primary moves.
//!
//! Master discovery is the redis crate's (`SentinelClient`: it asks the sentinels in turn
//! and checks with `ROLE` that the node it names is a primary). deadpool-redis's own
//! sentinel manager builds its client without certificates, so a private CA or client
//! certificate of `[tls]` could not be used; this one builds it with `SentinelClientBuilder`.

use super::connection::SharedConnection;
use crate::client::backoff;
use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use deadpool_redis::redis::{self, ConnectionAddr, RedisError, TlsCertificates, TlsMode};
use futures::StreamExt;
use percent_encoding::percent_decode_str;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The form the error messages show.
const FORM: &str = "expected redis+sentinel://[user:password@]host:port,host:port/<master name>/<db>";
/// The sentinels' port when an address has none.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Why a Redis Sentinel URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SentinelUrlError {
    /// The scheme is neither `redis+sentinel` nor `rediss+sentinel`.
    #[error("not a Redis Sentinel URL; {FORM}")]
    Scheme,
    /// No sentinel address at all.
    #[error("no sentinel address; {FORM}")]
    NoSentinels,
    /// A sentinel address is not `host` or `host:port`.
    #[error("sentinel address {0:?} is not host:port; {FORM}")]
    Address(String),
    /// The path names no master.
    #[error("no master name; {FORM}")]
    NoMaster,
    /// The database is not a number from 0.
    #[error("database {0:?} is not a number from 0; {FORM}")]
    Database(String),
    /// Something follows the database.
    #[error("unexpected {0:?} after the database; {FORM}")]
    Trailing(String),
    /// A query string (no parameter is supported; its text is not shown: it may hold a
    /// secret).
    #[error("query parameters are not supported in a Redis Sentinel URL")]
    Query,
    /// The user or password is not percent-encoded UTF-8.
    #[error("the user or password of a Redis Sentinel URL is not percent-encoded UTF-8")]
    Encoding,
}

/// A parsed `redis+sentinel://` (or, over TLS, `rediss+sentinel://`) URL. The user and
/// password are the Redis nodes'; the sentinels are asked without them.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// TLS to the sentinels and to the nodes (`rediss+sentinel://`).
    pub tls: bool,
    /// The sentinels, asked in this order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// The database number.
    pub db: i64,
    /// The Redis nodes' ACL user.
    pub username: Option<String>,
    /// The Redis nodes' password.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl SentinelUrl {
    /// Whether `url` has a Redis Sentinel scheme (and should parse as one).
    pub fn is_sentinel(url: &str) -> bool {
        sentinel_scheme(url).is_some()
    }

    /// Parses `redis+sentinel://[user:password@]host[:port],host[:port]/<master>[/<db>]`
    /// (`rediss+sentinel://` for TLS). A sentinel without a port is on 26379; the database
    /// defaults to 0.
    pub fn parse(url: &str) -> Result<SentinelUrl, SentinelUrlError> {
        let (tls, rest) = sentinel_scheme(url).ok_or(SentinelUrlError::Scheme)?;
        let rest = match rest.split_once('?') {
            Some(_) => return Err(SentinelUrlError::Query),
            None => rest,
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = credentials(userinfo)?;
        let sentinels = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(address)
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(SentinelUrlError::NoSentinels);
        }
        let mut segments = path.splitn(3, '/');
        let master = segments.next().unwrap_or_default();
        if master.is_empty() {
            return Err(SentinelUrlError::NoMaster);
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| SentinelUrlError::Database(db.to_string()))?,
        };
        if let Some(trailing) = segments.next().filter(|t| !t.is_empty()) {
            return Err(SentinelUrlError::Trailing(trailing.to_string()));
        }
        Ok(SentinelUrl {
            tls,
            sentinels,
            master: master.to_string(),
            db,
            username,
            password,
        })
    }

    /// A client that asks these sentinels for the current primary, connecting to it with
    /// the URL's database and credentials, and over TLS with `certificates` (the `[tls]`
    /// settings) for `rediss+sentinel://`.
    fn client(&self, certificates: Option<TlsCertificates>) -> Result<SentinelClient, RedisError> {
        let sentinels = self.sentinels.iter().map(|(host, port)| match self.tls {
            false => ConnectionAddr::Tcp(host.clone(), *port),
            true => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
        });
        let mut builder = SentinelClientBuilder::new(sentinels, &self.master, SentinelServerType::Master)?
            .set_client_to_redis_db(self.db);
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if self.tls {
            // The redis crate builds its rustls configuration with the process's default provider.
            crate::tls::install_default_provider();
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_certificates(certificates);
            }
        }
        builder.build()
    }
}

/// `(tls, the rest after "://")` for a sentinel scheme, any case.
fn sentinel_scheme(url: &str) -> Option<(bool, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.eq_ignore_ascii_case("redis+sentinel") {
        Some((false, rest))
    } else if scheme.eq_ignore_ascii_case("rediss+sentinel") {
        Some((true, rest))
    } else {
        None
    }
}

/// The percent-decoded user and password of `user:password`, `:password` or `user`.
fn credentials(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), SentinelUrlError> {
    let decode = |text: &str| -> Result<Option<String>, SentinelUrlError> {
        if text.is_empty() {
            return Ok(None);
        }
        let decoded = percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| SentinelUrlError::Encoding)?;
        Ok(Some(decoded.into_owned()))
    };
    match userinfo {
        None => Ok((None, None)),
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => Ok((decode(user)?, decode(password)?)),
            None => Ok((decode(userinfo)?, None)),
        },
    }
}

/// A sentinel's `host`, `host:port`, `[v6]` or `[v6]:port`.
fn address(text: &str) -> Result<(String, u16), SentinelUrlError> {
    let bad = || SentinelUrlError::Address(text.to_string());
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                port => (host, Some(port.strip_prefix(':').ok_or_else(bad)?)),
            }
        }
        None => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(port) => port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
    };
    Ok((host.to_string(), port))
}

/// The pool manager of a Sentinel URL: each connection goes to the primary the sentinels
/// name when it is made.
pub(super) struct SentinelManager {
    client: Arc<Mutex<SentinelClient>>,
    master: String,
}

impl SentinelManager {
    /// A manager for `url`, with the `[tls]` certificates for `rediss+sentinel://`.
    pub(super) fn new(url: &SentinelUrl, certificates: Option<TlsCertificates>) -> Result<Self, RedisError> {
        Ok(SentinelManager {
            client: Arc::new(Mutex::new(url.client(certificates)?)),
            master: url.master.clone(),
        })
    }

    /// Watches the sentinels for `+switch-master` of this primary until `stop`, and drops
    /// `shared`'s connection whenever it moves (a demoted primary stays writable until the
    /// sentinels reconfigure it, seconds later, and its writes would be lost meanwhile).
    pub(super) fn watch(&self, shared: Weak<SharedConnection>, stop: CancellationToken) {
        let watch = SwitchWatch {
            client: self.client.clone(),
            master: self.master.clone(),
            shared,
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = watch.run() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.lock().await.get_async_connection().await
    }

    async fn recycle(&self, conn: &mut MultiplexedConnection, _: &Metrics) -> RecycleResult<RedisError> {
        let _: String = redis::cmd("PING").query_async(conn).await?;
        Ok(())
    }
}

/// How often the watch checks that its sentinel still answers.
const WATCH_PING_EVERY: Duration = Duration::from_secs(5);

/// The `+switch-master` subscription of one coordinator.
struct SwitchWatch {
    client: Arc<Mutex<SentinelClient>>,
    master: String,
    shared: Weak<SharedConnection>,
}

impl SwitchWatch {
    /// Subscribes on the first sentinel that answers, again after each failure. Every
    /// subscription after the first drops the connection too: a switch may have passed
    /// unheard meanwhile.
    async fn run(&self) {
        let mut attempt = 0;
        let mut subscribed_before = false;
        loop {
            match self.listen(&mut subscribed_before).await {
                Ok(()) => attempt = 0,
                Err(e) => {
                    warn!(error = %e, master = %self.master, "sentinel watch failed; subscribing again")
                }
            }
            if self.shared.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// One subscription, until its sentinel stops answering.
    async fn listen(&self, subscribed_before: &mut bool) -> Result<(), RedisError> {
        let sentinel = self.client.lock().await.async_get_sentinel_client().await?;
        let mut pubsub = sentinel.get_async_pubsub().await?;
        pubsub.subscribe("+switch-master").await?;
        if std::mem::replace(subscribed_before, true) {
            self.discard("subscribed to a sentinel again");
        }
        let (mut sink, mut messages) = pubsub.split();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = tokio::time::sleep(WATCH_PING_EVERY) => {
                    let ping = tokio::time::timeout(WATCH_PING_EVERY, sink.ping::<redis::Value>()).await;
                    match ping {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Ok(()),
                    }
                }
            };
            let Some(message) = message else {
                return Ok(());
            };
            // "<master name> <old ip> <old port> <new ip> <new port>"
            let payload: String = message.get_payload().unwrap_or_default();
            if payload.split(' ').next() == Some(self.master.as_str()) {
                info!(switch = %payload, "the sentinels switched the primary");
                self.discard("the primary moved");
            }
        }
    }

    fn discard(&self, why: &str) {
        if let Some(shared) = self.shared.upgrade() {
            if shared.discard() {
                info!(master = %self.master, "redis connection dropped: {why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SentinelUrl, SentinelUrlError> {
        SentinelUrl::parse(url)
    }

    #[test]
    fn several_sentinels_a_master_and_a_database() {
        let url = parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-c/jobs/3").unwrap();
        assert_eq!(
            url,
            SentinelUrl {
                tls: false,
                sentinels: vec![
                    ("10.0.0.1".into(), 26379),
                    ("10.0.0.2".into(), 26380),
                    ("sentinel-c".into(), DEFAULT_SENTINEL_PORT),
                ],
                master: "jobs".into(),
                db: 3,
                username: None,
                password: None,
            }
        );
    }

    #[test]
    fn the_database_defaults_to_zero() {
        assert_eq!(parse("redis+sentinel://h:1/m").unwrap().db, 0);
        assert_eq!(parse("redis+sentinel://h:1/m/").unwrap().db, 0);
    }

    #[test]
    fn password_user_tls_and_ipv6() {
        let url = parse("REDISS+SENTINEL://app:s%40cret@[::1]:26379,[fe80::2]/mymaster/0").unwrap();
        assert!(url.tls);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        assert_eq!(
            url.sentinels,
            vec![("::1".into(), 26379), ("fe80::2".into(), DEFAULT_SENTINEL_PORT)]
        );
        let password_only = parse("redis+sentinel://:pw@h:1/m/0").unwrap();
        assert_eq!(password_only.username, None);
        assert_eq!(password_only.password.as_deref(), Some("pw"));
        assert!(
            !format!("{password_only:?}").contains("pw\""),
            "the password is never printed"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        use SentinelUrlError::*;
        let cases = [
            ("redis://h:1/0", Scheme),
            ("redis+sentinel:///m/0", NoSentinels),
            ("redis+sentinel://h:1", NoMaster),
            ("redis+sentinel://h:1//0", NoMaster),
            ("redis+sentinel://h:port/m/0", Address("h:port".into())),
            ("redis+sentinel://h:0/m/0", Address("h:0".into())),
            ("redis+sentinel://h:1,:2/m/0", Address(":2".into())),
            ("redis+sentinel://[::1/m/0", Address("[::1".into())),
            ("redis+sentinel://h:1/m/x", Database("x".into())),
            ("redis+sentinel://h:1/m/-1", Database("-1".into())),
            ("redis+sentinel://h:1/m/0/extra", Trailing("extra".into())),
            ("redis+sentinel://h:1/m/0?sentinel_password=x", Query),
            ("redis+sentinel://%ff:x@h:1/m/0", Encoding),
        ];
        for (url, expected) in cases {
            assert_eq!(parse(url), Err(expected), "{url}");
        }
        assert!(parse("redis+sentinel://h:1/m/x")
            .unwrap_err()
            .to_string()
            .contains("redis+sentinel://[user:password@]host:port,host:port/<master name>/<db>"));
    }

    #[test]
    fn only_sentinel_schemes_are_sentinel_urls() {
        assert!(SentinelUrl::is_sentinel("redis+sentinel://h/m"));
        assert!(SentinelUrl::is_sentinel("Rediss+Sentinel://h/m"));
        assert!(!SentinelUrl::is_sentinel("redis://h:6379/0"));
        assert!(!SentinelUrl::is_sentinel("rediss://h:6379/0"));
    }
}
