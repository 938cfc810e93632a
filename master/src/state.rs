//! What every request and duty of a master shares.

use crate::metrics::MasterMetrics;
use crate::waiters::Waiters;
use jobfleet_common::client::{AmqpPool, ChannelSlot};
use jobfleet_common::config::{Config, ConfigError};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::topology::Topology;
use std::collections::HashMap;
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
    /// Compiled JSON Schemas of function args, by (group, function).
    pub schemas: HashMap<(String, String), jsonschema::Validator>,
    /// Synchronous submits waiting for results.
    pub waiters: Waiters,
    /// Prometheus metrics.
    pub metrics: MasterMetrics,
    /// This master's id (for the leader lease).
    pub master_id: String,
}

/// State handed to handlers.
pub type SharedState = Arc<AppState>;

/// Compiles every configured args schema; an invalid schema is a configuration error.
pub fn compile_schemas(config: &Config) -> Result<HashMap<(String, String), jsonschema::Validator>, ConfigError> {
    let mut schemas = HashMap::new();
    for (group, group_config) in &config.groups {
        for (name, function) in &group_config.functions {
            if let Some(schema) = &function.schema {
                let validator = jsonschema::validator_for(schema).map_err(|e| ConfigError::Invalid(format!("function {group}.{name}: invalid JSON Schema: {e}")))?;
                schemas.insert((group.clone(), name.clone()), validator);
            }
        }
    }
    Ok(schemas)
}
