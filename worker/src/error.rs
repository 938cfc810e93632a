//! The worker's error type.

use jobfleet_common::client::ClientError;
use jobfleet_common::config::ConfigError;
use jobfleet_common::coordinator::CoordinatorError;
use jobfleet_common::lapin;

/// Why the worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The worker was built with settings that cannot work.
    #[error("invalid worker settings: {0}")]
    Settings(String),
    /// The configuration cannot work for this worker (an invalid args schema).
    #[error("invalid worker settings: {0}")]
    Config(#[from] ConfigError),
    /// The process sandboxes cannot be set up as configured (an unknown user, no bubblewrap).
    #[error("invalid worker settings: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The broker failed.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused this worker's topology while a session started (a queue declared
    /// with other arguments, no permission): reconnecting cannot help.
    #[error("the broker refuses this worker's topology: {0}")]
    Refused(#[source] lapin::Error),
    /// A client-library call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The metrics could not be registered (a registry that already holds them).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
    /// The session's control consumer task panicked or was aborted.
    #[error("consumption stalled: the control consumer task failed: {0}")]
    ControlTask(#[source] tokio::task::JoinError),
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

    /// Whether the session stopped receiving jobs (a stalled or lost consumer); enough of
    /// these in a row without a delivery stop the worker.
    pub fn is_stall(&self) -> bool {
        matches!(self, WorkerError::Stalled(_) | WorkerError::ControlTask(_))
    }
}

/// Why a copy of a delivery (parked in a delay queue, dead-lettered) could not be placed.
/// The original delivery then stays with the broker.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    /// No broker channel could be had.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker failed or refused a declare or the publish.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker returned the copy: no queue took it (its queue was deleted).
    #[error("the broker returned the copy sent to {0}: no queue took it")]
    Returned(String),
    /// The broker did not take the copy (a negative confirm).
    #[error("the broker rejected the copy sent to {0} (nack)")]
    Nacked(String),
}
