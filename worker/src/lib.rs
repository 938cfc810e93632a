//! The jobfleet worker: consumes its groups' queues and runs each job in its function's
//! sandbox. Build your own with [`Worker::builder`] and in-process functions:
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobfleet_worker::WorkerError> {
//! use jobfleet_worker::{JobError, Worker};
//! let worker = Worker::builder()
//!     .group("default")
//!     .function("double", |n: i64| async move { Ok::<_, JobError>(n * 2) })
//!     .build()?;
//! worker.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

pub mod builtins;
mod consumer;
mod control;
mod error;
pub mod function;
mod heartbeat;
pub mod metrics;
pub mod sandbox;

pub use error::WorkerError;
pub use jobfleet_common::message::{ErrorKind, JobError};
pub use metrics::WorkerMetrics;

use consumer::Shared;
use control::ControlTask;
use function::{handler, Function, FunctionRegistry};
use futures::StreamExt;
use jobfleet_common::client::{self, amqp_pool, AmqpPool, ChannelSlot};
use jobfleet_common::config::{Config, SandboxKind, DEFAULT_GROUP};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use jobfleet_common::lapin::types::FieldTable;
use jobfleet_common::lapin::Channel;
use jobfleet_common::message::is_valid_name;
use jobfleet_common::topology::Topology;
use sandbox::process::ProcessFunction;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

/// Stalled sessions in a row (no delivery while jobs wait) after which the worker exits.
const MAX_STALLS: u32 = 3;

/// Builds a [`Worker`]: its configuration, groups, concurrency and functions.
pub struct WorkerBuilder {
    config: Config,
    groups: Vec<String>,
    concurrency: usize,
    registry: FunctionRegistry,
    drain_timeout: Duration,
    heartbeat_interval: Duration,
    heartbeat_ttl: Duration,
    hold_delay: Duration,
    long_job_handoff: Duration,
    stall_check: Duration,
    worker_id: Option<String>,
    metrics_listen: Option<SocketAddr>,
    metrics_registry: Option<prometheus::Registry>,
}

impl Default for WorkerBuilder {
    fn default() -> Self {
        WorkerBuilder {
            config: Config::default(),
            groups: Vec::new(),
            concurrency: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            registry: FunctionRegistry::default(),
            drain_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_ttl: Duration::from_secs(10),
            hold_delay: Duration::from_secs(5),
            long_job_handoff: Duration::from_secs(15 * 60),
            stall_check: Duration::from_secs(15),
            worker_id: None,
            metrics_listen: None,
            metrics_registry: None,
        }
    }
}

impl WorkerBuilder {
    /// The fleet configuration (URLs, namespace, group policies); default: zero-config.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a group to consume; with none, the worker consumes `default`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Jobs in flight at once (= the AMQP prefetch); default: the number of CPUs.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Registers an in-process function. Its args are deserialized into `A` (a mismatch
    /// fails the job with `invalid_args`); its output `R` is the job's result.
    pub fn function<A, R, F, Fut>(self, name: impl Into<String>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        self.function_entry(
            name,
            Function {
                handler: handler(f),
                timeout: None,
            },
        )
    }

    /// Registers an in-process function with its own timeout (the config file's wins).
    pub fn function_with_timeout<A, R, F, Fut>(self, name: impl Into<String>, timeout: Duration, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        self.function_entry(
            name,
            Function {
                handler: handler(f),
                timeout: Some(timeout),
            },
        )
    }

    /// Registers a prepared function entry.
    pub fn function_entry(mut self, name: impl Into<String>, function: Function) -> Self {
        self.registry.insert(name, function);
        self
    }

    /// Registers the built-in functions (echo, sleep, fail, wordcount, crash).
    pub fn builtins(mut self) -> Self {
        builtins::register(&mut self.registry);
        self
    }

    /// How long a stopping worker waits for its running jobs before handing them back;
    /// default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Heartbeat interval and the time to live of the worker's record (after which its
    /// started jobs may be taken over); default 2 s and 10 s.
    pub fn heartbeat(mut self, interval: Duration, ttl: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_ttl = ttl;
        self
    }

    /// How long a copy of a job that another live worker owns is parked before it is
    /// looked at again; default 5 s.
    pub fn hold_delay(mut self, delay: Duration) -> Self {
        self.hold_delay = delay;
        self
    }

    /// How long a running job keeps its delivery unacknowledged before a parked copy in the
    /// delay queue takes its place; keep it below RabbitMQ's `consumer_timeout` (30 min by
    /// default). Default 15 min.
    pub fn long_job_handoff(mut self, after: Duration) -> Self {
        self.long_job_handoff = after;
        self
    }

    /// How often an idle worker checks whether jobs wait in its queues without being
    /// delivered (a stalled consumer); two such checks in a row reconnect. Default 15 s.
    pub fn stall_check(mut self, every: Duration) -> Self {
        self.stall_check = every;
        self
    }

    /// Sets the worker's id (default: `<host>-<pid>-<random>`).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Serves `GET /metrics` on `addr` while the worker runs (port 0 picks a free port; see
    /// [`Worker::metrics_addr`]). Default: no server; the metrics are still kept, see
    /// [`Worker::metrics`]. The port is bound by [`WorkerBuilder::build`].
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// Registers the worker's metrics on `registry` (shared with the embedding program's
    /// own metrics) instead of a registry of their own.
    pub fn metrics_registry(mut self, registry: prometheus::Registry) -> Self {
        self.metrics_registry = Some(registry);
        self
    }

    /// Checks the settings and builds the worker.
    pub fn build(mut self) -> Result<Worker, WorkerError> {
        if self.groups.is_empty() {
            self.groups.push(DEFAULT_GROUP.to_string());
        }
        self.groups.dedup();
        for group in &self.groups {
            if !is_valid_name(group) {
                return Err(WorkerError::Settings(format!(
                    "group {group:?}: use 1..64 chars of [A-Za-z0-9_-]"
                )));
            }
            if !self.config.groups.is_empty() && self.config.group(group).is_none() {
                return Err(WorkerError::Settings(format!(
                    "group {group:?} is not in the configuration (groups: {:?})",
                    self.config.groups.keys().collect::<Vec<_>>()
                )));
            }
            if let Some(config) = self.config.group(group) {
                for (name, function) in &config.functions {
                    if function.sandbox == SandboxKind::Inprocess && self.registry.get(name).is_none() {
                        warn!(group = %group, function = %name, "configured function has no handler in this worker; its jobs fail with unknown_function");
                    }
                }
            }
        }
        if self.concurrency == 0 || self.concurrency > u16::MAX as usize {
            return Err(WorkerError::Settings(format!(
                "concurrency {} must be 1..=65535",
                self.concurrency
            )));
        }
        if self.heartbeat_ttl <= self.heartbeat_interval {
            return Err(WorkerError::Settings(
                "the heartbeat ttl must exceed its interval".into(),
            ));
        }
        // Metric labels: the worker's groups, each with the functions it knows.
        let known: Vec<(String, BTreeSet<String>)> = self
            .groups
            .iter()
            .map(|group| {
                let mut functions: BTreeSet<String> = self.registry.names().into_iter().collect();
                if let Some(config) = self.config.group(group) {
                    functions.extend(config.functions.keys().cloned());
                }
                (group.clone(), functions)
            })
            .collect();
        let metrics = Arc::new(
            WorkerMetrics::new(self.metrics_registry.unwrap_or_default(), &known)
                .map_err(|e| WorkerError::Metrics(e.to_string()))?,
        );
        let metrics_listener = match self.metrics_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|source| WorkerError::MetricsListen { addr, source })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| WorkerError::MetricsListen { addr, source })?;
                Some(listener)
            }
            None => None,
        };
        let worker_id = self.worker_id.unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                heartbeat::hostname(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            )
        });
        let topology = Topology::new(&self.config.namespace);
        let coordinator = Coordinator::from_config(&self.config, topology.clone())?;
        let pool = amqp_pool(&self.config.amqp_url, 2, &format!("jobfleet-worker {worker_id}"))?;
        let mut processes = std::collections::HashMap::new();
        for group in &self.groups {
            for (name, function) in self
                .config
                .group(group)
                .map(|g| &g.functions)
                .into_iter()
                .flatten()
            {
                if function.sandbox == SandboxKind::Process {
                    processes.insert(
                        (group.clone(), name.clone()),
                        Arc::new(ProcessFunction::from_config(function, self.concurrency)),
                    );
                }
            }
        }
        let shared = Arc::new(Shared {
            worker_id,
            topology,
            coordinator,
            registry: self.registry,
            processes,
            schemas: jobfleet_common::schema::ArgSchemas::compile(&self.config)
                .map_err(|e| WorkerError::Settings(e.to_string()))?,
            delay_queues: Default::default(),
            claims: Default::default(),
            max_args_bytes: self.config.max_args_bytes,
            config: self.config,
            results: ChannelSlot::new(pool.clone(), true),
            hold_delay: self.hold_delay,
            long_job_handoff: self.long_job_handoff,
            running: Default::default(),
            slots: tokio::sync::Semaphore::new(self.concurrency),
            force_stop: CancellationToken::new(),
            recent_cancels: Default::default(),
            metrics,
        });
        Ok(Worker {
            shared,
            pool,
            groups: self.groups,
            concurrency: self.concurrency,
            drain_timeout: self.drain_timeout,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_ttl: self.heartbeat_ttl,
            stall_check: self.stall_check,
            metrics_listener,
        })
    }
}

/// A worker process's consuming side: run it with [`Worker::run`].
pub struct Worker {
    shared: Arc<Shared>,
    pool: AmqpPool,
    groups: Vec<String>,
    concurrency: usize,
    drain_timeout: Duration,
    heartbeat_interval: Duration,
    heartbeat_ttl: Duration,
    stall_check: Duration,
    metrics_listener: Option<std::net::TcpListener>,
}

/// What a broker session leaves for the drain when shutdown ends it.
struct Session {
    /// The consuming channel, kept open until the running jobs are done.
    channel: Channel,
    /// The control consumer, so cancels still reach jobs that run through the drain.
    control: ControlTask,
}

impl Worker {
    /// A builder with the zero-config defaults.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::default()
    }

    /// This worker's id, as recorded on the jobs it runs.
    pub fn id(&self) -> &str {
        &self.shared.worker_id
    }

    /// The groups this worker consumes.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The worker's metrics (also served on [`WorkerBuilder::metrics_listen`]).
    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        self.shared.metrics.clone()
    }

    /// The bound address of the metrics server, when one was asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Consumes until `shutdown` is cancelled, reconnecting after broker failures; then
    /// stops taking jobs, lets running ones finish within the drain timeout, hands back
    /// the rest, and returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let shared = self.shared.clone();
        let span = tracing::info_span!("worker", worker_id = %shared.worker_id);
        async move {
            info!(groups = ?self.groups, concurrency = self.concurrency, amqp = %jobfleet_common::config::redact_url(&shared.config.amqp_url), "worker starting");
            // Stops the metrics server however run() returns; it serves through the drain.
            let metrics_stop = CancellationToken::new();
            let _metrics_guard = metrics_stop.clone().drop_guard();
            let metrics_server = match self.metrics_listener.take().map(tokio::net::TcpListener::from_std) {
                Some(Ok(listener)) => {
                    info!(addr = ?listener.local_addr().ok(), "serving /metrics");
                    let server = metrics::serve(listener, shared.metrics.clone(), metrics_stop.clone());
                    Some(tokio::spawn(server.instrument(tracing::info_span!("metrics"))))
                }
                Some(Err(e)) => {
                    error!(error = %e, "cannot serve /metrics");
                    None
                }
                None => None,
            };
            // The record must exist before any job is claimed, so nobody takes ours over.
            let mut attempt = 0;
            while let Err(e) = shared.coordinator.heartbeat(&shared.worker_id, &self.groups, &heartbeat::info(&shared, &self.groups, self.concurrency, 0), self.heartbeat_ttl).await {
                if shutdown.is_cancelled() {
                    return Err(e.into());
                }
                warn!(error = %e, "redis unreachable at start; retrying");
                tokio::time::sleep(client::backoff(attempt)).await;
                attempt += 1;
            }
            let heartbeat_stop = CancellationToken::new();
            let heartbeat = tokio::spawn(heartbeat::run(shared.clone(), self.groups.clone(), self.concurrency, self.heartbeat_interval, self.heartbeat_ttl, heartbeat_stop.clone()));
            let tracker = TaskTracker::new();
            let mut attempt = 0;
            // The consuming channel stays open through the drain: closing it would return
            // the running jobs' messages to the queue before they are acknowledged.
            let mut session = None;
            let mut stalls = 0;
            let mut failure = None;
            while !shutdown.is_cancelled() {
                let mut delivered = false;
                match self.consume(&tracker, &shutdown, &mut delivered).await {
                    Ok(ended) => {
                        session = Some(ended);
                        break;
                    }
                    Err(WorkerError::Amqp(e)) if client::is_refusal(&e) => {
                        // E.g. the group queue exists with another queue_type: retrying
                        // cannot help, and a supervisor shows the error.
                        error!(error = %e, "the broker refuses this worker's topology; stopping");
                        failure = Some(WorkerError::Amqp(e));
                        break;
                    }
                    Err(e) => {
                        stalls = match (&e, delivered) {
                            (WorkerError::Stalled(_), false) => stalls + 1,
                            _ => 0,
                        };
                        if stalls >= MAX_STALLS {
                            // Reconnecting did not help: exit non-zero so a supervisor restarts us.
                            error!(error = %e, "consumption keeps stalling; stopping");
                            failure = Some(e);
                            break;
                        }
                        warn!(error = %e, "consumption interrupted; reconnecting");
                        tokio::select! {
                            _ = tokio::time::sleep(client::backoff(attempt)) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        attempt += 1;
                    }
                }
            }
            info!(running = tracker.len(), "draining");
            tracker.close();
            if tokio::time::timeout(self.drain_timeout, tracker.wait()).await.is_err() {
                warn!(running = tracker.len(), "drain timeout: handing running jobs back");
                shared.force_stop.cancel();
                tracker.wait().await;
            }
            if let Some(Session { channel, control }) = session {
                drop(control);
                let _ = channel.close(200, "worker stopped".into()).await;
            }
            heartbeat_stop.cancel();
            let _ = heartbeat.await;
            if let Err(e) = shared.coordinator.deregister(&shared.worker_id, &self.groups).await {
                warn!(error = %e, "could not remove the worker record; it expires on its own");
            }
            self.pool.close();
            metrics_stop.cancel();
            if let Some(server) = metrics_server {
                let _ = server.await;
            }
            info!("worker stopped");
            match failure {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        .instrument(span)
        .await
    }

    /// One broker session: declare, consume the group queues and the control queue, hand
    /// each delivery to a task. Returns the session when shutdown was requested (job
    /// consumers canceled), an error when the connection broke or a consumer failed.
    async fn consume(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        delivered: &mut bool,
    ) -> Result<Session, WorkerError> {
        let shared = &self.shared;
        let channel = client::open_channel(&self.pool, false).await?;
        shared.topology.declare_base(&channel).await?;
        for group in &self.groups {
            let queue_type = shared
                .config
                .group(group)
                .map(|g| g.queue_type)
                .unwrap_or_default();
            shared.topology.declare_group(&channel, group, queue_type).await?;
            shared
                .topology
                .declare_delay(&channel, group, shared.hold_delay.as_millis() as u64)
                .await?;
        }
        channel
            .basic_qos(self.concurrency as u16, BasicQosOptions::default())
            .await?;
        let mut control = control::start(shared, &channel).await?;
        let mut consumers = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let tag = format!("{}/{group}", shared.worker_id);
            let consumer = channel
                .basic_consume(
                    shared.topology.group_queue(group).into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(consumer);
        }
        let tags: Vec<_> = consumers.iter().map(|c| c.tag()).collect();
        // A consumer the broker cancels (its queue deleted, a node lost) ends its stream:
        // that ends the session, so the worker reconnects and consumes again.
        let mut deliveries = futures::stream::select_all(consumers.into_iter().map(|consumer| {
            let queue = consumer.queue().to_string();
            consumer
                .map(|delivery| delivery.map_err(WorkerError::from))
                .chain(futures::stream::once(async move {
                    Err(WorkerError::Stalled(format!(
                        "the broker canceled the consumer of {queue}"
                    )))
                }))
                .boxed()
        }));
        let mut watchdog = tokio::time::interval(self.stall_check);
        watchdog.tick().await;
        let mut last_delivery = tokio::time::Instant::now();
        let mut stalled_checks = 0;
        info!("consuming");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    for tag in tags {
                        let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                    }
                    return Ok(Session { channel, control });
                }
                ended = &mut control.handle => {
                    // Like a failed job consumer: end the session, so the worker reconnects.
                    return Err(match ended {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => WorkerError::Stalled("the control consumer stopped".into()),
                        Err(e) => WorkerError::Stalled(format!("the control consumer task failed: {e}")),
                    });
                }
                _ = watchdog.tick() => {
                    let idle = last_delivery.elapsed() >= self.stall_check && tracker.len() < self.concurrency;
                    let waiting = if idle { self.ready_messages(&channel).await? } else { 0 };
                    stalled_checks = if waiting > 0 { stalled_checks + 1 } else { 0 };
                    if stalled_checks >= 2 {
                        return Err(WorkerError::Stalled(format!("{waiting} jobs wait in the queues but none were delivered for {:?}", last_delivery.elapsed())));
                    }
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        last_delivery = tokio::time::Instant::now();
                        *delivered = true;
                        let shared = shared.clone();
                        tracker.spawn(async move { shared.handle(delivery).await }.in_current_span());
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(WorkerError::Stalled("the broker closed the consumers".into())),
                },
            }
        }
    }

    /// Jobs ready (not delivered) in this worker's group queues.
    async fn ready_messages(&self, channel: &Channel) -> Result<u64, WorkerError> {
        let mut ready = 0;
        for group in &self.groups {
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let queue = channel
                .queue_declare(
                    self.shared.topology.group_queue(group).into(),
                    passive,
                    FieldTable::default(),
                )
                .await?;
            ready += u64::from(queue.message_count());
        }
        Ok(ready)
    }
}
