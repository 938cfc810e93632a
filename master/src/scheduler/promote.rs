//! Publishing delayed jobs when due (SPEC §9): for each group, the due entries of its
//! delayed set are read with their records (`due.lua`), published with confirms, and only
//! then removed (`promoted.lua`). A leader that dies in between leaves the entries for the
//! next one, which publishes them again: at least once, and the claim lets one copy run.

use crate::state::AppState;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::{CoordinatorError, DueJob};
use jobfleet_common::message::JobMessage;
use jobfleet_common::now_ms;
use jobfleet_common::publish::{persistent_properties, publish_batch};
use std::time::Duration;
use tracing::{debug, warn};

/// Due jobs read and published per round trip.
pub const BATCH: usize = 500;
/// Batches per group and tick, so one group's burst does not starve the others'.
const MAX_BATCHES: usize = 20;
/// How long publishing one batch and its confirms may take, so a slow or blocked broker
/// never holds the scheduler for long.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(5);

/// Why publishing due jobs stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromoteError {
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The broker failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker blocks publishers (a memory or disk alarm).
    #[error("the broker blocks publishers (a resource alarm)")]
    Blocked,
    /// The broker did not confirm a batch in time.
    #[error("the broker did not confirm due jobs within {PUBLISH_DEADLINE:?}")]
    Unconfirmed,
}

/// Publishes every group's due delayed jobs (up to [`MAX_BATCHES`] batches of [`BATCH`]
/// per group). Returns how many were published.
pub async fn promote_due(state: &AppState) -> Result<usize, PromoteError> {
    let mut total = 0;
    for group in state.config.groups.keys() {
        for _ in 0..MAX_BATCHES {
            let due = state.coordinator.due(group, now_ms(), BATCH).await?;
            let full = due.len() == BATCH;
            if due.is_empty() {
                break;
            }
            let published = publish(state, due).await?;
            state.coordinator.promoted(group, &published).await?;
            state
                .metrics
                .delayed_published
                .with_label_values(&[group])
                .inc_by(published.len() as u64);
            debug!(%group, count = published.len(), "published due delayed jobs");
            total += published.len();
            if !full {
                break;
            }
        }
    }
    Ok(total)
}

/// Publishes the jobs of `due` (immediate messages made from their records) and returns
/// those the broker confirmed.
async fn publish(state: &AppState, due: Vec<DueJob>) -> Result<Vec<DueJob>, PromoteError> {
    if state.publisher.blocked().await {
        return Err(PromoteError::Blocked);
    }
    let channel = state.publisher.get().await?;
    let messages: Vec<JobMessage> = due.iter().map(|d| d.record.to_job_message()).collect();
    let batch = messages
        .iter()
        .zip(&due)
        .map(|(job, d)| {
            (
                job,
                persistent_properties(&job.id, d.record.traceparent.as_deref()),
            )
        })
        .collect();
    let results =
        match tokio::time::timeout(PUBLISH_DEADLINE, publish_batch(&channel, &state.topology, batch)).await {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                state.publisher.invalidate().await;
                return Err(e.into());
            }
            Err(_) => return Err(PromoteError::Unconfirmed),
        };
    Ok(due
        .into_iter()
        .zip(results)
        .filter_map(|(job, result)| match result {
            Ok(()) => Some(job),
            Err(e) => {
                warn!(job_id = %job.record.id, error = %e, "a due delayed job was not published; retrying next tick");
                None
            }
        })
        .collect())
}
