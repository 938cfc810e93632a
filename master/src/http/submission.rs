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
//!
//! A batch (`POST /v1/jobs/batch`) goes the same way, every step for all its jobs at once:
//! one pipelined Redis round trip records them all, and their messages are all sent before
//! their confirms are awaited together. The single submit is a batch of one.

use super::error::ApiError;
use crate::state::{AppState, SharedState};
use futures::future::join_all;
use jobfleet_common::client::{backoff, ClientError};
use jobfleet_common::coordinator::{CoordinatorError, JobRecord, NewJob, Submitted};
use jobfleet_common::lapin::Channel;
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_common::publish::{persistent_properties, publish_batch};
use std::collections::HashSet;
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
    /// The record's fields beyond the job's own: `retry_of`, a delayed job's `traceparent`
    /// (its message is published later, from the record), and `priority` (kept for the
    /// copies published from the record: a delayed job, the corrector) as given.
    fn fields<'a>(&self, priority: &'a Option<String>) -> Vec<(&'a str, &'a str)>
    where
        Self: 'a,
    {
        let mut fields = Vec::new();
        if let Some(retry_of) = self.retry_of {
            fields.push(("retry_of", retry_of));
        }
        if let (Some(trace), Some(_)) = (self.traceparent, self.delay_until) {
            fields.push(("traceparent", trace));
        }
        if let Some(priority) = priority {
            fields.push(("priority", priority.as_str()));
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
    one(record_all(state, &[submission]).await?)
}

/// [`record`] for many submissions, in one pipelined round trip per attempt: each one's
/// answer, in order. A failure of Redis fails them all.
pub async fn record_all(
    state: &SharedState,
    submissions: &[Submission<'_>],
) -> Result<Vec<Submitted>, ApiError> {
    let give_up = Instant::now() + SUBMIT_RETRY_FOR;
    let mut uncertain = false;
    let mut attempt = 0;
    loop {
        let error = match timeout(ATTEMPT_DEADLINE, attempt_record(state, submissions, uncertain)).await {
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
                // Redis did not answer for seconds: look for the records in the background.
                abandon_later(state, submissions);
            }
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// The only answer of a batch of one.
pub(super) fn one<T>(answers: Vec<T>) -> Result<T, ApiError> {
    answers
        .into_iter()
        .next()
        .ok_or_else(|| CoordinatorError::Corrupt("a submit without an answer".into()).into())
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

/// One submit attempt for all `submissions`. After an uncertain one, an existing record of
/// a job's id that is this request's own counts as created (for the first job of the
/// batch with that id only: a later one with the same id is a repeat).
async fn attempt_record(
    state: &AppState,
    submissions: &[Submission<'_>],
    uncertain: bool,
) -> Result<Vec<Submitted>, CoordinatorError> {
    let priorities: Vec<Option<String>> = submissions
        .iter()
        .map(|s| s.job.priority.map(|p| p.to_string()))
        .collect();
    let fields: Vec<Vec<(&str, &str)>> = submissions
        .iter()
        .zip(&priorities)
        .map(|(s, priority)| s.fields(priority))
        .collect();
    let news: Vec<NewJob<'_>> = submissions
        .iter()
        .zip(&fields)
        .map(|(s, fields)| NewJob {
            job: s.job,
            idempotency_key: s.idempotency_key,
            delay_until: s.delay_until,
            fields,
        })
        .collect();
    let mut submitted = state.coordinator.submit_jobs(&news).await?;
    if uncertain {
        let mut seen = HashSet::new();
        let checks = submissions
            .iter()
            .zip(submitted.iter_mut())
            .filter(|(s, answer)| {
                matches!(answer, Submitted::Existing(id) if *id == s.job.id) && seen.insert(s.job.id.as_str())
            });
        let checks = checks.map(|(s, answer)| async move {
            if let Some(record) = state.coordinator.job_in(&s.job.group, &s.job.id).await? {
                if is_own(&record, s.job) {
                    info!(job_id = %s.job.id, "a submit's lost reply had created the job; publishing it");
                    *answer = Submitted::Created;
                }
            }
            Ok::<(), CoordinatorError>(())
        });
        join_all(checks).await.into_iter().collect::<Result<(), _>>()?;
    }
    Ok(submitted)
}

/// Why a publish failed: whether the broker may hold the message.
enum PublishFailure {
    /// Nothing was queued: the record can go.
    NotSent(ApiError),
    /// The message may be queued: the record stays.
    Unconfirmed(ApiError),
}

impl PublishFailure {
    /// The same failure for another job of the batch.
    fn same(&self) -> PublishFailure {
        match self {
            PublishFailure::NotSent(e) => PublishFailure::NotSent(e.same()),
            PublishFailure::Unconfirmed(e) => PublishFailure::Unconfirmed(e.same()),
        }
    }
}

/// Publishes the submission's job with a confirm under [`CONFIRM_DEADLINE`]. If the broker
/// never took it, the record is discarded; if its confirm did not come, the record stays
/// and the answer says the job may still run.
pub async fn publish(state: &SharedState, submission: Submission<'_>) -> Result<(), ApiError> {
    one(publish_all(state, &[submission]).await)?
}

/// [`publish`] for many submissions on one channel: all sent, then all confirms awaited
/// together under [`CONFIRM_DEADLINE`]. Each one's outcome, in order.
pub async fn publish_all(state: &SharedState, submissions: &[Submission<'_>]) -> Vec<Result<(), ApiError>> {
    if submissions.is_empty() {
        return Vec::new();
    }
    let outcomes = try_publish(state, submissions).await;
    let mut refused = Vec::new();
    let mut answers = Vec::with_capacity(submissions.len());
    for (submission, outcome) in submissions.iter().zip(outcomes) {
        answers.push(match outcome {
            Ok(()) => Ok(()),
            Err(PublishFailure::NotSent(e)) => {
                refused.push(*submission);
                Err(e)
            }
            Err(PublishFailure::Unconfirmed(e)) => {
                warn!(job_id = %submission.job.id, error = %e, "publish unconfirmed; the record stays");
                Err(ApiError::unconfirmed(&submission.job.id, e))
            }
        });
    }
    abandon(state, &refused).await;
    answers
}

/// Sends every submission's job and awaits their confirms: each one's outcome, in order.
async fn try_publish(state: &AppState, submissions: &[Submission<'_>]) -> Vec<Result<(), PublishFailure>> {
    let for_all = |failure: PublishFailure| for_each(failure, submissions.len());
    let channel = match open_channel(state).await {
        Ok(channel) => channel,
        Err(failure) => return for_all(failure),
    };
    let batch = submissions
        .iter()
        .map(|s| (s.job, persistent_properties(&s.job.id, s.traceparent)))
        .collect();
    match timeout(CONFIRM_DEADLINE, publish_batch(&channel, &state.topology, batch)).await {
        Ok(Ok(confirms)) => {
            let mut invalidate = false;
            let outcomes = confirms
                .into_iter()
                .map(|confirm| {
                    confirm.map_err(|e| {
                        let (failure, stale) = failure_of(e);
                        invalidate |= stale;
                        failure
                    })
                })
                .collect();
            if invalidate {
                state.publisher.invalidate().await;
            }
            outcomes
        }
        Ok(Err(e)) => {
            // A send failed: those before it may be queued, so none counts as not sent.
            let (failure, stale) = failure_of(e);
            if stale {
                state.publisher.invalidate().await;
            }
            for_all(failure)
        }
        Err(_) => {
            // A channel whose confirms stall is replaced, as one that refuses is.
            state.publisher.invalidate().await;
            let late = ApiError::deadline("broker (RabbitMQ)", CONFIRM_DEADLINE);
            for_all(PublishFailure::Unconfirmed(late))
        }
    }
}

/// `failure` for each of `count` jobs (the first keeps its backing service's error).
fn for_each(failure: PublishFailure, count: usize) -> Vec<Result<(), PublishFailure>> {
    let mut all: Vec<Result<(), PublishFailure>> = (1..count).map(|_| Err(failure.same())).collect();
    all.insert(0, Err(failure));
    all
}

/// The publishing channel, unless the broker blocks publishers or none opens in time.
async fn open_channel(state: &AppState) -> Result<Channel, PublishFailure> {
    // A blocked connection sends nothing until the alarm clears: do not queue behind it.
    if state.publisher.blocked().await {
        return Err(PublishFailure::NotSent(ApiError::broker_blocked()));
    }
    match timeout(CONFIRM_DEADLINE, state.publisher.get()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(PublishFailure::NotSent(e.into())),
        Err(_) => Err(PublishFailure::NotSent(ApiError::deadline(
            "broker (RabbitMQ)",
            CONFIRM_DEADLINE,
        ))),
    }
}

/// What a failed publish means, and whether the channel is to be replaced.
fn failure_of(e: ClientError) -> (PublishFailure, bool) {
    match e {
        // The channel may be what refuses (see `ClientError::is_retryable`): the next
        // submit gets a fresh one.
        e @ ClientError::Nacked(_) => (PublishFailure::NotSent(e.into()), true),
        e @ ClientError::Unroutable { .. } => (PublishFailure::NotSent(e.into()), false),
        e => {
            let stale = e.is_connection_error();
            (PublishFailure::Unconfirmed(e.into()), stale)
        }
    }
}

/// Discards each submission's record if it is this request's own: at once when Redis
/// answers, else [`abandon_later`].
async fn abandon(state: &SharedState, submissions: &[Submission<'_>]) {
    let tries = submissions.iter().map(|s| async move {
        let discarded = timeout(ATTEMPT_DEADLINE, discard_own(state, s.job, s.idempotency_key)).await;
        (*s, matches!(discarded, Ok(Ok(()))))
    });
    let left: Vec<Submission<'_>> = join_all(tries)
        .await
        .into_iter()
        .filter(|(_, discarded)| !discarded)
        .map(|(s, _)| s)
        .collect();
    abandon_later(state, &left);
}

/// Discards each submission's record, if it is this request's own, from a background task
/// that keeps trying for [`ABANDON_FOR`] while Redis does not answer.
fn abandon_later(state: &SharedState, submissions: &[Submission<'_>]) {
    if submissions.is_empty() {
        return;
    }
    let mut left: Vec<(JobMessage, Option<String>)> = submissions
        .iter()
        .map(|s| (s.job.clone(), s.idempotency_key.map(String::from)))
        .collect();
    let state = state.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let tries = left
                .iter()
                .map(|(job, key)| timeout(ATTEMPT_DEADLINE, discard_own(&state, job, key.as_deref())));
            let outcomes = join_all(tries).await;
            let mut still = Vec::new();
            for ((job, key), outcome) in left.into_iter().zip(outcomes) {
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if !e.is_transient() => {
                        warn!(job_id = %job.id, error = %e, "cannot discard a refused submit's record");
                    }
                    _ => still.push((job, key)),
                }
            }
            left = still;
            if left.is_empty() {
                return;
            }
            if started.elapsed() >= ABANDON_FOR || state.shutdown.is_cancelled() {
                for (job, _) in &left {
                    warn!(job_id = %job.id, "gave up discarding a refused submit's record; the corrector runs it");
                }
                return;
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
