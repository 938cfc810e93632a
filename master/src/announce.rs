//! Announcing the result of a job the master ended itself: a cancel (the API) or a queue
//! timeout (the monitor).

use crate::state::AppState;
use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::publish::publish_result;
use std::time::Duration;
use tracing::warn;

/// How long announcing a result may take: neither a request nor the monitor waits longer on
/// a slow or blocked broker.
const ANNOUNCE_DEADLINE: Duration = Duration::from_secs(5);

/// Publishes the result of a job the master ended, then clears the record's `announce`
/// mark. If this fails or takes over [`ANNOUNCE_DEADLINE`], the worker that meets the job's
/// message publishes it instead.
pub async fn announce(state: &AppState, record: &JobRecord) {
    let Some(result) = record.to_result_message() else {
        return;
    };
    if state.publisher.blocked().await {
        warn!(job_id = %record.id, "the broker blocks publishers; a worker will publish the result");
        return;
    }
    let published = async {
        let channel = state.publisher.get().await?;
        publish_result(&channel, &state.topology, &result, None).await
    };
    match tokio::time::timeout(ANNOUNCE_DEADLINE, published).await {
        Ok(Ok(())) => {
            if let Err(e) = state.coordinator.announced(&record.group, &record.id).await {
                warn!(error = %e, "could not clear the announce mark");
            }
        }
        Ok(Err(e)) => {
            state.publisher.invalidate().await;
            warn!(error = %e, job_id = %record.id, "could not publish the result; a worker will");
        }
        Err(_) => {
            warn!(job_id = %record.id, "the broker did not confirm the result in time; a worker will publish it")
        }
    }
}
