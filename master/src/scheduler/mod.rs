//! The scheduler: leader duties that run every [`TICK`], more often than the monitor's
//! (a delayed job must start within a second of its `run_at`):
//! - [`promote`]: publishing delayed jobs when they become due;
//! - [`cron`]: firing the schedules (each firing is a job recorded as due, which the same
//!   tick publishes);
//! - [`release`]: releasing the jobs flow control held back, as the group's limits allow
//!   (made due, which the same tick publishes);
//! - every [`RECONCILE_EVERY`], the workflows' reconcile ([`crate::flows::reconcile`]).
//!
//! Only the master holding the monitor lease (`AppState::leading`) acts. During a lease
//! handover two masters may both act for a moment: a delayed job may then be published
//! twice (the claim lets one copy run) and a firing is recorded under its one job id
//! `<name>:<fire time>` (a second submit of it answers `existing`).

pub mod cron;
pub mod promote;
pub mod release;

use crate::flows::reconcile::{reconcile, RECONCILE_EVERY};
use crate::state::AppState;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often the leader publishes due delayed jobs and fires schedules.
pub const TICK: Duration = Duration::from_millis(100);

/// Runs the scheduler's duties on every tick this master leads, until `shutdown`.
pub async fn run(state: &AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedules = cron::Firing::default();
    let mut last_reconcile = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !state.leading.load(Ordering::Relaxed) {
            continue;
        }
        if let Err(e) = schedules.fire_due(state).await {
            warn!(error = %e, "schedules: firing failed; retrying next tick");
        }
        if let Err(e) = release::release_held(state).await {
            warn!(error = %e, "held jobs: releasing failed; retrying next tick");
        }
        if let Err(e) = promote::promote_due(state).await {
            warn!(error = %e, "delayed jobs: publishing failed; retrying next tick");
        }
        if last_reconcile.elapsed() >= RECONCILE_EVERY {
            last_reconcile = tokio::time::Instant::now();
            if let Err(e) = reconcile(state).await {
                warn!(error = %e, "workflows: reconcile failed; retrying");
            }
        }
    }
}
