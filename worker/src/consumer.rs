//! The delivery path: decode, claim, run in the sandbox, record, publish the result, ack.
//! Every step that can fail leaves the message unacknowledged or handed back, so a crash
//! between any two of them never loses a job, and the coordinator's fencing keeps it to
//! one outcome.

use crate::control::RecentCancels;
use crate::function::FunctionRegistry;
use crate::function::HandlerResult;
use crate::metrics::WorkerMetrics;
use crate::sandbox::inprocess;
use crate::sandbox::process::ProcessFunction;
use jobfleet_common::client::{ChannelSlot, ClientError};
use jobfleet_common::codec::{self, MSGPACK};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::{
    AttemptKey, BadMessage, Claim, ClaimRequest, CompleteRequest, Completion, Coordinator, CoordinatorError,
    CopyKind, Outcome, RetryRequest,
};
use jobfleet_common::lapin::message::Delivery;
use jobfleet_common::lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use jobfleet_common::lapin::types::AMQPValue;
use jobfleet_common::lapin::BasicProperties;
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus, ResultMessage};
use jobfleet_common::publish::confirmed;
use jobfleet_common::topology::{header_str, Topology, HOLD_HEADER, REASON_HEADER, RETRY_HEADER};
use jobfleet_common::trace::{TraceParent, TRACEPARENT};
use jobfleet_common::{client, now_ms};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn, Instrument};

/// Bodies up to this size carry their args in the claim, so a job without a record
/// (published by a foreign client) is claimed in one round trip.
const INLINE_ARGS_BYTES: usize = 16 * 1024;
/// Room for the envelope (id, names, timestamps) around `max_args_bytes`.
const ENVELOPE_BYTES: usize = 16 * 1024;

/// How a job's function runs.
enum Executable {
    /// A Rust handler in this process.
    InProcess(crate::function::Handler),
    /// A process sandbox.
    Process(Arc<ProcessFunction>),
}

/// A job's function, resolved: how it runs and its timeout.
struct Resolved {
    executable: Executable,
    timeout: Duration,
}

/// What every delivery task of one worker shares.
pub(crate) struct Shared {
    pub(crate) worker_id: String,
    pub(crate) topology: Topology,
    pub(crate) coordinator: Coordinator,
    pub(crate) registry: FunctionRegistry,
    /// Args schemas of the configured functions.
    pub(crate) schemas: jobfleet_common::schema::ArgSchemas,
    /// Process functions of the worker's groups, by (group, function).
    pub(crate) processes: HashMap<(String, String), Arc<ProcessFunction>>,
    /// Claims made so far: with the worker id, a token unique per delivery.
    pub(crate) claims: std::sync::atomic::AtomicU64,
    /// Delay queues declared so far (declaring is idempotent; this saves the round trip).
    pub(crate) delay_queues: Mutex<std::collections::HashSet<String>>,
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
enum Handled {
    Ran,
    Dropped,
    Held,
    Republished,
    HandedBack,
    LeftUnacked,
}

impl Shared {
    /// Handles one delivery to the end.
    pub(crate) async fn handle(&self, delivery: Delivery) {
        let _slot = tokio::select! {
            slot = self.slots.acquire() => slot,
            _ = self.force_stop.cancelled() => {
                self.hand_back(&delivery).await;
                return;
            }
        };
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
        // The producer's trace continues here: the span carries its trace id, and the job's
        // own context goes on to the result and the sandbox.
        let trace = header_str(delivery.properties.headers().as_ref(), TRACEPARENT)
            .and_then(|t| TraceParent::parse(&t))
            .map(|parent| parent.child());
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            group = %job.group,
            function = %job.function,
            attempt = tracing::field::Empty,
            trace_id = trace.as_ref().map(|t| t.trace_id.as_str()),
            span_id = trace.as_ref().map(|t| t.parent_id.as_str()),
        );
        let handled = self
            .handle_job(&delivery, &job, trace.as_ref())
            .instrument(span)
            .await;
        debug!(job_id = %job.id, ?handled, "delivery handled");
    }

    async fn handle_job(
        &self,
        delivery: &Delivery,
        job: &JobMessage,
        trace: Option<&TraceParent>,
    ) -> Handled {
        let copy = if header_str(delivery.properties.headers().as_ref(), HOLD_HEADER).is_some() {
            CopyKind::Parked
        } else if delivery.redelivered {
            CopyKind::Redelivered
        } else {
            CopyKind::Fresh
        };
        if copy != CopyKind::Fresh && self.is_running(&job.id) {
            // Our own channel broke while we run this job: its message came back to us.
            return self.hold(delivery, job).await;
        }
        let now = now_ms();
        let token = format!(
            "{}:{}",
            self.worker_id,
            self.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut with_args = delivery.data.len() <= INLINE_ARGS_BYTES;
        let claim = loop {
            let claim = match self
                .with_redis(|| {
                    self.coordinator.claim(ClaimRequest {
                        job,
                        worker_id: &self.worker_id,
                        copy,
                        with_args,
                        now_ms: now,
                        token: &token,
                    })
                })
                .await
            {
                Ok(claim) => claim,
                Err(why) => return self.unrecorded(delivery, why).await,
            };
            match claim {
                Claim::Missing if !with_args => with_args = true,
                claim => break claim,
            }
        };
        match claim {
            Claim::Run {
                attempts,
                submitted_at,
            } => self.run(delivery, job, attempts, submitted_at, now, trace).await,
            Claim::Drop(status) => {
                debug!(%status, "duplicate message dropped");
                ack(delivery).await;
                Handled::Dropped
            }
            Claim::Hold => self.hold(delivery, job).await,
            Claim::Ended(record) => match record.to_result_message() {
                Some(result) => {
                    self.publish_then_ack(delivery, &result, Handled::Republished, trace)
                        .await
                }
                None => {
                    ack(delivery).await;
                    Handled::Dropped
                }
            },
            Claim::Missing => {
                error!("claim asked for args it was given");
                self.hand_back(delivery).await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        delivery: &Delivery,
        job: &JobMessage,
        attempts: u32,
        submitted_at: Option<i64>,
        started_at: i64,
        trace: Option<&TraceParent>,
    ) -> Handled {
        tracing::Span::current().record("attempt", attempts);
        if attempts > 1 {
            warn!(attempts, "running a redelivered job again");
        }
        let stop = CancellationToken::new();
        {
            let mut running = self.running.lock().expect("running set");
            running.insert(job.id.clone(), stop.clone());
            if self.recent_cancels.lock().expect("recent cancels").take(&job.id) {
                // The cancel overtook the job between its claim and now.
                stop.cancel();
            }
        }
        let metrics = self.metrics.function(&job.group, &job.function);
        // Queue time is submission to the first start; a retry's wait is not queueing.
        let queued = submitted_at
            .or(job.submitted_at)
            .filter(|_| attempts == 1)
            .map(|at| Duration::from_millis(started_at.saturating_sub(at).max(0) as u64));
        let running_guard = metrics.start(queued);
        let started = tokio::time::Instant::now();
        let mut handed_off = false;
        let result = if delivery.data.len() > self.max_args_bytes + ENVELOPE_BYTES {
            Err(JobError::new(
                ErrorKind::TooLarge,
                format!(
                    "the message has {} bytes; args may have at most {}",
                    delivery.data.len(),
                    self.max_args_bytes
                ),
            ))
        } else {
            match self.resolve(job) {
                Ok(resolved) => {
                    let execution = self.execute(&resolved, job, attempts, &stop, trace);
                    tokio::pin!(execution);
                    let handoff = tokio::time::sleep(self.long_job_handoff);
                    tokio::pin!(handoff);
                    loop {
                        tokio::select! {
                            result = &mut execution => break result,
                            _ = self.force_stop.cancelled() => {
                                self.running.lock().expect("running set").remove(&job.id);
                                let _ = self.with_redis(|| self.coordinator.requeue(AttemptKey { job, worker_id: &self.worker_id, attempt: attempts })).await;
                                // Handed off, the parked copy brings the job back.
                                return if handed_off { Handled::HandedBack } else { self.hand_back(delivery).await };
                            }
                            _ = &mut handoff, if !handed_off => {
                                // A long job must not hold its delivery past the broker's
                                // consumer_timeout: a parked copy stands in for it from now on.
                                handed_off = self.hold(delivery, job).await == Handled::Held;
                                if !handed_off {
                                    handoff.as_mut().reset(tokio::time::Instant::now() + self.hold_delay);
                                }
                            }
                        }
                    }
                }
                Err(error) => Err(error),
            }
        };
        self.running.lock().expect("running set").remove(&job.id);
        drop(running_guard);
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_millis() as u64;
        let outcome = match result {
            Ok(value) => Outcome {
                status: JobStatus::Finished,
                result: Some(value),
                error: None,
                duration_ms,
            },
            Err(error) => {
                let status = if error.kind == ErrorKind::Canceled {
                    JobStatus::Canceled
                } else {
                    JobStatus::Failed
                };
                Outcome {
                    status,
                    result: None,
                    error: Some(error),
                    duration_ms,
                }
            }
        };
        metrics.executed(elapsed, outcome.error.as_ref());
        let max_failures = self.config.group(&job.group).map(|g| g.max_failures).unwrap_or(5);
        if let Some(error) = outcome.error.as_ref().filter(|e| e.kind.is_retryable()) {
            if let Some(function) = self
                .config
                .function(&job.group, &job.function)
                .filter(|f| attempts <= f.max_retries)
            {
                return self
                    .retry(
                        delivery,
                        job,
                        attempts,
                        error,
                        function.retry_delay(attempts),
                        max_failures,
                        handed_off,
                    )
                    .await;
            }
        }
        let finished_at = now_ms();
        let completion = match self
            .with_redis(|| {
                self.coordinator.complete(CompleteRequest {
                    attempt: AttemptKey {
                        job,
                        worker_id: &self.worker_id,
                        attempt: attempts,
                    },
                    outcome: &outcome,
                    max_failures,
                    now_ms: finished_at,
                })
            })
            .await
        {
            Ok(completion) => completion,
            // Not recorded: the job goes back (its parked copy stands in, once handed off).
            Err(_) if handed_off => return Handled::LeftUnacked,
            Err(why) => return self.unrecorded(delivery, why).await,
        };
        match completion {
            Completion::Recorded => {
                metrics.completed(outcome.status);
                let result = ResultMessage {
                    id: job.id.clone(),
                    group: job.group.clone(),
                    function: job.function.clone(),
                    status: outcome.status,
                    result: outcome.result,
                    error: outcome.error,
                    attempts,
                    worker: self.worker_id.clone(),
                    submitted_at: submitted_at.or(job.submitted_at),
                    started_at: Some(started_at),
                    finished_at,
                    duration_ms: Some(duration_ms),
                };
                if handed_off {
                    self.publish_result_until_done(&result, trace).await;
                    return Handled::Ran;
                }
                self.publish_then_ack(delivery, &result, Handled::Ran, trace)
                    .await
            }
            Completion::Stale(status) => {
                // Canceled or taken over meanwhile: whoever ended it published its result.
                if status == Some(JobStatus::Canceled) && outcome.status == JobStatus::Canceled {
                    // The master recorded the cancel; this worker carried it out.
                    metrics.completed(JobStatus::Canceled);
                }
                debug!(?status, "outcome discarded: the job is no longer this attempt's");
                if !handed_off {
                    ack(delivery).await;
                }
                Handled::Dropped
            }
            Completion::Announce(record) => {
                // The master ended it but its result may be unpublished: publish it.
                if outcome.status == JobStatus::Canceled {
                    metrics.completed(JobStatus::Canceled);
                }
                let Some(result) = record.to_result_message() else {
                    return Handled::Dropped;
                };
                if self.publish_result_until_done(&result, trace).await {
                    let _ = self.coordinator.announced(&record).await;
                }
                if !handed_off {
                    ack(delivery).await;
                }
                Handled::Republished
            }
        }
    }

    /// How a job's function runs and for how long, or `unknown_function`.
    fn resolve(&self, job: &JobMessage) -> Result<Resolved, JobError> {
        let unknown = || {
            JobError::new(
                ErrorKind::UnknownFunction,
                format!("group {:?} has no function {:?}", job.group, job.function),
            )
        };
        let configured = match self.config.group(&job.group) {
            Some(group) => Some(group.functions.get(&job.function).ok_or_else(unknown)?),
            None => None,
        };
        let (executable, own_timeout) = match self.processes.get(&(job.group.clone(), job.function.clone())) {
            Some(process) => (Executable::Process(process.clone()), None),
            None => {
                let function = self.registry.get(&job.function).ok_or_else(unknown)?;
                (Executable::InProcess(function.handler.clone()), function.timeout)
            }
        };
        let timeout = job
            .timeout_ms
            .map(Duration::from_millis)
            .or_else(|| configured.and_then(|c| c.timeout))
            .or(own_timeout)
            .unwrap_or(Config::DEFAULT_TIMEOUT);
        // Checked again here: producers may publish straight to AMQP.
        self.schemas
            .check(&job.group, &job.function, &job.args)
            .map_err(JobError::invalid_args)?;
        Ok(Resolved { executable, timeout })
    }

    /// Runs a resolved job in its sandbox until it ends, times out or `stop` fires.
    async fn execute(
        &self,
        resolved: &Resolved,
        job: &JobMessage,
        attempt: u32,
        stop: &CancellationToken,
        trace: Option<&TraceParent>,
    ) -> HandlerResult {
        match &resolved.executable {
            Executable::InProcess(handler) => tokio::select! {
                result = inprocess::run(handler, job.args.clone(), resolved.timeout) => result,
                _ = stop.cancelled() => Err(JobError::new(ErrorKind::Canceled, "canceled while running")),
            },
            Executable::Process(process) => {
                process
                    .run(
                        &job.id,
                        attempt,
                        &job.args,
                        resolved.timeout,
                        stop,
                        trace.map(TraceParent::header),
                    )
                    .await
            }
        }
    }

    /// Sends a failed attempt back for a retry: records it as queued, parks a copy of the
    /// job in the delay queue for `delay` (no worker slot is held meanwhile), then acks.
    #[allow(clippy::too_many_arguments)]
    async fn retry(
        &self,
        delivery: &Delivery,
        job: &JobMessage,
        attempt: u32,
        error: &JobError,
        delay: Duration,
        max_failures: u32,
        handed_off: bool,
    ) -> Handled {
        let available_at = now_ms() + delay.as_millis() as i64;
        match self
            .with_redis(|| {
                self.coordinator.retry(RetryRequest {
                    attempt: AttemptKey {
                        job,
                        worker_id: &self.worker_id,
                        attempt,
                    },
                    error,
                    available_at_ms: available_at,
                    max_failures,
                })
            })
            .await
        {
            Ok(Completion::Recorded) => {}
            Ok(Completion::Stale(_)) => {
                if !handed_off {
                    ack(delivery).await;
                }
                return Handled::Dropped;
            }
            Ok(Completion::Announce(record)) => {
                // Canceled by a master that could not publish the result: publish it.
                if let Some(result) = record.to_result_message() {
                    if self.publish_result_until_done(&result, None).await {
                        let _ = self.coordinator.announced(&record).await;
                    }
                }
                if !handed_off {
                    ack(delivery).await;
                }
                return Handled::Republished;
            }
            Err(_) if handed_off => return Handled::LeftUnacked,
            Err(why) => return self.unrecorded(delivery, why).await,
        }
        warn!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "attempt failed; retrying after a back-off");
        let delay_ms = delay.as_millis() as u64;
        let parked = async {
            let queue = self.delay_queue(&job.group, delay_ms).await?;
            self.forward(delivery, "", &queue, (RETRY_HEADER, attempt.to_string()))
                .await
        };
        match parked.await {
            Ok(()) => {
                if !handed_off {
                    ack(delivery).await;
                }
                Handled::Ran
            }
            // The job is queued in Redis; its redelivered message runs it without waiting.
            Err(_) if !handed_off => self.hand_back(delivery).await,
            // Handed off: the parked copy comes back and runs it.
            Err(_) => Handled::LeftUnacked,
        }
    }

    /// The name of the delay queue of `group` for `delay_ms`, declared once per worker.
    async fn delay_queue(&self, group: &str, delay_ms: u64) -> Result<String, ClientError> {
        let name = self.topology.delay_queue(group, delay_ms);
        if !self.delay_queues.lock().expect("delay queues").contains(&name) {
            let channel = self.results.get().await?;
            self.topology.declare_delay(&channel, group, delay_ms).await?;
            self.delay_queues
                .lock()
                .expect("delay queues")
                .insert(name.clone());
        }
        Ok(name)
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

    fn is_running(&self, id: &str) -> bool {
        self.running.lock().expect("running set").contains_key(id)
    }

    /// Runs a Redis call, retrying while Redis is unreachable. `Err(None)` once the worker
    /// is forced to stop (hand the delivery back); `Err(Some(reason))` when the coordinator
    /// refuses the call for good (dead-letter it, or it would come back forever).
    async fn with_redis<T, F, Fut>(&self, call: F) -> Result<T, Option<String>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CoordinatorError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_connection_error() => {
                    warn!(error = %e, "redis unreachable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(client::backoff(attempt)) => {}
                        _ = self.force_stop.cancelled() => return Err(None),
                    }
                    attempt += 1;
                }
                Err(e) => {
                    error!(error = %e, "coordinator call failed");
                    return Err(Some(format!("coordinator error: {e}")));
                }
            }
        }
    }

    /// Disposes of a delivery whose job could not be recorded: handed back while stopping,
    /// dead-lettered with the reason when the coordinator refused it.
    async fn unrecorded(&self, delivery: &Delivery, why: Option<String>) -> Handled {
        let Some(reason) = why else {
            return self.hand_back(delivery).await;
        };
        match self
            .forward(
                delivery,
                &self.topology.dead_letters(),
                "",
                (REASON_HEADER, reason),
            )
            .await
        {
            Ok(()) => {
                ack(delivery).await;
                Handled::Dropped
            }
            Err(_) => self.hand_back(delivery).await,
        }
    }

    async fn publish_then_ack(
        &self,
        delivery: &Delivery,
        result: &ResultMessage,
        handled: Handled,
        trace: Option<&TraceParent>,
    ) -> Handled {
        if self.publish_result_until_done(result, trace).await {
            ack(delivery).await;
            handled
        } else {
            // Forced to stop first: the redelivered message publishes the recorded result.
            self.hand_back(delivery).await
        }
    }

    /// Publishes a result, retrying through broker trouble, until it is confirmed (`true`)
    /// or the worker is forced to stop (`false`). While this worker lives, parked copies of
    /// the job rely on it to publish.
    async fn publish_result_until_done(&self, result: &ResultMessage, trace: Option<&TraceParent>) -> bool {
        let mut attempt = 0;
        loop {
            match self.publish_result(result, trace).await {
                Ok(()) => return true,
                Err(e) => {
                    warn!(error = %e, "result publish failed; retrying");
                    self.results.invalidate().await;
                    tokio::select! {
                        _ = tokio::time::sleep(client::backoff(attempt)) => {}
                        _ = self.force_stop.cancelled() => return false,
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Publishes a result message, with the job's `traceparent` when it has one, and waits
    /// for its confirm.
    pub(crate) async fn publish_result(
        &self,
        result: &ResultMessage,
        trace: Option<&TraceParent>,
    ) -> Result<(), ClientError> {
        let channel = self.results.get().await?;
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(MSGPACK.into())
            .with_message_id(result.id.as_str().into());
        if let Some(trace) = trace {
            let mut headers = jobfleet_common::lapin::types::FieldTable::default();
            headers.insert(TRACEPARENT.into(), AMQPValue::LongString(trace.header().into()));
            properties = properties.with_headers(headers);
        }
        let confirm = channel
            .basic_publish(
                self.topology.results_exchange().into(),
                result.routing_key().into(),
                BasicPublishOptions::default(),
                &codec::encode(result),
                properties,
            )
            .await?;
        confirmed(confirm, &result.id, &result.group).await
    }

    /// Copies a message elsewhere with an extra header, then acks the original.
    async fn forward(
        &self,
        delivery: &Delivery,
        exchange: &str,
        routing_key: &str,
        header: (&str, String),
    ) -> Result<(), ClientError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(header.0.into(), AMQPValue::LongString(header.1.into()));
        let properties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let channel = self.results.get().await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?;
        confirmed(confirm, "", routing_key).await
    }

    /// Parks a copy of a job owned by another live worker in the group's delay queue; it
    /// comes back after the hold delay and is looked at again.
    async fn hold(&self, delivery: &Delivery, job: &JobMessage) -> Handled {
        let queue = self
            .topology
            .delay_queue(&job.group, self.hold_delay.as_millis() as u64);
        debug!("another worker owns the job; parking this copy");
        match self
            .forward(delivery, "", &queue, (HOLD_HEADER, self.worker_id.clone()))
            .await
        {
            Ok(()) => {
                ack(delivery).await;
                Handled::Held
            }
            Err(e) => {
                warn!(error = %e, "could not park a copy");
                self.hand_back(delivery).await
            }
        }
    }

    /// Dead-letters an undecodable message with its reason, and records the job as failed
    /// with `bad_message` when its id could be read.
    async fn reject_undecodable(&self, delivery: &Delivery, e: codec::DecodeError) {
        warn!(reason = %e.reason, id = ?e.id, "dead-lettering an undecodable message");
        if let Err(publish_error) = self
            .forward(
                delivery,
                &self.topology.dead_letters(),
                "",
                (REASON_HEADER, e.reason.clone()),
            )
            .await
        {
            warn!(error = %publish_error, "could not dead-letter");
            self.hand_back(delivery).await;
            return;
        }
        if let Some(id) = &e.id {
            let group = delivery.routing_key.as_str();
            let function = e.function.as_deref().unwrap_or(crate::metrics::UNKNOWN_LABEL);
            let finished_at = now_ms();
            match self
                .with_redis(|| {
                    self.coordinator.record_bad_message(BadMessage {
                        id,
                        group,
                        function,
                        reason: &e.reason,
                        now_ms: finished_at,
                    })
                })
                .await
            {
                Ok(true) => {
                    // Recorded as failed: like every ended job, it gets a result message.
                    let result = ResultMessage {
                        id: id.clone(),
                        group: group.to_string(),
                        function: function.to_string(),
                        status: JobStatus::Failed,
                        result: None,
                        error: Some(JobError::new(ErrorKind::BadMessage, e.reason.clone())),
                        attempts: 0,
                        worker: self.worker_id.clone(),
                        submitted_at: None,
                        started_at: None,
                        finished_at,
                        duration_ms: None,
                    };
                    if !self.publish_result_until_done(&result, None).await {
                        self.hand_back(delivery).await;
                        return;
                    }
                }
                Ok(false) | Err(Some(_)) => {}
                Err(None) => {
                    // Stopping: the message comes back and is dead-lettered again (a
                    // duplicate in NS.dead beats a lost reason).
                    self.hand_back(delivery).await;
                    return;
                }
            }
        }
        ack(delivery).await;
    }

    /// Returns a delivery to its queue (nack + requeue).
    async fn hand_back(&self, delivery: &Delivery) -> Handled {
        match delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
        {
            Ok(_) => Handled::HandedBack,
            Err(_) => Handled::LeftUnacked,
        }
    }
}

/// Acknowledges a delivery. On a broken channel this fails and the broker redelivers the
/// message, which then meets a terminal record and is dropped or republished.
async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "ack failed; the message will be redelivered");
    }
}
