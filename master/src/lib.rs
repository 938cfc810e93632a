//! The jobfleet master: the HTTP API of SPEC §4, the fleet monitor and the master metrics.
//! [`run`] serves on a listener it is given, so tests start a real master on port 0.
//! `http` and `monitor` both build on `fleet` and `announce`, never on each other.

pub mod announce;
pub mod corrector;
pub mod error;
pub mod exposure;
pub mod fleet;
pub mod flows;
pub mod http;
pub mod https;
pub mod metrics;
pub mod monitor;
pub mod scheduler;
pub mod state;
pub mod ui;
pub mod waiters;

pub use error::MasterError;
pub use monitor::MonitorTimings;

use jobfleet_common::client::{self, ClientError};
use jobfleet_common::config::Config;
use state::AppState;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Builds the shared state and declares the exchanges and every configured group's queue,
/// retrying while the broker is unreachable (until `shutdown`).
pub async fn connect(config: Config, shutdown: &CancellationToken) -> Result<Arc<AppState>, MasterError> {
    let state = AppState::new(config, shutdown.clone())?;
    let mut attempt = 0;
    loop {
        match declare(&state).await {
            Ok(()) => break,
            Err(e) if !shutdown.is_cancelled() && e.is_connection_error() => {
                warn!(error = %e, "broker unreachable at start; retrying");
                tokio::time::sleep(client::backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Arc::new(state))
}

async fn declare(state: &AppState) -> Result<(), ClientError> {
    let channel = client::open_channel(&state.pool, false).await?;
    let dead_letters = state.config.dead_letters_queue_type();
    state.topology.declare_base(&channel, dead_letters).await?;
    state.topology.declare_flows(&channel, dead_letters).await?;
    for (group, group_config) in &state.config.groups {
        state
            .topology
            .declare_group(
                &channel,
                group,
                group_config.queue_type,
                group_config.max_priority,
            )
            .await?;
    }
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// Serves the API on `listener` and runs the monitor until `shutdown`, then stops cleanly.
pub async fn run(
    config: Config,
    listener: TcpListener,
    timings: MonitorTimings,
    shutdown: CancellationToken,
) -> Result<(), MasterError> {
    let state = connect(config, &shutdown).await?;
    state.waiters.set_feed_idle(timings.feed_idle);
    let monitor = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { monitor::run(&state, timings, shutdown).await })
    };
    let scheduler = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { scheduler::run(&state, shutdown).await })
    };
    let flows = {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { flows::driver::run(state, shutdown).await })
    };
    let scheme = if state.config.https.is_some() {
        "https"
    } else {
        "http"
    };
    info!(address = %listener.local_addr()?, scheme, master = %state.master_id, "master serving");
    let app = http::router(state.clone());
    let served = match &state.config.https {
        Some(https) => https::serve(listener, app, https, shutdown.clone()).await,
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .map_err(MasterError::from),
    };
    shutdown.cancel();
    let _ = tokio::join!(monitor, scheduler, flows);
    state.pool.close();
    state.inspect_pool.close();
    info!("master stopped");
    served
}
