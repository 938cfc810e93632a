//! What every request and duty of a master shares, and how it is built.

use crate::error::MasterError;
use crate::metrics::MasterMetrics;
use crate::waiters::Waiters;
use jobfleet_common::auth::TokenTable;
use jobfleet_common::client::{amqp_pool, AmqpPool, ChannelSlot};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::schema::ArgSchemas;
use jobfleet_common::topology::Topology;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    /// A plain channel for queue inspection (passive declares), on a connection of its own
    /// that never publishes, so a broker alarm that blocks publishers leaves it readable.
    pub inspector: ChannelSlot,
    /// The inspector's connection pool.
    pub inspect_pool: AmqpPool,
    /// Compiled JSON Schemas of function args.
    pub schemas: ArgSchemas,
    /// Synchronous submits waiting for results.
    pub waiters: Waiters,
    /// Prometheus metrics.
    pub metrics: MasterMetrics,
    /// Cancelled when the master stops: open `?wait=` requests answer at once.
    pub shutdown: CancellationToken,
    /// This master's id (for the leader lease).
    pub master_id: String,
    /// The API tokens; `None` when the master runs without `[auth]` (or it is disabled).
    pub auth: Option<AuthState>,
    /// Whether this master held the monitor lease at its last renewal: the leader runs the
    /// duties that must run once per fleet (the monitor's, the scheduler's).
    pub leading: AtomicBool,
    /// The workflow and batch plans this master has read (SPEC §10).
    pub flows: crate::flows::driver::Plans,
    /// The key that signs the web UI's session cookies (SPEC §11).
    pub ui_key: crate::ui::session::SessionKey,
}

/// The `[auth]` settings a request is checked against.
#[derive(Debug)]
pub struct AuthState {
    /// The configured tokens.
    pub tokens: TokenTable,
    /// Whether `/metrics` is served without a token.
    pub open_metrics: bool,
}

impl AuthState {
    /// The checker of `config`'s `[auth]` table; `None` without one or when disabled.
    fn of(config: &Config) -> Result<Option<AuthState>, MasterError> {
        let Some(auth) = config.auth.as_ref().filter(|auth| !auth.disabled) else {
            return Ok(None);
        };
        Ok(Some(AuthState {
            tokens: TokenTable::new(auth)?,
            open_metrics: auth.open_metrics,
        }))
    }
}

impl AppState {
    /// The state of a master over `config`. Nothing connects here: the Redis and broker
    /// pools connect on first use, so a router over this state answers whatever needs no
    /// backing service even when none is reachable.
    pub fn new(config: Config, shutdown: CancellationToken) -> Result<AppState, MasterError> {
        let schemas = ArgSchemas::compile(&config)?;
        let topology = Topology::new(&config.namespace);
        let coordinator = Coordinator::from_config(&config, topology.clone())?;
        let master_id = format!(
            "master-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let pool = amqp_pool(config.amqp_endpoint(), 4, &master_id)?;
        let inspect_pool = amqp_pool(config.amqp_endpoint(), 1, &format!("{master_id}-inspect"))?;
        Ok(AppState {
            auth: AuthState::of(&config)?,
            ui_key: crate::ui::session::SessionKey::of(&config)?,
            publisher: ChannelSlot::new(pool.clone(), true),
            inspector: ChannelSlot::new(inspect_pool.clone(), false),
            inspect_pool,
            pool,
            schemas,
            waiters: Waiters::new(config.amqp_endpoint(), topology.clone(), shutdown.clone()),
            metrics: MasterMetrics::for_config(&config),
            config,
            topology,
            coordinator,
            master_id,
            shutdown,
            leading: AtomicBool::new(false),
            flows: Default::default(),
        })
    }
}

/// State handed to handlers.
pub type SharedState = Arc<AppState>;
