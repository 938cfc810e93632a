//! [`WorkerBuilder`]: a worker's settings and functions, checked and wired into a
//! [`Worker`].

use crate::consumer::Shared;
use crate::error::WorkerError;
use crate::function::{handler, Function, FunctionRegistry};
use crate::sandbox::process::ProcessFunction;
use crate::sandbox::SandboxHost;
use crate::{builtins, heartbeat, JobError, Worker, WorkerMetrics};
use jobfleet_common::client::{amqp_pool, ChannelSlot};
use jobfleet_common::config::{Config, FunctionConfig, SandboxKind, DEFAULT_GROUP};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::message::is_valid_name;
use jobfleet_common::schema::ArgSchemas;
use jobfleet_common::topology::Topology;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

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
        let handler = handler(f);
        self.function_entry(
            name,
            Function {
                handler,
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
        let (handler, timeout) = (handler(f), Some(timeout));
        self.function_entry(name, Function { handler, timeout })
    }

    /// Registers a prepared function entry.
    pub fn function_entry(mut self, name: impl Into<String>, function: Function) -> Self {
        self.registry.insert(name, function);
        self
    }

    /// Registers the built-in functions (echo, sleep, fail, wordcount, crash, chatty).
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
    /// looked at again, and the longest a delivery waits for a free job slot before it goes
    /// back to its queue; default 5 s.
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
        self.check()?;
        // Sandbox settings are checked before any port is bound.
        let processes = self.process_functions()?;
        let registry = self.metrics_registry.take().unwrap_or_default();
        let metrics = Arc::new(WorkerMetrics::new(registry, &self.metric_labels())?);
        let metrics_listener = self.metrics_listen.map(bind_metrics).transpose()?;
        let worker_id = self.worker_id.take().unwrap_or_else(default_worker_id);
        let topology = Topology::new(&self.config.namespace);
        let coordinator = Coordinator::from_config(&self.config, topology.clone())?;
        let pool = amqp_pool(
            self.config.amqp_endpoint(),
            2,
            &format!("jobfleet-worker {worker_id}"),
        )?;
        let shared = Arc::new(Shared {
            worker_id,
            topology,
            coordinator,
            registry: self.registry,
            processes,
            schemas: ArgSchemas::compile(&self.config)?,
            delay_queues: Default::default(),
            claims: Default::default(),
            max_args_bytes: self.config.max_args_bytes,
            config: self.config,
            results: ChannelSlot::new(pool.clone(), true),
            hold_delay: self.hold_delay,
            long_job_handoff: self.long_job_handoff,
            running: Default::default(),
            slots: tokio::sync::Semaphore::new(self.concurrency),
            slot_wait: self.hold_delay,
            slot_wait_over: Default::default(),
            paused: tokio::sync::watch::Sender::new(false),
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

    /// Refuses settings that cannot work: bad or unconfigured groups, a concurrency out of
    /// range, a heartbeat that outlives its record.
    fn check(&self) -> Result<(), WorkerError> {
        for group in &self.groups {
            self.check_group(group)?;
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
        Ok(())
    }

    fn check_group(&self, group: &str) -> Result<(), WorkerError> {
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
        for (name, function) in self.configured_functions(group) {
            if function.sandbox == SandboxKind::Inprocess && self.registry.get(name).is_none() {
                warn!(group = %group, function = %name, "configured function has no handler in this worker; its jobs fail with unknown_function");
            }
        }
        Ok(())
    }

    /// The functions the configuration gives `group` (none for an unconfigured group).
    fn configured_functions<'a>(
        &'a self,
        group: &str,
    ) -> impl Iterator<Item = (&'a String, &'a FunctionConfig)> {
        self.config.group(group).into_iter().flat_map(|g| &g.functions)
    }

    /// Metric labels: the worker's groups, each with the functions it knows.
    fn metric_labels(&self) -> Vec<(String, BTreeSet<String>)> {
        self.groups
            .iter()
            .map(|group| {
                let mut functions: BTreeSet<String> = self.registry.names().into_iter().collect();
                if let Some(config) = self.config.group(group) {
                    functions.extend(config.functions.keys().cloned());
                }
                (group.clone(), functions)
            })
            .collect()
    }

    /// The process sandboxes of the worker's groups, by (group, function), sharing the
    /// worker's [`SandboxHost`] (made only when there is a process function).
    fn process_functions(&self) -> Result<HashMap<(String, String), Arc<ProcessFunction>>, WorkerError> {
        let mut processes = HashMap::new();
        let mut host = None;
        for group in &self.groups {
            for (name, function) in self.configured_functions(group) {
                if function.sandbox != SandboxKind::Process {
                    continue;
                }
                let host = match &host {
                    Some(host) => Arc::clone(host),
                    None => host.insert(SandboxHost::start()?).clone(),
                };
                let sandbox = ProcessFunction::from_config(
                    &format!("{group}.{name}"),
                    function,
                    self.concurrency,
                    host,
                )?;
                processes.insert((group.clone(), name.clone()), Arc::new(sandbox));
            }
        }
        Ok(processes)
    }
}

/// Binds the metrics address now, so a taken port fails the build.
fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, WorkerError> {
    let listener = TcpListener::bind(addr).map_err(|source| WorkerError::MetricsListen { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| WorkerError::MetricsListen { addr, source })?;
    Ok(listener)
}

/// `<host>-<pid>-<random>`.
fn default_worker_id() -> String {
    format!(
        "{}-{}-{}",
        heartbeat::hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}
