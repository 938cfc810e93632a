//! The client library: a [`Producer`] that publishes jobs with publisher confirms and
//! records them as queued, and a [`ResultSubscriber`] that yields decoded results.
//! Both reconnect on their own after a broker or Redis restart.

use crate::broker::{AmqpManager, BrokerError};
use crate::codec::{self, DecodeError};
use crate::config::{Config, QueueType};
use crate::coordinator::{Coordinator, CoordinatorError};
use crate::message::{is_valid_job_id, is_valid_name, JobMessage, ResultMessage, MAX_PRIORITY};
use crate::publish::publish_jobs;
use crate::tls::Endpoint;
use crate::topology::{self, Topology};
use deadpool::managed::{BuildError, PoolConfig, Timeouts};
use deadpool::Runtime;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{self, Channel, ConnectionStatus, Consumer};
use std::time::Duration;
use tokio::sync::Mutex;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker refused or the connection broke.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// No broker connection could be had.
    #[error("amqp pool: {0}")]
    Pool(#[from] deadpool::managed::PoolError<lapin::Error>),
    /// The pool could not be built from the URL.
    #[error("amqp config: {0}")]
    Config(#[from] BuildError),
    /// The URL or the `[tls]` settings are unusable.
    #[error("amqp config: {0}")]
    Broker(#[from] Box<BrokerError>),
    /// Redis failed.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// The broker did not take the message (a negative confirm).
    #[error("the broker rejected job {0} (nack)")]
    Nacked(String),
    /// No queue exists for the job's group, so the broker returned it.
    #[error("job {id} is unroutable: no queue for group {group:?} (start a worker or the master first)")]
    Unroutable {
        /// The job.
        id: String,
        /// Its group.
        group: String,
    },
    /// The job breaks a rule of the wire protocol.
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A result could not be decoded.
    #[error("undecodable result: {0}")]
    Decode(#[from] DecodeError),
    /// The retry deadline passed while the broker or Redis stayed unreachable.
    #[error("gave up after {0:?}: {1}")]
    GaveUp(Duration, Box<ClientError>),
    /// The broker did not answer on an open connection in time (the connection is dropped).
    #[error("the broker did not answer within {0:?}")]
    Unresponsive(Duration),
}

impl ClientError {
    /// Whether the error is a lost or refused connection, worth a reconnect and retry.
    pub fn is_connection_error(&self) -> bool {
        match self {
            // A refusal that retrying cannot fix (a queue declared with other arguments, no
            // permission) is not a connection error.
            ClientError::Amqp(e) => !is_refusal(e),
            ClientError::Pool(_) => true,
            ClientError::Coordinator(e) => e.is_connection_error(),
            _ => false,
        }
    }

    /// Whether a retry, on a fresh channel, may succeed: a connection error, or a negative
    /// confirm (the broker could not take the message then: on a cluster a queue between
    /// leaders, or a channel whose view of a quorum queue went stale after a node failed,
    /// which keeps refusing until the channel is replaced).
    pub fn is_retryable(&self) -> bool {
        self.is_connection_error() || matches!(self, ClientError::Nacked(_))
    }
}

/// Whether the broker refused an operation for a reason retrying cannot fix: a declare with
/// other arguments than the existing object (PRECONDITION_FAILED), or no permission.
pub fn is_refusal(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    match e.kind() {
        lapin::ErrorKind::ProtocolError(error) => matches!(
            error.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED)
                | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
        ),
        _ => false,
    }
}

/// A pool of AMQP connections.
pub type AmqpPool = deadpool::managed::Pool<AmqpManager>;
type Pool = AmqpPool;

/// Builds a pool of connections to `endpoint` (a URL, or a URL with `[tls]` settings such as
/// [`Config::amqp_endpoint`]), with explicit timeouts.
pub fn amqp_pool(
    endpoint: impl Into<Endpoint>,
    max_size: usize,
    connection_name: &str,
) -> Result<Pool, ClientError> {
    let manager = AmqpManager::new(&endpoint.into(), connection_name).map_err(Box::new)?;
    Pool::builder(manager)
        .config(PoolConfig {
            max_size,
            timeouts: Timeouts {
                wait: Some(Duration::from_secs(10)),
                create: Some(Duration::from_secs(10)),
                recycle: Some(Duration::from_secs(5)),
            },
            ..PoolConfig::default()
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(ClientError::from)
}

/// Opens a channel on a pooled connection, in confirm mode when `confirms` is set.
pub async fn open_channel(pool: &Pool, confirms: bool) -> Result<Channel, ClientError> {
    Ok(open_watched_channel(pool, confirms).await?.0)
}

/// [`open_channel`], with the status of the channel's connection.
async fn open_watched_channel(
    pool: &Pool,
    confirms: bool,
) -> Result<(Channel, ConnectionStatus), ClientError> {
    let connection = pool.get().await?;
    let channel = connection.create_channel().await?;
    if confirms {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    Ok((channel, connection.status().clone()))
}

/// The backoff before attempt `attempt` (0-based) of a reconnect: exponential from 100 ms
/// to 5 s, with jitter so a fleet does not reconnect in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() % (base as u128 / 2 + 1)) as u64;
    Duration::from_millis(base / 2 + jitter)
}

/// How long a channel replaced after an error stays open before it is closed.
pub const RETIRED_CHANNEL_GRACE: Duration = Duration::from_secs(10);

/// A channel (in confirm mode when asked) that is reopened after a failure.
pub struct ChannelSlot {
    pool: Pool,
    /// The channel and the status of its connection (which says whether the broker blocks it).
    channel: Mutex<Option<(Channel, ConnectionStatus)>>,
    confirms: bool,
}

impl ChannelSlot {
    /// A slot over `pool`; the channel opens on first use.
    pub fn new(pool: Pool, confirms: bool) -> Self {
        ChannelSlot {
            pool,
            channel: Mutex::new(None),
            confirms,
        }
    }

    /// The open channel, reopened if it broke.
    pub async fn get(&self) -> Result<Channel, ClientError> {
        let mut slot = self.channel.lock().await;
        if let Some((channel, _)) = slot.as_ref().filter(|(c, _)| c.status().connected()) {
            return Ok(channel.clone());
        }
        let (channel, connection) = open_watched_channel(&self.pool, self.confirms).await?;
        *slot = Some((channel.clone(), connection));
        Ok(channel)
    }

    /// Whether the broker blocks the current channel's connection (`connection.blocked`: a
    /// memory or disk alarm). Nothing written on it leaves until the alarm clears, so a
    /// caller that must answer in time should not publish now.
    pub async fn blocked(&self) -> bool {
        let slot = self.channel.lock().await;
        slot.as_ref().is_some_and(|(_, connection)| connection.blocked())
    }

    /// Forgets the channel after an error, so the next [`ChannelSlot::get`] opens a fresh
    /// one. A forgotten channel still open is closed [`RETIRED_CHANNEL_GRACE`] later (the
    /// confirms of publishes other tasks made on it still arrive), not leaked on its pooled
    /// connection.
    pub async fn invalidate(&self) {
        let Some((channel, _)) = self.channel.lock().await.take() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(RETIRED_CHANNEL_GRACE).await;
            if channel.status().connected() {
                let _ = channel.close(200, "replaced after an error".into()).await;
            }
        });
    }
}

/// Publishes jobs to `NS.jobs` with publisher confirms and records them as queued.
///
/// Many publishes share one channel and their confirms are awaited together, so callers
/// get throughput by calling [`Producer::publish_many`] or by publishing from many tasks.
pub struct Producer {
    slot: ChannelSlot,
    topology: Topology,
    coordinator: Coordinator,
    retry_for: Duration,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("namespace", &self.topology.namespace())
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to the broker and Redis of `config` and declares the exchanges.
    pub async fn connect(config: &Config) -> Result<Producer, ClientError> {
        let topology = Topology::new(&config.namespace);
        let coordinator = Coordinator::from_config(config, topology.clone())?;
        let pool = amqp_pool(config.amqp_endpoint(), 2, "jobfleet-producer")?;
        Producer::new(pool, coordinator).await
    }

    /// A producer over an existing AMQP pool and coordinator.
    pub async fn new(pool: Pool, coordinator: Coordinator) -> Result<Producer, ClientError> {
        let topology = coordinator.topology().clone();
        let slot = ChannelSlot::new(pool, true);
        topology.declare_exchanges(&slot.get().await?).await?;
        Ok(Producer {
            slot,
            topology,
            coordinator,
            retry_for: Duration::from_secs(30),
        })
    }

    /// How long a publish keeps retrying while the broker or Redis is unreachable or the
    /// broker refuses it (a nack; each retry on a fresh channel) (default 30 s). Retrying is safe: a job id runs once however often it is published.
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// The coordinator this producer records jobs with.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Publishes one job and records it as queued.
    pub async fn publish(&self, job: &JobMessage) -> Result<(), ClientError> {
        self.publish_many(std::slice::from_ref(job)).await
    }

    /// Publishes one job that continues the caller's trace: `traceparent` (W3C) travels in
    /// the message's `traceparent` header to the worker, which continues the trace.
    pub async fn publish_traced(&self, job: &JobMessage, traceparent: &str) -> Result<(), ClientError> {
        if crate::trace::TraceParent::parse(traceparent).is_none() {
            return Err(ClientError::InvalidJob(format!(
                "invalid traceparent {traceparent:?}"
            )));
        }
        self.publish_all(std::slice::from_ref(job), Some(traceparent))
            .await
    }

    /// Publishes jobs (a job's `priority` as the AMQP property too), waits for all their
    /// confirms at once, then records them as queued in one pipelined Redis round trip (a
    /// second one keeps the priorities of jobs that have one). Retries connection failures
    /// until the retry deadline; when it returns `Ok`, every job is in the broker.
    pub async fn publish_many(&self, jobs: &[JobMessage]) -> Result<(), ClientError> {
        self.publish_all(jobs, None).await
    }

    async fn publish_all(&self, jobs: &[JobMessage], traceparent: Option<&str>) -> Result<(), ClientError> {
        for job in jobs {
            validate(job)?;
        }
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            match self.try_publish_many(jobs, traceparent).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    self.slot.invalidate().await;
                    if started.elapsed() >= self.retry_for {
                        return Err(ClientError::GaveUp(self.retry_for, Box::new(e)));
                    }
                    tracing::warn!(error = %e, "publish failed; reconnecting");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_publish_many(
        &self,
        jobs: &[JobMessage],
        traceparent: Option<&str>,
    ) -> Result<(), ClientError> {
        let channel = self.slot.get().await?;
        publish_jobs(&channel, &self.topology, jobs, traceparent).await?;
        self.coordinator.record_queued(jobs).await?;
        self.coordinator.record_priorities(jobs).await?;
        Ok(())
    }
}

/// Checks what the broker cannot: the id alphabet and the names usable in routing keys.
fn validate(job: &JobMessage) -> Result<(), ClientError> {
    if !is_valid_job_id(&job.id) {
        return Err(ClientError::InvalidJob(format!(
            "id {:?}: 1..128 chars of [A-Za-z0-9._:-]",
            job.id
        )));
    }
    if !is_valid_name(&job.group) || !is_valid_name(&job.function) {
        return Err(ClientError::InvalidJob(format!(
            "group {:?} / function {:?}: 1..64 chars of [A-Za-z0-9_-]",
            job.group, job.function
        )));
    }
    if let Some(priority) = job.priority.filter(|&p| p > MAX_PRIORITY) {
        return Err(ClientError::InvalidJob(format!(
            "priority {priority} is not in 0..={MAX_PRIORITY}"
        )));
    }
    Ok(())
}

/// Receives decoded results from `NS.results` through its own queue bound with patterns
/// such as `etl.#`, `*.*.failed` or `#`.
///
/// By default the queue is exclusive to this subscriber and goes away with it; with
/// [`ResultSubscriber::durable`] it is a named durable queue that keeps results while the
/// subscriber is away. Either way the subscriber reconnects after a broker restart.
pub struct ResultSubscriber {
    pool: Pool,
    topology: Topology,
    patterns: Vec<String>,
    /// The named durable queue and its type; `None`: an exclusive queue.
    queue: Option<(String, QueueType)>,
    consumer: Option<Subscription>,
}

/// A live consumer of a subscriber's queue, on a connection it holds out of the pool (so
/// that a connection found dead is discarded, not handed out again).
struct Subscription {
    connection: deadpool::managed::Object<AmqpManager>,
    channel: Channel,
    consumer: Consumer,
    /// The queue's name (the broker names an exclusive one).
    queue: String,
}

/// How long a subscriber waits for a result before it checks that the broker still
/// answers on its channel: a connection can die without its consumer ever hearing of it
/// (a broker restart seen through a half-open socket), and a subscriber must not wait on
/// it forever.
const SUBSCRIBER_IDLE_CHECK: Duration = Duration::from_secs(5);
/// How long subscribing, or one liveness check, may take.
const SUBSCRIBER_DEADLINE: Duration = Duration::from_secs(10);

impl Subscription {
    /// Whether the broker still answers on the subscription's channel (a passive declare
    /// of its queue within [`SUBSCRIBER_DEADLINE`]).
    async fn answers(&self) -> bool {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declare = self
            .channel
            .queue_declare(self.queue.as_str().into(), options, FieldTable::default());
        matches!(
            tokio::time::timeout(SUBSCRIBER_DEADLINE, declare).await,
            Ok(Ok(_))
        )
    }
}

/// Takes an unresponsive connection out of its pool (it would be handed out again: its
/// status still says connected) and closes it in the background.
fn discard_connection(connection: deadpool::managed::Object<AmqpManager>) {
    let connection = deadpool::managed::Object::take(connection);
    tokio::spawn(async move {
        let close = connection.close(320, "unresponsive".into());
        let _ = tokio::time::timeout(SUBSCRIBER_DEADLINE, close).await;
    });
}

impl std::fmt::Debug for ResultSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultSubscriber")
            .field("patterns", &self.patterns)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl ResultSubscriber {
    /// Subscribes with an exclusive, auto-delete queue on the broker of `endpoint` (a URL,
    /// or [`Config::amqp_endpoint`]).
    pub async fn connect(
        endpoint: impl Into<Endpoint>,
        topology: Topology,
        patterns: &[&str],
    ) -> Result<ResultSubscriber, ClientError> {
        Self::open(endpoint.into(), topology, patterns, None).await
    }

    /// Subscribes with a named durable queue that outlives the subscriber (a classic queue:
    /// on a cluster it lives on one node, see [`ResultSubscriber::durable_quorum`]).
    pub async fn durable(
        endpoint: impl Into<Endpoint>,
        topology: Topology,
        queue: &str,
        patterns: &[&str],
    ) -> Result<ResultSubscriber, ClientError> {
        let queue = Some((queue.to_string(), QueueType::Classic));
        Self::open(endpoint.into(), topology, patterns, queue).await
    }

    /// Subscribes with a named durable **quorum** queue, for a RabbitMQ cluster: replicated,
    /// it keeps the results published while any one node is down (a classic queue on that
    /// node would miss them). The queue's type cannot change later: a queue declared with
    /// [`ResultSubscriber::durable`] must be deleted first.
    pub async fn durable_quorum(
        endpoint: impl Into<Endpoint>,
        topology: Topology,
        queue: &str,
        patterns: &[&str],
    ) -> Result<ResultSubscriber, ClientError> {
        let queue = Some((queue.to_string(), QueueType::Quorum));
        Self::open(endpoint.into(), topology, patterns, queue).await
    }

    async fn open(
        endpoint: Endpoint,
        topology: Topology,
        patterns: &[&str],
        queue: Option<(String, QueueType)>,
    ) -> Result<ResultSubscriber, ClientError> {
        let pool = amqp_pool(endpoint, 1, "jobfleet-subscriber")?;
        let mut subscriber = ResultSubscriber {
            pool,
            topology,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            queue,
            consumer: None,
        };
        subscriber.subscribe().await?;
        Ok(subscriber)
    }

    /// Subscribes on a pooled connection; one that does not answer within
    /// [`SUBSCRIBER_DEADLINE`] is discarded, so the next attempt opens a new one.
    async fn subscribe(&mut self) -> Result<(), ClientError> {
        let connection = self.pool.get().await?;
        match tokio::time::timeout(SUBSCRIBER_DEADLINE, self.consume_on(&connection)).await {
            Ok(Ok((channel, consumer, queue))) => {
                self.consumer = Some(Subscription {
                    connection,
                    channel,
                    consumer,
                    queue,
                });
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                discard_connection(connection);
                Err(ClientError::Unresponsive(SUBSCRIBER_DEADLINE))
            }
        }
    }

    /// Declares the subscriber's queue and bindings on `connection` and starts consuming:
    /// the channel, the consumer and the queue's name.
    async fn consume_on(
        &self,
        connection: &lapin::Connection,
    ) -> Result<(Channel, Consumer, String), ClientError> {
        let channel = connection.create_channel().await?;
        self.topology.declare_exchanges(&channel).await?;
        let (name, options, arguments) = match &self.queue {
            Some((name, queue_type)) => (
                name.clone(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                topology::queue_type_arguments(*queue_type),
            ),
            None => (
                String::new(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        };
        let queue = channel.queue_declare(name.into(), options, arguments).await?;
        let exchange = self.topology.results_exchange();
        for pattern in &self.patterns {
            topology::bind(&channel, queue.name().as_str(), &exchange, pattern).await?;
        }
        channel.basic_qos(500, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer, queue.name().to_string()))
    }

    /// Stops subscribing: closes the subscription's channel and connection (an exclusive
    /// queue goes with them; a durable one stays, with its bindings) and the pool.
    pub async fn close(mut self) {
        if let Some(subscription) = self.consumer.take() {
            let _ = subscription.channel.close(200, "closed".into()).await;
            let connection = deadpool::managed::Object::take(subscription.connection);
            let _ = tokio::time::timeout(SUBSCRIBER_DEADLINE, connection.close(200, "closed".into())).await;
        }
        self.pool.close();
    }

    /// The next result. An undecodable message is acknowledged and returned as an error;
    /// a broken connection is reopened (an exclusive queue misses what came meanwhile).
    pub async fn next(&mut self) -> Result<ResultMessage, ClientError> {
        let mut attempt = 0;
        loop {
            if self.consumer.is_none() {
                if let Err(e) = self.subscribe().await {
                    tracing::warn!(error = %e, "result subscriber reconnecting");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
            }
            let subscription = self.consumer.as_mut().expect("subscribed above");
            let Ok(next) = tokio::time::timeout(SUBSCRIBER_IDLE_CHECK, subscription.consumer.next()).await
            else {
                if !subscription.answers().await {
                    tracing::warn!("the broker stopped answering the result subscriber; resubscribing");
                    if let Some(dead) = self.consumer.take() {
                        discard_connection(dead.connection);
                    }
                }
                continue;
            };
            match next {
                Some(Ok(delivery)) => {
                    let decoded = codec::decode_result(
                        delivery.properties.content_type().as_ref().map(|c| c.as_str()),
                        &delivery.data,
                    );
                    // Acknowledging a broken channel fails; the message then comes back.
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                    return decoded.map_err(ClientError::from);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "result consumer failed");
                    self.consumer = None;
                }
                None => self.consumer = None,
            }
        }
    }
}
