//! The fleet as the broker and Redis show it, read by both the API and the `/metrics`
//! scrape: a group's queue depth, the workers serving a group, the per-group gauges
//! (delayed jobs included).

use crate::state::AppState;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::CoordinatorError;
use jobfleet_common::publish;
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

/// How long reading a queue's depth may take.
pub const DEPTH_DEADLINE: Duration = Duration::from_secs(5);

/// Why a queue's depth could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DepthError {
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] ClientError),
    /// The broker did not answer within [`DEPTH_DEADLINE`].
    #[error("the broker did not answer within {DEPTH_DEADLINE:?}")]
    Deadline,
}

/// Jobs waiting in `group`'s queue, from a passive declare on the inspection channel,
/// within [`DEPTH_DEADLINE`].
pub async fn queue_depth(state: &AppState, group: &str) -> Result<u64, DepthError> {
    let read = async {
        let channel = state.inspector.get().await?;
        match publish::queue_depth(&channel, &state.topology.group_queue(group)).await {
            Ok(depth) => Ok(depth),
            Err(e) => {
                // A failed passive declare closes the channel; open a fresh one next time.
                state.inspector.invalidate().await;
                Err(ClientError::from(e))
            }
        }
    };
    match tokio::time::timeout(DEPTH_DEADLINE, read).await {
        Ok(depth) => Ok(depth?),
        Err(_) => Err(DepthError::Deadline),
    }
}

/// How many of `workers` (registry entries) consume `group`.
pub fn serving(workers: &[Value], group: &str) -> u64 {
    let consumes = |worker: &&Value| {
        worker["groups"]
            .as_array()
            .is_some_and(|groups| groups.iter().any(|g| g == group))
    };
    workers.iter().filter(consumes).count() as u64
}

/// Sets the per-group gauges (queue depth, workers, broken) from the broker and Redis; a
/// gauge whose source cannot be read keeps its last value.
pub async fn refresh_gauges(state: &AppState) {
    let workers = tokio::time::timeout(DEPTH_DEADLINE, state.coordinator.workers())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let metrics = &state.metrics;
    let groups: Vec<String> = state.config.groups.keys().cloned().collect();
    if let Ok(Ok(counts)) =
        tokio::time::timeout(DEPTH_DEADLINE, state.coordinator.delayed_counts(&groups)).await
    {
        for (group, count) in groups.iter().zip(counts) {
            metrics.jobs_delayed.with_label_values(&[group]).set(count as i64);
        }
    }
    for group in state.config.groups.keys() {
        match queue_depth(state, group).await {
            Ok(depth) => metrics.queue_depth.with_label_values(&[group]).set(depth as i64),
            Err(e) => warn!(error = %e, %group, "cannot read the queue depth"),
        }
        let count = serving(&workers, group) as i64;
        metrics.workers.with_label_values(&[group]).set(count);
        if let Ok(Ok((_, broken))) =
            tokio::time::timeout(DEPTH_DEADLINE, state.coordinator.group_health(group)).await
        {
            metrics
                .group_broken
                .with_label_values(&[group])
                .set(i64::from(broken));
        }
    }
    if let Ok(Err(e)) = tokio::time::timeout(DEPTH_DEADLINE, refresh_flow_gauges(state, &groups)).await {
        warn!(error = %e, "cannot read the groups' flow control");
    }
}

/// Sets the flow-control gauges (paused, running, max_running, held) from Redis.
async fn refresh_flow_gauges(state: &AppState, groups: &[String]) -> Result<(), CoordinatorError> {
    let metrics = &state.metrics;
    let held = state.coordinator.held_counts(groups).await?;
    for (group, held) in groups.iter().zip(held) {
        let Some(config) = state.config.group(group) else {
            continue;
        };
        let limits = state.coordinator.limits(group, &config.limits()).await?;
        let running = state.coordinator.running(group).await?;
        let label = [group.as_str()];
        metrics.jobs_held.with_label_values(&label).set(held as i64);
        metrics
            .group_paused
            .with_label_values(&label)
            .set(i64::from(limits.paused));
        metrics
            .group_running
            .with_label_values(&label)
            .set(running as i64);
        let cap = limits.max_running.map_or(0, i64::from);
        metrics.group_max_running.with_label_values(&label).set(cap);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_worker_serves_the_groups_it_registered() {
        let workers = [
            json!({"id": "w1", "groups": ["etl", "default"]}),
            json!({"id": "w2", "groups": ["default"]}),
            json!({"id": "w3"}),
        ];
        assert_eq!(serving(&workers, "default"), 2);
        assert_eq!(serving(&workers, "etl"), 1);
        assert_eq!(serving(&workers, "nope"), 0);
    }
}
