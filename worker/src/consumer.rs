//! The delivery path: decode, claim, then run the job as an [`Attempt`], or drop, park or
//! republish the delivery as the claim says. Every step that can fail leaves the message
//! unacknowledged or handed back, so a crash between any two of them never loses a job,
//! and the coordinator's fencing keeps it to one outcome.

use crate::attempt::{result_message, Attempt, JobNames, Start};
use crate::control::RecentCancels;
use crate::delivery::ack;
use crate::function::FunctionRegistry;
use crate::metrics::WorkerMetrics;
use crate::sandbox::process::ProcessFunction;
use jobfleet_common::client::{self, ChannelSlot};
use jobfleet_common::codec::{self, DecodeError};
use jobfleet_common::config::{Config, GroupConfig};
use jobfleet_common::coordinator::{
    BadMessage, Claim, ClaimRequest, Coordinator, CoordinatorError, CopyKind, Deferral, JobRecord, Outcome,
};
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::now_ms;
use jobfleet_common::schema::ArgSchemas;
use jobfleet_common::topology::{header_str, Topology, HOLD_HEADER};
use jobfleet_common::trace::{TraceParent, TRACEPARENT};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::SemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn, Instrument};

/// Bodies up to this size carry their args in the claim, so a job without a record
/// (published by a foreign client) is claimed in one round trip.
const INLINE_ARGS_BYTES: usize = 16 * 1024;

/// How long a delivery that waited in vain for a slot waits for the consumers to pause
/// before it goes back (without a session to pause them, it goes back after this).
const PAUSE_WAIT: Duration = Duration::from_secs(1);

/// What every delivery task of one worker shares.
pub(crate) struct Shared {
    pub(crate) worker_id: String,
    pub(crate) topology: Topology,
    pub(crate) coordinator: Coordinator,
    pub(crate) registry: FunctionRegistry,
    /// Args schemas of the configured functions.
    pub(crate) schemas: ArgSchemas,
    /// Process functions of the worker's groups, by (group, function).
    pub(crate) processes: HashMap<(String, String), Arc<ProcessFunction>>,
    /// Claims made so far: with the worker id, a token unique per delivery.
    pub(crate) claims: AtomicU64,
    /// Delay queues declared so far (declaring is idempotent; this saves the round trip).
    pub(crate) delay_queues: Mutex<HashSet<String>>,
    pub(crate) config: Config,
    pub(crate) max_args_bytes: usize,
    pub(crate) results: ChannelSlot,
    pub(crate) hold_delay: Duration,
    /// How long a job may hold its delivery before a parked copy takes its place.
    pub(crate) long_job_handoff: Duration,
    /// Ids of the jobs this process runs now, each with the token that stops it.
    pub(crate) running: Mutex<HashMap<String, CancellationToken>>,
    /// Job slots: at most `concurrency` jobs run at once, however many groups the worker
    /// consumes (each group's consumer has a prefetch of `concurrency`) and however many
    /// long jobs handed their delivery off.
    pub(crate) slots: tokio::sync::Semaphore,
    /// How long a delivery may wait for a slot before it goes back to its queue (the hold
    /// delay): far below the broker's consumer_timeout, and short enough that another
    /// worker soon runs the job.
    pub(crate) slot_wait: Duration,
    /// Raised by a delivery that waited `slot_wait` in vain: the session pauses its group
    /// consumers until a slot frees.
    pub(crate) slot_wait_over: tokio::sync::Notify,
    /// Whether the session's group consumers are paused (canceled on the broker).
    pub(crate) paused: tokio::sync::watch::Sender<bool>,
    /// Cancelled when the drain timeout passes: running jobs are handed back.
    pub(crate) force_stop: CancellationToken,
    /// Cancels that arrived before their job registered in `running` (lock it after
    /// `running`, never before).
    pub(crate) recent_cancels: Mutex<RecentCancels>,
    /// The worker's Prometheus metrics.
    pub(crate) metrics: Arc<WorkerMetrics>,
}

/// How a delivery ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// The job ran here (finished, failed or sent back for a retry).
    Ran,
    /// The message was dropped: a duplicate, stale, or dead-lettered.
    Dropped,
    /// A delayed job met before its time, or one flow control holds back, waits in its
    /// group's delayed or held set; the message was acknowledged.
    Deferred,
    /// A copy was parked in the delay queue.
    Held,
    /// An ended job's result was published again.
    Republished,
    /// The delivery went back to its queue.
    HandedBack,
    /// The delivery is left unacknowledged: the broker or a parked copy brings it back.
    LeftUnacked,
}

/// Why a coordinator call recorded nothing.
#[derive(Debug)]
pub(crate) enum Unrecorded {
    /// The worker is forced to stop while Redis is unreachable: hand the delivery back.
    Stopping,
    /// The coordinator refused the call for good: dead-letter the delivery, or it would
    /// come back forever.
    Refused(CoordinatorError),
}

impl Shared {
    /// Handles one delivery to the end.
    pub(crate) async fn handle(&self, delivery: Delivery) {
        if delivery.redelivered {
            self.metrics.redelivered(delivery.routing_key.as_str());
        }
        let content_type = delivery.properties.content_type().as_ref().map(|c| c.as_str());
        let job = match codec::decode_job(content_type, &delivery.data, Some(delivery.routing_key.as_str())) {
            Ok(job) => job,
            Err(e) => {
                self.reject_undecodable(&delivery, e).await;
                return;
            }
        };
        let trace = continued_trace(&delivery);
        let span = job_span(&job, trace.as_ref());
        let handled = self
            .dispatch(&delivery, &job, trace.as_ref())
            .instrument(span)
            .await;
        debug!(job_id = %job.id, ?handled, "delivery handled");
    }

    /// A job slot for `delivery`, or how the delivery was disposed of instead: back to its
    /// queue, because no slot freed within `slot_wait` or the worker is forced to stop. The
    /// group consumers are paused before such a hand-back, so the broker gives the job to
    /// another worker rather than straight back to this one.
    async fn wait_for_slot(&self, delivery: &Delivery) -> Result<SemaphorePermit<'_>, Handled> {
        tokio::select! {
            slot = self.slots.acquire() => return slot.map_err(|_| Handled::LeftUnacked),
            _ = tokio::time::sleep(self.slot_wait) => {
                debug!("no job slot freed in time; handing the delivery back");
                self.slot_wait_over.notify_one();
                let mut paused = self.paused.subscribe();
                let _ = tokio::time::timeout(PAUSE_WAIT, paused.wait_for(|paused| *paused)).await;
            }
            _ = self.force_stop.cancelled() => {}
        }
        Err(self.hand_back(delivery).await)
    }

    /// Claims the delivered job, once it has a job slot, and does what the claim says: run
    /// it, drop a duplicate, park a copy another worker owns, or republish an ended job's
    /// result.
    async fn dispatch(&self, delivery: &Delivery, job: &JobMessage, trace: Option<&TraceParent>) -> Handled {
        if let Some(handled) = self.defer_early(delivery, job).await {
            return handled;
        }
        let copy = copy_kind(delivery);
        if copy != CopyKind::Fresh && self.is_running(&job.id) {
            // A copy of a job running here (parked, or back after our channel broke): held
            // again at once, without waiting for the slot its own job holds.
            return self.hold(delivery, job).await;
        }
        let _slot = match self.wait_for_slot(delivery).await {
            Ok(slot) => slot,
            Err(handled) => return handled,
        };
        let started_at = now_ms();
        let claim = match self.claim(delivery, job, copy, started_at).await {
            Ok(claim) => claim,
            Err(why) => return self.unrecorded(delivery, why).await,
        };
        match claim {
            Claim::Run {
                attempts,
                submitted_at,
            } => {
                let start = Start {
                    attempt: attempts,
                    submitted_at: submitted_at.or(job.submitted_at),
                    started_at,
                };
                Attempt::new(self, delivery, job, trace, start).run().await
            }
            Claim::Drop(status) => {
                debug!(%status, "duplicate message dropped");
                ack(delivery).await;
                Handled::Dropped
            }
            Claim::Hold => self.hold(delivery, job).await,
            Claim::Waiting(reason) => {
                debug!(reason = reason.as_str(), "flow control holds the job back");
                self.metrics.held_back(&job.group, reason);
                ack(delivery).await;
                Handled::Deferred
            }
            Claim::Gone => {
                debug!("copy of a deleted job dropped");
                ack(delivery).await;
                Handled::Dropped
            }
            Claim::Expired => self.reject_expired(delivery).await,
            Claim::Ended(record) => self.republish(delivery, &record, trace).await,
            Claim::Missing => {
                error!("claim asked for args it was given");
                self.hand_back(delivery).await
            }
        }
    }

    /// Defers a delayed job met before its `run_at` to its group's delayed set (the leader
    /// publishes it when due) and acknowledges the message, without taking a job slot, so
    /// a delayed job never holds a delivery or the jobs behind it. `None`: the job is due,
    /// or not queued any more, and is claimed as usual.
    async fn defer_early(&self, delivery: &Delivery, job: &JobMessage) -> Option<Handled> {
        let now = now_ms();
        let run_at = job.due_at(now).filter(|&at| at > now)?;
        match self.with_redis(|| self.coordinator.defer(job, run_at, now)).await {
            Ok(Deferral::Delayed) => {
                debug!(run_at, "delayed job deferred until its time");
                ack(delivery).await;
                Some(Handled::Deferred)
            }
            Ok(Deferral::Claim) => None,
            Err(why) => Some(self.unrecorded(delivery, why).await),
        }
    }

    /// Claims the job for this worker; asks again with the args when the job has no
    /// record yet and the first claim left them out.
    async fn claim(
        &self,
        delivery: &Delivery,
        job: &JobMessage,
        copy: CopyKind,
        now: i64,
    ) -> Result<Claim, Unrecorded> {
        let token = format!(
            "{}:{}",
            self.worker_id,
            self.claims.fetch_add(1, Ordering::Relaxed)
        );
        let mut with_args = delivery.data.len() <= INLINE_ARGS_BYTES;
        let limits = self
            .config
            .group(&job.group)
            .map(GroupConfig::limits)
            .unwrap_or_default();
        loop {
            let claim = self
                .with_redis(|| {
                    self.coordinator.claim(ClaimRequest {
                        job,
                        worker_id: &self.worker_id,
                        copy,
                        with_args,
                        now_ms: now,
                        token: &token,
                        max_takeovers: self.max_takeovers(&job.group),
                        max_failures: self.max_failures(&job.group),
                        limits: &limits,
                    })
                })
                .await?;
            match claim {
                Claim::Missing if !with_args => with_args = true,
                claim => return Ok(claim),
            }
        }
    }

    /// Publishes the result of a job that already ended, then acknowledges; a job not
    /// ended after all is dropped.
    async fn republish(
        &self,
        delivery: &Delivery,
        record: &JobRecord,
        trace: Option<&TraceParent>,
    ) -> Handled {
        match record.to_result_message() {
            Some(result) => {
                self.publish_then_ack(delivery, &result, Handled::Republished, trace)
                    .await
            }
            None => {
                ack(delivery).await;
                Handled::Dropped
            }
        }
    }

    /// Dead-letters a job that has no record and was submitted longer than the retention
    /// ago: it may have ended long since (its record expired), so it must not run.
    async fn reject_expired(&self, delivery: &Delivery) -> Handled {
        let reason = "expired: no record and submitted longer than the retention ago; it may have \
                      ended already, so it is not run"
            .to_string();
        warn!("dead-lettering a job older than the retention");
        let placed = self.dead_letter(delivery, reason).await;
        self.settle_copied(delivery, placed, Handled::Dropped).await
    }

    /// Dead-letters an undecodable message with its reason, and records the job as failed
    /// with `bad_message` when its id could be read.
    async fn reject_undecodable(&self, delivery: &Delivery, e: DecodeError) {
        warn!(reason = %e.reason, id = ?e.id, "dead-lettering an undecodable message");
        if let Err(publish_error) = self.dead_letter(delivery, e.reason.clone()).await {
            warn!(error = %publish_error, "could not dead-letter");
            self.hand_back(delivery).await;
            return;
        }
        if let Some(id) = &e.id {
            if !self.fail_bad_message(delivery, id, &e).await {
                // Stopping: the message comes back and is dead-lettered again (a duplicate
                // in NS.dead beats a lost reason).
                self.hand_back(delivery).await;
                return;
            }
        }
        ack(delivery).await;
    }

    /// Records the job `id` of an undecodable message as failed with `bad_message` and,
    /// like every ended job, gives it a result message. `false` when forced to stop first.
    async fn fail_bad_message(&self, delivery: &Delivery, id: &str, e: &DecodeError) -> bool {
        let group = delivery.routing_key.as_str();
        let function = e.function.as_deref().unwrap_or(crate::metrics::UNKNOWN_LABEL);
        let finished_at = now_ms();
        let recorded = self
            .with_redis(|| {
                self.coordinator.record_bad_message(BadMessage {
                    id,
                    group,
                    function,
                    reason: &e.reason,
                    now_ms: finished_at,
                })
            })
            .await;
        match recorded {
            Ok(true) => {
                let outcome = Outcome {
                    status: JobStatus::Failed,
                    result: None,
                    error: Some(JobError::new(ErrorKind::BadMessage, e.reason.clone())),
                    duration_ms: 0,
                };
                let names = JobNames {
                    id,
                    group,
                    function,
                    member: None,
                };
                let result = result_message(names, &self.worker_id, outcome, None, finished_at);
                self.publish_result_until_done(&result, None).await
            }
            Ok(false) | Err(Unrecorded::Refused(_)) => true,
            Err(Unrecorded::Stopping) => false,
        }
    }

    /// Stops the running job `id` (its outcome becomes `canceled`); `false` when it does
    /// not run here, in which case the cancel is remembered briefly in case the job is
    /// between its claim and its start.
    pub(crate) fn cancel_running(&self, id: &str) -> bool {
        let running = self.running.lock().expect("running set");
        match running.get(id) {
            Some(stop) => {
                stop.cancel();
                true
            }
            None => {
                self.recent_cancels.lock().expect("recent cancels").remember(id);
                false
            }
        }
    }

    /// Lists the job `id` as running here and returns the token that stops it; a cancel
    /// that overtook the job between its claim and now stops it at once.
    pub(crate) fn track_running(&self, id: &str) -> CancellationToken {
        let stop = CancellationToken::new();
        let mut running = self.running.lock().expect("running set");
        running.insert(id.to_string(), stop.clone());
        // Still under the running lock: a cancel cannot fall between the two.
        if self.recent_cancels.lock().expect("recent cancels").take(id) {
            stop.cancel();
        }
        stop
    }

    /// Removes the job `id` from the jobs running here.
    pub(crate) fn untrack_running(&self, id: &str) {
        self.running.lock().expect("running set").remove(id);
    }

    fn is_running(&self, id: &str) -> bool {
        self.running.lock().expect("running set").contains_key(id)
    }

    /// Consecutive failures after which the group's failure policy acts.
    pub(crate) fn max_failures(&self, group: &str) -> u32 {
        self.config.group(group).map(|g| g.max_failures).unwrap_or(5)
    }

    /// How often a job of `group` may be taken over from a dead worker.
    fn max_takeovers(&self, group: &str) -> u32 {
        self.config.group(group).map(|g| g.max_takeovers).unwrap_or(3)
    }

    /// Runs a Redis call, retrying while Redis is unreachable, until it answers or the
    /// worker is forced to stop.
    pub(crate) async fn with_redis<T, F, Fut>(&self, call: F) -> Result<T, Unrecorded>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CoordinatorError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                // Anything a retry can fix is retried (MISCONF, NOAUTH, timeouts too): a job
                // that ran must get its outcome recorded once Redis is back.
                Err(e) if e.is_transient() => {
                    warn!(error = %e, "redis call failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(client::backoff(attempt)) => {}
                        _ = self.force_stop.cancelled() => return Err(Unrecorded::Stopping),
                    }
                    attempt += 1;
                }
                Err(e) => {
                    error!(error = %e, "coordinator call failed");
                    return Err(Unrecorded::Refused(e));
                }
            }
        }
    }
}

/// How the message reached this worker: parked, redelivered or fresh.
fn copy_kind(delivery: &Delivery) -> CopyKind {
    if header_str(delivery.properties.headers().as_ref(), HOLD_HEADER).is_some() {
        CopyKind::Parked
    } else if delivery.redelivered {
        CopyKind::Redelivered
    } else {
        CopyKind::Fresh
    }
}

/// The producer's trace continues here: the job's own context, a child of the message's
/// `traceparent`, goes on to the result and the sandbox.
fn continued_trace(delivery: &Delivery) -> Option<TraceParent> {
    header_str(delivery.properties.headers().as_ref(), TRACEPARENT)
        .and_then(|t| TraceParent::parse(&t))
        .map(|parent| parent.child())
}

/// The span of one job's handling, carrying the producer's trace id.
fn job_span(job: &JobMessage, trace: Option<&TraceParent>) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = %job.id,
        group = %job.group,
        function = %job.function,
        attempt = tracing::field::Empty,
        trace_id = trace.map(|t| t.trace_id.as_str()),
        span_id = trace.map(|t| t.parent_id.as_str()),
    )
}
