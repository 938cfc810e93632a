//! Releasing held jobs (SPEC §9): the claim holds a queued job back while its group is
//! paused or runs `max_running` jobs; every tick the leader releases as many of a group's
//! held jobs as its limits now allow (oldest first) into the delayed set, due at once, for
//! the promotion of the same tick to publish.

use crate::state::AppState;
use jobfleet_common::coordinator::CoordinatorError;
use jobfleet_common::now_ms;
use tracing::debug;

/// The most jobs of one group released in one tick.
const MOST_PER_TICK: usize = 1_000;

/// Releases what every group's limits allow. Returns how many jobs were released.
pub async fn release_held(state: &AppState) -> Result<u64, CoordinatorError> {
    let mut total = 0;
    for (group, config) in &state.config.groups {
        let released = state
            .coordinator
            .release_held(group, &config.limits(), now_ms(), MOST_PER_TICK)
            .await?;
        if released > 0 {
            debug!(%group, released, "released held jobs");
        }
        total += released;
    }
    Ok(total)
}
