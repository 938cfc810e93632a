//! The run-record corrector, a leader duty: finds records `queued` or `started` that
//! nothing can bring to an end any more — a queued job whose message is gone (a submit
//! whose reply was lost, a copy lost with a broker), a started job whose worker died and
//! whose message no longer comes back, a started job whose live worker no longer runs it
//! (its end was lost in a Redis failover) — and republishes their job. Republishing is always
//! safe: a claim drops every copy of a job beyond the one that runs it. It also publishes
//! the results the master still owes past the bound: a job it ended (a cancel, a queue
//! timeout) whose result it could not publish then, and whose message no worker will meet
//! (a submit refused after its record was answered to another request has none).

use crate::announce::announce;
use crate::fleet::{queue_depth, DepthError};
use crate::state::AppState;
use jobfleet_common::client::ClientError;
use jobfleet_common::coordinator::{AttemptKey, CoordinatorError, JobRecord, Orphan};
use jobfleet_common::lapin::types::{AMQPValue, FieldTable};
use jobfleet_common::message::JobStatus;
use jobfleet_common::publish::{persistent_properties, publish_job};
use jobfleet_common::topology::HOLD_HEADER;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// Why a correction round stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorrectorError {
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The broker failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A queue's depth could not be read.
    #[error(transparent)]
    Depth(#[from] DepthError),
    /// The broker did not confirm a republished job in time (slow, or blocking publishers).
    #[error("the broker did not confirm a republished job within {REPUBLISH_DEADLINE:?}")]
    Unconfirmed,
}

/// How long republishing one job may take, so a slow or blocked broker never holds the
/// monitor (and its lease renewals) for long.
const REPUBLISH_DEADLINE: Duration = Duration::from_secs(5);

/// Queued records examined per group and round.
const BATCH: usize = 100;

/// The corrector's memory between rounds: since when each orphaned started job has been
/// seen without a live owner.
#[derive(Debug)]
pub struct Corrector {
    bound: Duration,
    orphaned_since: HashMap<String, Instant>,
}

impl Corrector {
    /// A corrector that repairs what stayed stuck longer than `bound`.
    pub fn new(bound: Duration) -> Corrector {
        Corrector {
            bound,
            orphaned_since: HashMap::new(),
        }
    }

    /// One round over every configured group.
    pub async fn run(&mut self, state: &AppState) -> Result<(), CorrectorError> {
        let groups: Vec<String> = state.config.groups.keys().cloned().collect();
        let mut orphans = Vec::new();
        for group in &groups {
            self.correct_queued(state, group).await?;
            self.publish_owed(state, group).await?;
            orphans.extend(
                state
                    .coordinator
                    .orphaned(group)
                    .await?
                    .into_iter()
                    .map(|orphan| (group, orphan)),
            );
        }
        let now = Instant::now();
        let mut seen = HashMap::with_capacity(orphans.len());
        for (group, orphan) in orphans {
            let id = orphan.id().to_string();
            let since = self.orphaned_since.get(&id).copied().unwrap_or(now);
            if now.duration_since(since) >= self.bound {
                match orphan {
                    Orphan::OwnerDead(id) => self.republish_started(state, group, &id).await?,
                    Orphan::Unlisted { id, worker, attempt } => {
                        self.release_unlisted(state, group, &id, (&worker, attempt))
                            .await?
                    }
                }
                seen.insert(id, now);
            } else {
                seen.insert(id, since);
            }
        }
        // Jobs that found an owner or ended meanwhile are forgotten.
        self.orphaned_since = seen;
        Ok(())
    }

    /// Republishes the group's jobs queued longer than the bound while its queue is empty:
    /// their message is nowhere the group's workers can reach. (While the queue holds jobs
    /// nothing is done: a backlog is not a loss, and the message may still be in it.)
    async fn correct_queued(&self, state: &AppState, group: &str) -> Result<(), CorrectorError> {
        let before = jobfleet_common::now_ms() - self.bound.as_millis() as i64;
        let ids = state.coordinator.queued_before(group, before, BATCH).await?;
        if ids.is_empty() || queue_depth(state, group).await? > 0 {
            return Ok(());
        }
        for id in ids {
            let Some(record) = state.coordinator.job_in(group, &id).await? else {
                continue;
            };
            if record.status == JobStatus::Queued {
                republish(state, &record, false).await?;
                count(state, group, "queued");
            }
        }
        Ok(())
    }

    /// Publishes the results the master has owed longer than the bound.
    async fn publish_owed(&self, state: &AppState, group: &str) -> Result<(), CorrectorError> {
        let before = jobfleet_common::now_ms() - self.bound.as_millis() as i64;
        for record in state.coordinator.owed_before(group, before, BATCH).await? {
            warn!(job_id = %record.id, group, status = %record.status, "corrector: publishing an owed result");
            announce(state, &record).await;
            count(state, group, "owed");
        }
        Ok(())
    }

    /// Sends a started job its live owner does not run back to queued (fenced by that
    /// owner and attempt, so an attempt that ended meanwhile keeps its outcome) and
    /// republishes it. Its owner recorded the end of the attempt on a primary a failover
    /// lost, and published its result: the job runs once more, with the same args.
    async fn release_unlisted(
        &self,
        state: &AppState,
        group: &str,
        id: &str,
        (worker, attempt): (&str, u32),
    ) -> Result<(), CorrectorError> {
        let Some(record) = state.coordinator.job_in(group, id).await? else {
            return Ok(());
        };
        let job = record.to_job_message();
        let key = AttemptKey {
            job: &job,
            worker_id: worker,
            attempt,
        };
        if state.coordinator.requeue(key).await? {
            warn!(job_id = %id, group, worker, attempt, "corrector: a started job its live owner does not run");
            republish(state, &record, false).await?;
            count(state, group, "unlisted");
        }
        Ok(())
    }

    /// Republishes an orphaned started job as a parked copy, which may take the job over
    /// from its dead owner.
    async fn republish_started(&self, state: &AppState, group: &str, id: &str) -> Result<(), CorrectorError> {
        let Some(record) = state.coordinator.job_in(group, id).await? else {
            return Ok(());
        };
        if record.status == JobStatus::Started {
            republish(state, &record, true).await?;
            count(state, group, "started");
        }
        Ok(())
    }
}

/// Publishes the job of `record` again; `takeover` marks it as a parked copy.
async fn republish(state: &AppState, record: &JobRecord, takeover: bool) -> Result<(), CorrectorError> {
    let job = record.to_job_message();
    let mut properties = persistent_properties(&job.id, None);
    if takeover {
        let mut headers = FieldTable::default();
        headers.insert(HOLD_HEADER.into(), AMQPValue::LongString("corrector".into()));
        properties = properties.with_headers(headers);
    }
    warn!(job_id = %job.id, group = %job.group, status = %record.status, "corrector: republishing a stranded job");
    let published = async {
        let channel = state.publisher.get().await?;
        let sent = publish_job(&channel, &state.topology, &job, properties).await;
        if sent.is_err() {
            state.publisher.invalidate().await;
        }
        sent
    };
    match tokio::time::timeout(REPUBLISH_DEADLINE, published).await {
        Ok(sent) => Ok(sent?),
        Err(_) => Err(CorrectorError::Unconfirmed),
    }
}

fn count(state: &AppState, group: &str, kind: &str) {
    state
        .metrics
        .jobs_corrected
        .with_label_values(&[group, kind])
        .inc();
}
