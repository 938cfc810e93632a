//! One job attempt: a claimed delivery run in its sandbox, then finished (outcome recorded,
//! result published, delivery acknowledged), sent back for a retry, or released when the
//! worker is forced to stop. Holds whether the delivery was handed off to a parked copy.

use crate::activity::ActivityRecorder;
use crate::consumer::{Handled, Shared, Unrecorded};
use crate::copy::Target;
use crate::delivery::ack;
use crate::error::CopyError;
use crate::execute::Resolved;
use crate::failpoint;
use crate::function::HandlerResult;
use crate::metrics::FunctionMetrics;
use jobfleet_common::coordinator::{
    AttemptKey, CompleteRequest, Completion, JobRecord, Outcome, RetryRequest,
};
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus, Membership, ResultMessage};
use jobfleet_common::now_ms;
use jobfleet_common::topology::RETRY_HEADER;
use jobfleet_common::trace::TraceParent;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Room for the envelope (id, names, timestamps) around `max_args_bytes`.
const ENVELOPE_BYTES: usize = 16 * 1024;

/// When and as which attempt a job started here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    /// The attempt number (1 on the first start).
    pub(crate) attempt: u32,
    /// When the job was submitted: as recorded, else as its message says.
    pub(crate) submitted_at: Option<i64>,
    /// When the attempt was claimed, unix ms.
    pub(crate) started_at: i64,
}

/// The names a result message carries: the job's id, group and function, and the
/// workflow or batch it belongs to (none for an undecodable message).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobNames<'a> {
    pub(crate) id: &'a str,
    pub(crate) group: &'a str,
    pub(crate) function: &'a str,
    pub(crate) member: Option<&'a Membership>,
}

impl<'a> From<&'a JobMessage> for JobNames<'a> {
    fn from(job: &'a JobMessage) -> Self {
        JobNames {
            id: &job.id,
            group: &job.group,
            function: &job.function,
            member: Some(&job.member),
        }
    }
}

/// The result message of a job this worker ended: the one place the worker assembles one.
/// `start` is `None` for a message that never ran (an undecodable one).
pub(crate) fn result_message(
    job: JobNames<'_>,
    worker: &str,
    outcome: Outcome,
    start: Option<Start>,
    finished_at: i64,
) -> ResultMessage {
    ResultMessage {
        id: job.id.to_string(),
        group: job.group.to_string(),
        function: job.function.to_string(),
        status: outcome.status,
        result: outcome.result,
        error: outcome.error,
        attempts: start.map_or(0, |s| s.attempt),
        worker: worker.to_string(),
        submitted_at: start.and_then(|s| s.submitted_at),
        started_at: start.map(|s| s.started_at),
        finished_at,
        duration_ms: start.map(|_| outcome.duration_ms),
        member: job.member.cloned().unwrap_or_default(),
    }
}

/// One delivery being worked on: the job a claim started here, until its delivery is
/// settled.
pub(crate) struct Attempt<'a> {
    shared: &'a Shared,
    delivery: &'a Delivery,
    job: &'a JobMessage,
    /// The job's own trace context, passed on to its sandbox and its result.
    trace: Option<&'a TraceParent>,
    start: Start,
    /// The delivery was acknowledged and a parked copy stands in for it (a long job past
    /// the hand-off time): nothing acknowledges or hands back the delivery any more.
    handed_off: bool,
    metrics: &'a FunctionMetrics,
}

impl<'a> Attempt<'a> {
    /// The attempt a claim started for `job` from `delivery`.
    pub(crate) fn new(
        shared: &'a Shared,
        delivery: &'a Delivery,
        job: &'a JobMessage,
        trace: Option<&'a TraceParent>,
        start: Start,
    ) -> Self {
        Attempt {
            shared,
            delivery,
            job,
            trace,
            start,
            handed_off: false,
            metrics: shared.metrics.function(&job.group, &job.function),
        }
    }

    /// Runs the attempt to its end and settles its delivery.
    pub(crate) async fn run(mut self) -> Handled {
        let attempts = self.start.attempt;
        tracing::Span::current().record("attempt", attempts);
        if attempts > 1 {
            warn!(attempts, "running a redelivered job again");
        }
        let stop = self.shared.track_running(&self.job.id);
        let running = self.metrics.start(self.queued());
        let started = Instant::now();
        let Some(result) = self.execute(&stop).await else {
            return self.release().await;
        };
        drop(running);
        let elapsed = started.elapsed();
        let outcome = outcome_of(result, elapsed.as_millis() as u64);
        self.metrics.executed(elapsed, outcome.error.as_ref());
        // The job stays listed as running here until its outcome is settled: a copy of its
        // message arriving meanwhile (parked or redelivered) is parked, not run again.
        failpoint::pause(failpoint::BEFORE_SETTLE).await;
        let (shared, id) = (self.shared, self.job.id.clone());
        let handled = match self.retry_plan(&outcome) {
            Some((error, delay)) => self.retry(error, delay).await,
            None => self.finish(outcome).await,
        };
        shared.untrack_running(&id);
        handled
    }

    /// Queue time is submission to the first start; a retry's wait is not queueing.
    fn queued(&self) -> Option<Duration> {
        let Start {
            attempt,
            submitted_at,
            started_at,
        } = self.start;
        submitted_at
            .filter(|_| attempt == 1)
            .map(|at| Duration::from_millis(started_at.saturating_sub(at).max(0) as u64))
    }

    /// Runs the job in its sandbox until it ends; `None` when the worker is forced to stop
    /// first. A long job hands its delivery off meanwhile.
    async fn execute(&mut self, stop: &CancellationToken) -> Option<HandlerResult> {
        let resolved = match self.resolve() {
            Ok(resolved) => resolved,
            Err(error) => return Some(Err(error)),
        };
        let shared = self.shared;
        let (job, attempt) = (self.job, self.start.attempt);
        let recorder = ActivityRecorder::start(shared.coordinator.clone(), &job.group, &job.id, attempt);
        let context = recorder.context();
        let execution = resolved.run(job, attempt, stop, self.trace, &context);
        tokio::pin!(execution);
        let handoff = tokio::time::sleep(shared.long_job_handoff);
        tokio::pin!(handoff);
        let result = loop {
            tokio::select! {
                result = &mut execution => break Some(result),
                _ = shared.force_stop.cancelled() => break None,
                _ = &mut handoff, if !self.handed_off => {
                    self.hand_off().await;
                    if !self.handed_off {
                        handoff.as_mut().reset(Instant::now() + shared.hold_delay);
                    }
                }
            }
        };
        // Its progress and log lines are stored before its outcome.
        recorder.finish().await;
        result
    }

    /// The job's function, ready to run, or the error that ends the attempt unrun.
    fn resolve(&self) -> Result<Resolved, JobError> {
        let size = self.delivery.data.len();
        if size > self.shared.max_args_bytes + ENVELOPE_BYTES {
            return Err(JobError::new(
                ErrorKind::TooLarge,
                format!(
                    "the message has {size} bytes; args may have at most {}",
                    self.shared.max_args_bytes
                ),
            ));
        }
        self.shared.resolve(self.job)
    }

    /// A long job must not hold its delivery past the broker's consumer_timeout: a parked
    /// copy stands in for it from now on. When the copy cannot be placed the delivery stays
    /// as it is (the job still runs on it), and the handoff is tried again later.
    async fn hand_off(&mut self) {
        // Marked first: from the moment the delivery is parked, the parked copy must wait for
        // this attempt's result to be published (if the mark fails, no handoff this time).
        let marked = self
            .shared
            .with_redis(|| self.shared.coordinator.mark_handoff(self.key()))
            .await;
        if marked.is_err() {
            return;
        }
        match self.shared.park_hold_copy(self.delivery, self.job).await {
            Ok(()) => {
                ack(self.delivery).await;
                self.handed_off = true;
            }
            Err(e) => warn!(error = %e, "could not hand a long job's delivery off; trying again"),
        }
    }

    /// Forced to stop: the job goes back to queued and its delivery back to the queue (once
    /// handed off, the parked copy brings the job back).
    async fn release(self) -> Handled {
        self.shared.untrack_running(&self.job.id);
        let _ = self.requeue().await;
        self.give_back().await
    }

    /// The job's record was lost in a Redis failover: the job goes back to the queue, and
    /// its next claim records it again and runs it (this outcome was never recorded, so no
    /// result of it was published).
    async fn rerun_lost(&self) -> Handled {
        warn!("the job's record is gone (lost in a Redis failover); handing the job back to run again");
        self.give_back().await
    }

    /// Hands the delivery back to the queue; handed off, the parked copy brings the job
    /// back instead.
    async fn give_back(&self) -> Handled {
        if self.handed_off {
            Handled::HandedBack
        } else {
            self.shared.hand_back(self.delivery).await
        }
    }

    /// The error to retry and the back-off before the next attempt, when the failure is
    /// retryable and the function has retries left.
    fn retry_plan<'o>(&self, outcome: &'o Outcome) -> Option<(&'o JobError, Duration)> {
        let error = outcome.error.as_ref().filter(|e| e.kind.is_retryable())?;
        let attempt = self.start.attempt;
        let function = self
            .shared
            .config
            .function(&self.job.group, &self.job.function)
            .filter(|f| attempt <= f.max_retries)?;
        Some((error, function.retry_delay(attempt)))
    }

    /// Sends the failed attempt back for a retry: records it as queued, parks a copy of the
    /// job in the delay queue for `delay` (no worker slot is held meanwhile), then
    /// acknowledges the delivery.
    async fn retry(self, error: &JobError, delay: Duration) -> Handled {
        match self.record_retry(error, delay).await {
            Ok(Completion::Recorded) => {}
            Ok(Completion::Stale(_)) => return self.settle(Handled::Dropped).await,
            Ok(Completion::Announce(record)) => return self.announce(&record).await,
            Ok(Completion::Lost) => return self.rerun_lost().await,
            Err(why) => return self.unrecorded(why).await,
        }
        let delay_ms = delay.as_millis() as u64;
        warn!(attempt = self.start.attempt, delay_ms, error = %error, "attempt failed; retrying after a back-off");
        match self.park_for_retry(delay_ms).await {
            Ok(()) => self.settle(Handled::Ran).await,
            Err(e) => {
                warn!(error = %e, "could not park the retry copy");
                if self.handed_off {
                    // The parked copy comes back and runs it.
                    Handled::LeftUnacked
                } else {
                    // The job is queued in Redis; its redelivered message runs it at once.
                    self.shared.hand_back(self.delivery).await
                }
            }
        }
    }

    /// Parks a copy of the job in its group's delay queue for `delay_ms`.
    async fn park_for_retry(&self, delay_ms: u64) -> Result<(), CopyError> {
        let target = Target::Delay {
            group: &self.job.group,
            delay_ms,
        };
        let attempt = (RETRY_HEADER, self.start.attempt.to_string());
        self.shared.copy(self.delivery, target, attempt).await
    }

    /// Records the outcome, publishes the result, then acknowledges the delivery.
    async fn finish(self, outcome: Outcome) -> Handled {
        let finished_at = now_ms();
        match self.record_outcome(&outcome, finished_at).await {
            Ok(Completion::Recorded) => {
                self.metrics.completed(outcome.status);
                let names = JobNames::from(self.job);
                let result = result_message(
                    names,
                    &self.shared.worker_id,
                    outcome,
                    Some(self.start),
                    finished_at,
                );
                self.publish(&result).await
            }
            Ok(Completion::Stale(status)) => {
                // Canceled or taken over meanwhile: whoever ended it published its result.
                if status == Some(JobStatus::Canceled) && outcome.status == JobStatus::Canceled {
                    // The master recorded the cancel; this worker carried it out.
                    self.metrics.completed(JobStatus::Canceled);
                }
                debug!(?status, "outcome discarded: the job is no longer this attempt's");
                self.settle(Handled::Dropped).await
            }
            Ok(Completion::Announce(record)) => {
                if outcome.status == JobStatus::Canceled {
                    self.metrics.completed(JobStatus::Canceled);
                }
                self.announce(&record).await
            }
            Ok(Completion::Lost) => self.rerun_lost().await,
            Err(why) => self.unrecorded(why).await,
        }
    }

    /// Publishes this attempt's result, then acknowledges the delivery. Handed off, the
    /// result is published all the same: parked copies rely on this worker for it.
    async fn publish(&self, result: &ResultMessage) -> Handled {
        if self.handed_off {
            if self.shared.publish_result_until_done(result, self.trace).await {
                // The parked copy, the job's only copy, may go now.
                let (group, id) = (&self.job.group, &self.job.id);
                let _ = self
                    .shared
                    .with_redis(|| self.shared.coordinator.mark_published(group, id))
                    .await;
            }
            return Handled::Ran;
        }
        self.shared
            .publish_then_ack(self.delivery, result, Handled::Ran, self.trace)
            .await
    }

    /// The master ended the job (a cancel) but may have died before publishing its result:
    /// publish it, mark it announced, then acknowledge.
    async fn announce(&self, record: &JobRecord) -> Handled {
        if let Some(result) = record.to_result_message() {
            if self.shared.publish_result_until_done(&result, self.trace).await {
                self.mark_announced().await;
            }
        }
        self.settle(Handled::Republished).await
    }

    /// Acknowledges the delivery unless it was handed off (its parked copy then meets the
    /// ended record and is dropped).
    async fn settle(&self, handled: Handled) -> Handled {
        if !self.handed_off {
            ack(self.delivery).await;
        }
        handled
    }

    /// Disposes of the delivery when nothing could be recorded (see
    /// [`Shared::unrecorded`]); handed off, the parked copy brings the job back.
    async fn unrecorded(&self, why: Unrecorded) -> Handled {
        if self.handed_off {
            return Handled::LeftUnacked;
        }
        self.shared.unrecorded(self.delivery, why).await
    }

    // The coordinator calls of an attempt: its outcome, its retry, its requeue, and the
    // announcement of a result the master left unpublished.

    /// The fencing key of this attempt: which attempt of which job this worker holds.
    fn key(&self) -> AttemptKey<'_> {
        AttemptKey {
            job: self.job,
            worker_id: &self.shared.worker_id,
            attempt: self.start.attempt,
        }
    }

    /// Records the outcome of this attempt and applies the group's failure policy.
    async fn record_outcome(&self, outcome: &Outcome, finished_at: i64) -> Result<Completion, Unrecorded> {
        let shared = self.shared;
        let max_failures = shared.max_failures(&self.job.group);
        shared
            .with_redis(|| {
                shared.coordinator.complete(CompleteRequest {
                    attempt: self.key(),
                    outcome,
                    max_failures,
                    now_ms: finished_at,
                })
            })
            .await
    }

    /// Records this attempt as failed with `error` and the job as queued again, available
    /// after `delay`.
    async fn record_retry(&self, error: &JobError, delay: Duration) -> Result<Completion, Unrecorded> {
        let shared = self.shared;
        let max_failures = shared.max_failures(&self.job.group);
        let available_at = now_ms() + delay.as_millis() as i64;
        shared
            .with_redis(|| {
                shared.coordinator.retry(RetryRequest {
                    attempt: self.key(),
                    error,
                    available_at_ms: available_at,
                    max_failures,
                })
            })
            .await
    }

    /// Clears the `announce` mark of a job the master ended, its result now published
    /// (best effort: a mark left over only means another publish of the same result).
    async fn mark_announced(&self) {
        let _ = self
            .shared
            .coordinator
            .announced(&self.job.group, &self.job.id)
            .await;
    }

    /// Hands the started job back to queued.
    async fn requeue(&self) -> Result<bool, Unrecorded> {
        let shared = self.shared;
        shared.with_redis(|| shared.coordinator.requeue(self.key())).await
    }
}

/// The outcome of an execution that took `duration_ms`.
fn outcome_of(result: HandlerResult, duration_ms: u64) -> Outcome {
    match result {
        Ok(value) => Outcome {
            status: JobStatus::Finished,
            result: Some(value),
            error: None,
            duration_ms,
        },
        Err(error) => Outcome {
            status: if error.kind == ErrorKind::Canceled {
                JobStatus::Canceled
            } else {
                JobStatus::Failed
            },
            result: None,
            error: Some(error),
            duration_ms,
        },
    }
}
