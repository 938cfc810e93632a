//! What every request and duty of a master shares.

use crate::metrics::MasterMetrics;
use crate::waiters::Waiters;
use jobfleet_common::client::{AmqpPool, ChannelSlot};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::schema::ArgSchemas;
use jobfleet_common::topology::Topology;
use std::sync::Arc;

/// The shared state of one master.
pub struct AppState {
    /// The fleet configuration.
    pub config: Config,
    /// Names under the namespace.
    pub topology: Topology,
    /// Redis.
    pub coordinator: Coordinator,
    /// The broker connection pool.
    pub pool: AmqpPool,
    /// A confirm-mode channel for jobs, results and control messages.
    pub publisher: ChannelSlot,
    /// A plain channel for queue inspection (passive declares).
    pub inspector: ChannelSlot,
    /// Compiled JSON Schemas of function args.
    pub schemas: ArgSchemas,
    /// Synchronous submits waiting for results.
    pub waiters: Waiters,
    /// Prometheus metrics.
    pub metrics: MasterMetrics,
    /// Cancelled when the master stops: open `?wait=` requests answer at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// This master's id (for the leader lease).
    pub master_id: String,
}

/// State handed to handlers.
pub type SharedState = Arc<AppState>;
