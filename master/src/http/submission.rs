//! Recording and publishing a submitted job so that every submit either leaves nothing
//! behind or leads to a job that ends, whatever Redis and the broker do meanwhile:
//! - a failed Redis call may have lost the reply of a submit that ran, so the submit is
//!   retried (it is idempotent by id); a record that turns out to be this request's own
//!   (still queued, same submit time) is published as if just created;
//! - when the retries run out, the request's own record, should it appear, is discarded;
//! - a job the broker never took (it blocks publishers, refused or returned it, or no
//!   channel opened) is discarded; one whose confirm did not come is kept, since its
//!   message may be queued (the monitor's run-record corrector republishes a queued record
//!   whose message is lost).

use super::error::ApiError;
use crate::state::{AppState, SharedState};
use jobfleet_common::client::{backoff, ClientError};
use jobfleet_common::coordinator::{CoordinatorError, JobRecord, NewJob, Submitted};
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_common::publish::{persistent_properties, publish_job};
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tracing::{info, warn};

/// How long a submit retries failed Redis calls before it answers 503.
pub const SUBMIT_RETRY_FOR: Duration = Duration::from_secs(5);
/// How long one attempt of a submit's Redis work may take.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(2);
/// How long a publish and its confirm may take.
pub const CONFIRM_DEADLINE: Duration = Duration::from_secs(5);
/// How long the master keeps trying to discard the record of a submit it answered 503.
const ABANDON_FOR: Duration = Duration::from_secs(600);

/// A job being submitted, with what came with it.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The validated job.
    pub job: &'a JobMessage,
    /// The caller's idempotency key.
    pub idempotency_key: Option<&'a str>,
    /// The caller's W3C trace context.
    pub traceparent: Option<&'a str>,
    /// A delayed job: it waits unpublished in its group's delayed set until this time
    /// (unix ms), and the leader publishes it (see `crate::scheduler`).
    pub delay_until: Option<i64>,
    /// The job this one retries (a bulk retry).
    pub retry_of: Option<&'a str>,
}

impl Submission<'_> {
    /// The record's fields beyond the job's own: `retry_of`, and a delayed job's
    /// `traceparent` (its message is published later, from the record).
    fn fields(&self) -> Vec<(&str, &str)> {
        let mut fields = Vec::new();
        if let Some(retry_of) = self.retry_of {
            fields.push(("retry_of", retry_of));
        }
        if let (Some(trace), Some(_)) = (self.traceparent, self.delay_until) {
            fields.push(("traceparent", trace));
        }
        fields
    }
}

/// Whether `record` is the one a submit of `job` created: still queued and never started,
/// with the submit time this request chose. A repeat by another request has its own time.
fn is_own(record: &JobRecord, job: &JobMessage) -> bool {
    record.status == JobStatus::Queued
        && record.attempts == 0
        && record.group == job.group
        && record.submitted_at == job.submitted_at
}

/// Creates the submission's queued record (see [`Submitted`]), retrying failed Redis calls
/// for [`SUBMIT_RETRY_FOR`]. When they run out, the record a lost reply may have created is
/// discarded in the background and the answer is 503.
pub async fn record(state: &SharedState, submission: Submission<'_>) -> Result<Submitted, ApiError> {
    let give_up = Instant::now() + SUBMIT_RETRY_FOR;
    let mut uncertain = false;
    let mut attempt = 0;
    loop {
        let error = match timeout(ATTEMPT_DEADLINE, attempt_record(state, submission, uncertain)).await {
            Ok(Ok(submitted)) => return Ok(submitted),
            Ok(Err(e)) if !e.is_transient() => return Err(e.into()),
            Ok(Err(e)) => {
                uncertain |= may_have_run(&e);
                ApiError::from(e)
            }
            Err(_) => {
                uncertain = true;
                ApiError::deadline("coordinator (Redis)", ATTEMPT_DEADLINE)
            }
        };
        let pause = backoff(attempt);
        if Instant::now() + pause >= give_up {
            if uncertain {
                // Redis did not answer for seconds: look for the record in the background.
                abandon_later(state, submission);
            }
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// Whether a failed call may have reached Redis, so its script may have run (or may still
/// run) with the reply lost: anything but a connection that never opened.
fn may_have_run(e: &CoordinatorError) -> bool {
    match e {
        CoordinatorError::Pool(_) => false,
        CoordinatorError::Redis(e) => !e.is_connection_refusal(),
        _ => true,
    }
}

/// One submit attempt. After an uncertain one, an existing record of this id that is this
/// request's own counts as created.
async fn attempt_record(
    state: &AppState,
    submission: Submission<'_>,
    uncertain: bool,
) -> Result<Submitted, CoordinatorError> {
    let job = submission.job;
    let priority = job.priority.map(|p| p.to_string());
    let mut fields = submission.fields();
    if let Some(priority) = &priority {
        // Kept for the copies published from the record (a delayed job, the corrector).
        fields.push(("priority", priority));
    }
    let new = NewJob {
        job,
        idempotency_key: submission.idempotency_key,
        delay_until: submission.delay_until,
        fields: &fields,
    };
    match state.coordinator.submit_job(new).await? {
        Submitted::Existing(id) if uncertain && id == job.id => {
            match state.coordinator.job_in(&job.group, &id).await? {
                Some(record) if is_own(&record, job) => {
                    info!(job_id = %id, "a submit's lost reply had created the job; publishing it");
                    Ok(Submitted::Created)
                }
                _ => Ok(Submitted::Existing(id)),
            }
        }
        submitted => Ok(submitted),
    }
}

/// Why a publish failed: whether the broker may hold the message.
enum PublishFailure {
    /// Nothing was queued: the record can go.
    NotSent(ApiError),
    /// The message may be queued: the record stays.
    Unconfirmed(ApiError),
}

/// Publishes the submission's job with a confirm under [`CONFIRM_DEADLINE`]. If the broker
/// never took it, the record is discarded; if its confirm did not come, the record stays
/// and the answer says the job may still run.
pub async fn publish(state: &SharedState, submission: Submission<'_>) -> Result<(), ApiError> {
    match try_publish(state, submission).await {
        Ok(()) => Ok(()),
        Err(PublishFailure::NotSent(e)) => {
            abandon(state, submission).await;
            Err(e)
        }
        Err(PublishFailure::Unconfirmed(e)) => {
            warn!(job_id = %submission.job.id, error = %e, "publish unconfirmed; the record stays");
            Err(ApiError::unconfirmed(&submission.job.id, e))
        }
    }
}

async fn try_publish(state: &AppState, submission: Submission<'_>) -> Result<(), PublishFailure> {
    // A blocked connection sends nothing until the alarm clears: do not queue behind it.
    if state.publisher.blocked().await {
        return Err(PublishFailure::NotSent(ApiError::broker_blocked()));
    }
    let channel = match timeout(CONFIRM_DEADLINE, state.publisher.get()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(PublishFailure::NotSent(e.into())),
        Err(_) => {
            return Err(PublishFailure::NotSent(ApiError::deadline(
                "broker (RabbitMQ)",
                CONFIRM_DEADLINE,
            )))
        }
    };
    let job = submission.job;
    let properties = persistent_properties(&job.id, submission.traceparent);
    let sent = publish_job(&channel, &state.topology, job, properties);
    match timeout(CONFIRM_DEADLINE, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e @ ClientError::Nacked(_))) => {
            // The channel may be what refuses (see `ClientError::is_retryable`): the next
            // submit gets a fresh one.
            state.publisher.invalidate().await;
            Err(PublishFailure::NotSent(e.into()))
        }
        Ok(Err(e @ ClientError::Unroutable { .. })) => Err(PublishFailure::NotSent(e.into())),
        Ok(Err(e)) => {
            if e.is_connection_error() {
                state.publisher.invalidate().await;
            }
            Err(PublishFailure::Unconfirmed(e.into()))
        }
        Err(_) => {
            // A channel whose confirms stall is replaced, as one that refuses is.
            state.publisher.invalidate().await;
            Err(PublishFailure::Unconfirmed(ApiError::deadline(
                "broker (RabbitMQ)",
                CONFIRM_DEADLINE,
            )))
        }
    }
}

/// Discards the submission's record if it is this request's own: at once when Redis
/// answers, else [`abandon_later`].
async fn abandon(state: &SharedState, submission: Submission<'_>) {
    let (job, key) = (submission.job, submission.idempotency_key);
    if let Ok(Ok(())) = timeout(ATTEMPT_DEADLINE, discard_own(state, job, key)).await {
        return;
    }
    abandon_later(state, submission);
}

/// Discards the submission's record, if it is this request's own, from a background task
/// that keeps trying for [`ABANDON_FOR`] while Redis does not answer.
fn abandon_later(state: &SharedState, submission: Submission<'_>) {
    let (job, key) = (submission.job, submission.idempotency_key);
    let (state, job, key) = (state.clone(), job.clone(), key.map(String::from));
    tokio::spawn(async move {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match timeout(ATTEMPT_DEADLINE, discard_own(&state, &job, key.as_deref())).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) if !e.is_transient() => {
                    warn!(job_id = %job.id, error = %e, "cannot discard a refused submit's record");
                    return;
                }
                _ if started.elapsed() >= ABANDON_FOR || state.shutdown.is_cancelled() => {
                    warn!(job_id = %job.id, "gave up discarding a refused submit's record; the corrector runs it");
                    return;
                }
                _ => {}
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    });
}

/// Removes `job`'s record, index entries and idempotency key if the record is still this
/// request's own (see [`jobfleet_common::coordinator::Coordinator::discard_refused`]); a
/// record that is not (a repeat's, one answered `existing` to another request, a started
/// one) stays.
async fn discard_own(state: &AppState, job: &JobMessage, key: Option<&str>) -> Result<(), CoordinatorError> {
    if state.coordinator.discard_refused(job, key).await? {
        info!(job_id = %job.id, "discarded the record of a submit answered 503");
    }
    Ok(())
}
