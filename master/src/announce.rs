//! Announcing the result of a job the master ended itself: a cancel (the API) or a queue
//! timeout (the monitor).

use crate::state::AppState;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::publish::publish_result;
use tracing::warn;

/// Publishes the result of a job the master ended, then clears the record's `announce`
/// mark. If this fails, the worker that meets the job's message publishes it instead.
pub async fn announce(state: &AppState, record: &JobRecord) {
    let Some(result) = record.to_result_message() else {
        return;
    };
    let published: Result<(), ClientError> = async {
        let channel = state.publisher.get().await?;
        publish_result(&channel, &state.topology, &result, None).await
    }
    .await;
    match published {
        Ok(()) => {
            if let Err(e) = state.coordinator.announced(&record.group, &record.id).await {
                warn!(error = %e, "could not clear the announce mark");
            }
        }
        Err(e) => {
            state.publisher.invalidate().await;
            warn!(error = %e, job_id = %record.id, "could not publish the result; a worker will");
        }
    }
}
