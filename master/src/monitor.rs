//! The fleet monitor. Duties that must run once per fleet (reaping dead workers, queue
//! timeouts, index expiry, the run-record corrector) run on the master holding the Redis lease; another master takes
//! the lease within seconds when the holder dies. The monitor keeps `AppState::leading` for
//! the [`scheduler`](crate::scheduler), whose duties run more often than its tick.

use crate::announce::announce;
use crate::corrector::Corrector;
use crate::state::AppState;
use jobfleet_common::coordinator::{EndEarly, EndRequest};
use jobfleet_common::message::{ErrorKind, JobError, JobStatus};
use jobfleet_common::now_ms;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Timings of the monitor.
#[derive(Debug, Clone, Copy)]
pub struct MonitorTimings {
    /// How often the duties run.
    pub tick: Duration,
    /// How long the lease outlives its holder's last renewal.
    pub lease_ttl: Duration,
    /// How often expired index entries are swept.
    pub sweep_every: Duration,
    /// How long the result feed stays subscribed with no submit waiting
    /// ([`crate::waiters::FEED_IDLE`] by default).
    pub feed_idle: Duration,
}

impl Default for MonitorTimings {
    fn default() -> Self {
        MonitorTimings {
            tick: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(5),
            sweep_every: Duration::from_secs(10),
            feed_idle: crate::waiters::FEED_IDLE,
        }
    }
}

/// Runs the monitor until `shutdown`.
pub async fn run(state: &AppState, timings: MonitorTimings, shutdown: CancellationToken) {
    let mut leading = false;
    let mut last_sweep = tokio::time::Instant::now() - timings.sweep_every;
    let mut tick = tokio::time::interval(timings.tick);
    let mut corrector = Corrector::new(state.config.corrector_bound);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                state.leading.store(false, Ordering::Relaxed);
                return;
            }
            _ = tick.tick() => {}
        }
        let holds = match state
            .coordinator
            .lease("monitor", &state.master_id, timings.lease_ttl)
            .await
        {
            Ok(holds) => holds,
            Err(e) => {
                warn!(error = %e, "cannot reach the lease");
                false
            }
        };
        state.leading.store(holds, Ordering::Relaxed);
        if holds != leading {
            info!(master = %state.master_id, leading = holds, "monitor lease {}", if holds { "taken" } else { "lost" });
            leading = holds;
        }
        if !leading {
            continue;
        }
        if let Err(e) = duties(state, &mut last_sweep, timings.sweep_every).await {
            warn!(error = %e, "monitor duties failed; retrying next tick");
        }
        if let Err(e) = corrector.run(state).await {
            warn!(error = %e, "run-record corrector failed; retrying next tick");
        }
    }
}

async fn duties(
    state: &AppState,
    last_sweep: &mut tokio::time::Instant,
    sweep_every: Duration,
) -> Result<(), jobfleet_common::coordinator::CoordinatorError> {
    let config = &state.config;
    for (id, info) in state
        .coordinator
        .reap_dead_workers(|group| config.group(group).map_or(5, |g| g.max_failures))
        .await?
    {
        warn!(worker = %id, groups = %info["groups"], "worker stopped heartbeating: removed and counted as a crash");
    }
    for (group, group_config) in &config.groups {
        let Some(timeout) = group_config.queue_timeout else {
            continue;
        };
        let before = now_ms() - timeout.as_millis() as i64;
        for id in state.coordinator.queued_before(group, before, 100).await? {
            let error = JobError::new(
                ErrorKind::NoWorker,
                format!(
                    "no worker picked the job up within the queue timeout of {}",
                    humantime::format_duration(timeout)
                ),
            );
            if let EndEarly::Ended { record, .. } = state
                .coordinator
                .end_early(EndRequest {
                    id: &id,
                    group: Some(group),
                    status: JobStatus::Failed,
                    error: &error,
                    allowed_from: &[JobStatus::Queued],
                })
                .await?
            {
                info!(job_id = %id, %group, "queue timeout: failed with no_worker");
                announce(state, &record).await;
            }
        }
    }
    if last_sweep.elapsed() >= sweep_every {
        *last_sweep = tokio::time::Instant::now();
        // Only entries whose record is gone leave the index: the shortest retention of
        // any group is a safe horizon for all.
        let horizon = now_ms() - state.coordinator.shortest_retention().as_millis() as i64;
        let removed = state.coordinator.sweep_index(horizon, 1000, 100_000).await?;
        if removed > 0 {
            info!(removed, "expired jobs left the index");
        }
    }
    Ok(())
}
