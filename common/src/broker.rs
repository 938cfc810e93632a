//! Connections to the broker: a deadpool manager that opens lapin connections, over rustls
//! with the `[tls]` settings for `amqps://` URLs (lapin's own TLS path takes no rustls
//! configuration, so a private CA could only be added to the system roots, and the Redis
//! side could not match it).
//!
//! The URL may name several nodes of a RabbitMQ cluster (SPEC §12, [`amqp_urls`]): a new
//! connection tries them in turn, starting where the last one of this manager succeeded.
//! Each manager of a process starts at another node (a process-wide rotation from a random
//! start), so the clients of a fleet spread over the cluster; a node that refuses, does not
//! answer within [`NODE_CONNECT_TIMEOUT`], or whose connection dropped, is passed over for
//! the next one.

use crate::config::amqp_urls;
use crate::tls::{Endpoint, TlsError};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

/// How long one node of a cluster may take to accept a connection (TCP, TLS and the AMQP
/// handshake) before the next node is tried. A single URL has no such bound of its own
/// (the pool's create timeout applies, as before).
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Where the next manager of this process starts in its node list: random at start, one
/// further for each manager, so a process's pools (and a fleet's processes) spread.
static ROTATION: LazyLock<AtomicUsize> =
    LazyLock::new(|| AtomicUsize::new(uuid::Uuid::new_v4().as_u128() as usize));

/// Why a broker endpoint is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The URL (or one URL of the list) does not parse as an AMQP URL.
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    /// The `[tls]` settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// One node of the broker: its URL and, for `amqps://`, the TLS connector.
struct Node {
    uri: AMQPUri,
    tls: Option<RustlsConnector>,
}

impl Node {
    /// The node's address for logs (no credentials).
    fn address(&self) -> String {
        format!("{}:{}", self.uri.authority.host, self.uri.authority.port)
    }
}

/// A pooled broker connection and the node it goes to (a [`Connection`] by `Deref`).
pub struct NodeConnection {
    connection: Connection,
    node: usize,
}

impl std::ops::Deref for NodeConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl std::fmt::Debug for NodeConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConnection")
            .field("node", &self.node)
            .field("status", self.connection.status())
            .finish()
    }
}

/// Opens and recycles the pooled broker connections of one endpoint (one node or several).
pub struct AmqpManager {
    nodes: Vec<Node>,
    /// The node the next connection tries first.
    next: AtomicUsize,
    connection_name: String,
}

impl std::fmt::Debug for AmqpManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(Node::address).collect();
        f.debug_struct("AmqpManager")
            .field("nodes", &nodes)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl AmqpManager {
    /// A manager for `endpoint` (one URL, or a comma-separated list of a cluster's nodes);
    /// an `amqps://` URL reads the `[tls]` files here, once.
    pub fn new(endpoint: &Endpoint, connection_name: &str) -> Result<AmqpManager, BrokerError> {
        let nodes = amqp_urls(&endpoint.url)
            .map_err(BrokerError::Url)?
            .into_iter()
            .map(|uri| {
                let tls = match uri.scheme {
                    AMQPScheme::AMQPS => Some(RustlsConnector::from(endpoint.tls.client_config()?)),
                    AMQPScheme::AMQP => None,
                };
                Ok(Node { uri, tls })
            })
            .collect::<Result<Vec<Node>, BrokerError>>()?;
        let first = ROTATION.fetch_add(1, Ordering::Relaxed) % nodes.len();
        Ok(AmqpManager {
            nodes,
            next: AtomicUsize::new(first),
            connection_name: connection_name.to_string(),
        })
    }

    /// How many nodes the endpoint names.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn properties(&self) -> ConnectionProperties {
        ConnectionProperties::default().with_connection_name(self.connection_name.clone().into())
    }

    /// Connects to node `index`, within [`NODE_CONNECT_TIMEOUT`] when there are others to try.
    async fn connect_to(&self, index: usize) -> Result<Connection, lapin::Error> {
        let connect = self.open(&self.nodes[index]);
        if self.nodes.len() == 1 {
            return connect.await;
        }
        match tokio::time::timeout(NODE_CONNECT_TIMEOUT, connect).await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {NODE_CONNECT_TIMEOUT:?}"),
            )
            .into()),
        }
    }

    /// Opens a connection to `node`: plain, or through rustls for `amqps://`.
    async fn open(&self, node: &Node) -> Result<Connection, lapin::Error> {
        let runtime = lapin::runtime::default_runtime()?;
        let Some(connector) = node.tls.clone() else {
            return Connection::connect_uri_with_runtime(node.uri.clone(), self.properties(), runtime).await;
        };
        let connect = async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host;
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), uri.authority.port))
                .await?
                .collect();
            let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
            Ok(stream.into_rustls(&connector, &host).await?)
        };
        Connection::connector(node.uri.clone(), runtime, connect, self.properties()).await
    }

    /// Makes the next connection start past `node`, unless another node is already next.
    fn pass_over(&self, node: usize) {
        let following = (node + 1) % self.nodes.len();
        let _ = self
            .next
            .compare_exchange(node, following, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl managed::Manager for AmqpManager {
    type Type = NodeConnection;
    type Error = lapin::Error;

    /// Tries every node once, from the next one on; the first that connects is where the
    /// following connections start. The error of the last node tried when none connects.
    async fn create(&self) -> Result<NodeConnection, lapin::Error> {
        let count = self.nodes.len();
        let first = self.next.load(Ordering::Relaxed);
        let mut failure = None;
        for step in 0..count {
            let node = (first + step) % count;
            // Passed over first: a create abandoned here (the pool's timeout) resumes after it.
            self.pass_over(node);
            match self.connect_to(node).await {
                Ok(connection) => {
                    self.next.store(node, Ordering::Relaxed);
                    return Ok(NodeConnection { connection, node });
                }
                Err(e) => {
                    if count > 1 {
                        let address = self.nodes[node].address();
                        tracing::warn!(node = %address, error = %e, "broker node unreachable; trying the next");
                    }
                    failure = Some(e);
                }
            }
        }
        Err(failure.expect("an endpoint names at least one node"))
    }

    /// A connection that is no longer connected is dropped, and its node passed over: the
    /// next connection tries another node first.
    async fn recycle(&self, connection: &mut NodeConnection, _: &Metrics) -> RecycleResult<lapin::Error> {
        if connection.status().connected() {
            Ok(())
        } else {
            self.pass_over(connection.node);
            Err(RecycleError::message(format!(
                "the broker connection is not connected: {:?}",
                connection.status()
            )))
        }
    }
}
