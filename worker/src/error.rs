//! The worker's error type.

use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;
use jobfleet_common::lapin;

/// Why the worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker was built with settings that cannot work.
    #[error("invalid worker settings: {0}")]
    Settings(String),
    /// The broker failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// A client-library call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The metrics could not be registered (a registry that already holds them).
    #[error("metrics: {0}")]
    Metrics(String),
    /// The metrics address could not be bound.
    #[error("cannot listen for /metrics on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Consumption stalled while the queue held jobs, and reconnecting did not help.
    #[error("consumption stalled: {0}")]
    Stalled(String),
}

impl WorkerError {
    /// Whether the error is a lost connection, after which the worker reconnects.
    pub fn is_connection_error(&self) -> bool {
        match self {
            WorkerError::Amqp(e) => !jobfleet_common::client::is_refusal(e),
            WorkerError::Client(e) => e.is_connection_error(),
            WorkerError::Coordinator(e) => e.is_connection_error(),
            _ => false,
        }
    }
}
