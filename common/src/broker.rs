//! Connections to the broker: a deadpool manager that opens lapin connections, over rustls
//! with the `[tls]` settings for `amqps://` URLs (lapin's own TLS path takes no rustls
//! configuration, so a private CA could only be added to the system roots, and the Redis
//! side could not match it).

use crate::tls::{Endpoint, TlsError};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};
use std::net::SocketAddr;

/// Why a broker endpoint is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The URL does not parse as an AMQP URL.
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    /// The `[tls]` settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Opens and recycles the pooled broker connections of one endpoint.
pub struct AmqpManager {
    uri: AMQPUri,
    /// Set for an `amqps://` URL.
    tls: Option<RustlsConnector>,
    connection_name: String,
}

impl std::fmt::Debug for AmqpManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpManager")
            .field("host", &self.uri.authority.host)
            .field("port", &self.uri.authority.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl AmqpManager {
    /// A manager for `endpoint`; an `amqps://` URL reads the `[tls]` files here, once.
    pub fn new(endpoint: &Endpoint, connection_name: &str) -> Result<AmqpManager, BrokerError> {
        let uri: AMQPUri = endpoint.url.parse().map_err(BrokerError::Url)?;
        let tls = match uri.scheme {
            AMQPScheme::AMQPS => Some(RustlsConnector::from(endpoint.tls.client_config()?)),
            AMQPScheme::AMQP => None,
        };
        Ok(AmqpManager {
            uri,
            tls,
            connection_name: connection_name.to_string(),
        })
    }

    fn properties(&self) -> ConnectionProperties {
        ConnectionProperties::default().with_connection_name(self.connection_name.clone().into())
    }
}

impl managed::Manager for AmqpManager {
    type Type = Connection;
    type Error = lapin::Error;

    async fn create(&self) -> Result<Connection, lapin::Error> {
        let runtime = lapin::runtime::default_runtime()?;
        let Some(connector) = self.tls.clone() else {
            return Connection::connect_uri_with_runtime(self.uri.clone(), self.properties(), runtime).await;
        };
        let connect = async move |uri: AMQPUri, runtime| {
            let host = uri.authority.host;
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), uri.authority.port))
                .await?
                .collect();
            let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
            Ok(stream.into_rustls(&connector, &host).await?)
        };
        Connection::connector(self.uri.clone(), runtime, connect, self.properties()).await
    }

    async fn recycle(&self, connection: &mut Connection, _: &Metrics) -> RecycleResult<lapin::Error> {
        if connection.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message(format!(
                "the broker connection is not connected: {:?}",
                connection.status()
            )))
        }
    }
}
