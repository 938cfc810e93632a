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

pub mod activity;
mod attempt;
mod builder;
pub mod builtins;
mod consumer;
mod control;
mod copy;
mod delivery;
mod error;
mod execute;
mod failpoint;
pub mod function;
mod heartbeat;
mod intake;
pub mod metrics;
pub mod sandbox;
mod session;
mod watchdog;

pub use activity::JobContext;
pub use builder::WorkerBuilder;
pub use error::WorkerError;
pub use jobfleet_common::message::{ErrorKind, JobError};
pub use metrics::WorkerMetrics;

use consumer::Shared;
use heartbeat::Heartbeat;
use jobfleet_common::client::{self, AmqpPool};
use jobfleet_common::config::redact_url;
use session::Session;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

/// Stalled sessions in a row (no delivery while jobs wait) after which the worker exits.
const MAX_STALLS: u32 = 3;

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
        let span = tracing::info_span!("worker", worker_id = %self.shared.worker_id);
        async move {
            let amqp = redact_url(&self.shared.config.amqp_url);
            info!(groups = ?self.groups, concurrency = self.concurrency, amqp = %amqp, "worker starting");
            // Stops the metrics server however run() returns; it serves through the drain.
            let metrics_stop = CancellationToken::new();
            let _metrics_guard = metrics_stop.clone().drop_guard();
            let metrics_server = self.serve_metrics(metrics_stop.clone());
            let heartbeat = self.heartbeat();
            heartbeat.register(&shutdown).await?;
            let heartbeat_stop = CancellationToken::new();
            let heartbeat = tokio::spawn(heartbeat.run(heartbeat_stop.clone()));
            let tracker = TaskTracker::new();
            let (session, failure) = match self.consume_until_shutdown(&tracker, &shutdown).await {
                Ok(session) => (session, None),
                Err(e) => (None, Some(e)),
            };
            self.drain(&tracker, session).await;
            heartbeat_stop.cancel();
            let _ = heartbeat.await;
            if let Err(e) = self
                .shared
                .coordinator
                .deregister(&self.shared.worker_id, &self.groups)
                .await
            {
                warn!(error = %e, "could not remove the worker record; it expires on its own");
            }
            self.pool.close();
            metrics_stop.cancel();
            if let Some(server) = metrics_server {
                let _ = server.await;
            }
            info!("worker stopped");
            failure.map_or(Ok(()), Err)
        }
        .instrument(span)
        .await
    }

    /// Starts the metrics server on the listener bound at build, if any.
    fn serve_metrics(&mut self, stop: CancellationToken) -> Option<JoinHandle<()>> {
        match self
            .metrics_listener
            .take()
            .map(tokio::net::TcpListener::from_std)
        {
            Some(Ok(listener)) => {
                info!(addr = ?listener.local_addr().ok(), "serving /metrics");
                let server = metrics::serve(listener, self.shared.metrics.clone(), stop);
                Some(tokio::spawn(server.instrument(tracing::info_span!("metrics"))))
            }
            Some(Err(e)) => {
                error!(error = %e, "cannot serve /metrics");
                None
            }
            None => None,
        }
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            shared: self.shared.clone(),
            groups: self.groups.clone(),
            concurrency: self.concurrency,
            interval: self.heartbeat_interval,
            ttl: self.heartbeat_ttl,
        }
    }

    /// Runs broker sessions, reconnecting after failures, until shutdown. Returns the last
    /// session when shutdown ended it (the drain still needs it), or the failure that made
    /// reconnecting pointless.
    async fn consume_until_shutdown(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<Option<Session>, WorkerError> {
        let mut attempt = 0;
        let mut stalls = 0;
        while !shutdown.is_cancelled() {
            let mut delivered = false;
            let e = match self.consume(tracker, shutdown, &mut delivered).await {
                Ok(session) => return Ok(Some(session)),
                Err(e) => e,
            };
            if let WorkerError::Refused(amqp) = &e {
                // E.g. the group queue exists with another queue_type: retrying cannot
                // help, and a supervisor shows the error.
                error!(error = %amqp, "the broker refuses this worker's topology; stopping");
                return Err(e);
            }
            stalls = if e.is_stall() && !delivered { stalls + 1 } else { 0 };
            if stalls >= MAX_STALLS {
                // Reconnecting did not help: exit non-zero so a supervisor restarts us.
                error!(error = %e, "consumption keeps stalling; stopping");
                return Err(e);
            }
            warn!(error = %e, "consumption interrupted; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(client::backoff(attempt)) => {}
                _ = shutdown.cancelled() => {}
            }
            attempt += 1;
        }
        Ok(None)
    }

    /// Lets the running jobs finish within the drain timeout, then forces the rest back.
    /// The session's channel closes only after: closing it earlier would return the running
    /// jobs' messages to the queue before they are acknowledged.
    async fn drain(&self, tracker: &TaskTracker, session: Option<Session>) {
        info!(running = tracker.len(), "draining");
        tracker.close();
        if tokio::time::timeout(self.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                running = tracker.len(),
                "drain timeout: handing running jobs back"
            );
            self.shared.force_stop.cancel();
            tracker.wait().await;
        }
        if let Some(Session { channel, control }) = session {
            drop(control);
            let _ = channel.close(200, "worker stopped".into()).await;
        }
    }
}
