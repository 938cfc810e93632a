//! The AMQP objects of SPEC §3, every name under the namespace, and their declaration.

use crate::config::QueueType;
use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Error as AmqpError, ExchangeKind};

/// The header that carries why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-jobfleet-reason";
/// The header on a job copy waiting out a retry back-off: the attempt that failed.
pub const RETRY_HEADER: &str = "x-jobfleet-retry";
/// The header marking a job copy parked in a delay queue while another worker owns the job
/// (see `docs/design.md`, "long jobs and consumer_timeout").
pub const HOLD_HEADER: &str = "x-jobfleet-hold";

/// The names of one fleet's AMQP objects, all under its namespace (Redis keys: [`crate::coordinator::Keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    /// The topology of namespace `ns`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Topology {
            namespace: namespace.into(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `NS.jobs`: direct exchange, routing key = group.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.namespace)
    }

    /// `NS.results`: topic exchange, routing key `<group>.<function>.<status>`.
    pub fn results_exchange(&self) -> String {
        format!("{}.results", self.namespace)
    }

    /// `NS.control`: fanout exchange for cancel broadcasts.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.namespace)
    }

    /// `NS.dead`: the fanout dead-letter exchange and the queue bound to it.
    pub fn dead_letters(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// `NS.flows`: the headers exchange `NS.results` passes every result to, and the queue
    /// bound to it for the results of workflow steps and batch jobs (those carrying
    /// [`crate::publish::FLOW_HEADER`]), which the masters' workflow driver consumes.
    pub fn flows(&self) -> String {
        format!("{}.flows", self.namespace)
    }

    /// Declares [`Topology::flows`]: the exchange, bound to `NS.results` for every result,
    /// and the queue (of `queue_type`), bound to it for results that carry the flow
    /// header. Other results stop at the exchange: they cost a routing step, no queue.
    pub async fn declare_flows(&self, channel: &Channel, queue_type: QueueType) -> Result<(), AmqpError> {
        let flows = self.flows();
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                flows.as_str().into(),
                ExchangeKind::Headers,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_bind(
                flows.as_str().into(),
                self.results_exchange().into(),
                "#".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        declare_durable_queue(channel, &flows, queue_type_arguments(queue_type)).await?;
        for kind in ["workflow", "batch"] {
            let mut arguments = FieldTable::default();
            arguments.insert("x-match".into(), long_string("all".into()));
            arguments.insert(crate::publish::FLOW_HEADER.into(), long_string(kind.into()));
            channel
                .queue_bind(
                    flows.as_str().into(),
                    flows.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    arguments,
                )
                .await?;
        }
        Ok(())
    }

    /// `NS.group.<group>`: a group's durable queue.
    pub fn group_queue(&self, group: &str) -> String {
        format!("{}.group.{group}", self.namespace)
    }

    /// `NS.delay.<group>.<ms>`: holds a group's messages for `ms`, then dead-letters them
    /// back to the group's queue (retry back-off, parked copies).
    pub fn delay_queue(&self, group: &str, delay_ms: u64) -> String {
        format!("{}.delay.{group}.{delay_ms}", self.namespace)
    }

    /// Declares the four exchanges: all a client needs (a producer publishes to `NS.jobs`,
    /// a subscriber binds its queue to `NS.results`). Exchanges have no home node: on a
    /// cluster they stay usable while any node runs.
    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let exchanges = [
            (self.jobs_exchange(), ExchangeKind::Direct),
            (self.results_exchange(), ExchangeKind::Topic),
            (self.control_exchange(), ExchangeKind::Fanout),
            (self.dead_letters(), ExchangeKind::Fanout),
        ];
        for (name, kind) in exchanges {
            channel
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await?;
        }
        Ok(())
    }

    /// Declares the exchanges and the dead-letter queue `NS.dead`, of `dead_letters` type
    /// ([`Config::dead_letters_queue_type`](crate::config::Config::dead_letters_queue_type):
    /// quorum when a group is, so that on a cluster it is not a queue of one node that
    /// every session start and dead-letter copy depends on). The master and workers
    /// declare it; clients only need [`Topology::declare_exchanges`].
    pub async fn declare_base(&self, channel: &Channel, dead_letters: QueueType) -> Result<(), AmqpError> {
        self.declare_exchanges(channel).await?;
        let dead = self.dead_letters();
        declare_durable_queue(channel, &dead, queue_type_arguments(dead_letters)).await?;
        bind(channel, &dead, &dead, "").await
    }

    /// Declares a group's queue (dead-lettering to `NS.dead`) and binds it to `NS.jobs`;
    /// with `max_priority`, a priority queue (`x-max-priority`, a classic queue's feature).
    /// A queue declared before with other arguments (another `max_priority`) is refused by
    /// the broker with PRECONDITION_FAILED.
    pub async fn declare_group(
        &self,
        channel: &Channel,
        group: &str,
        queue_type: QueueType,
        max_priority: Option<u8>,
    ) -> Result<(), AmqpError> {
        let queue = self.group_queue(group);
        let mut arguments = dead_lettering(self.dead_letters(), queue_type);
        if let Some(max) = max_priority {
            arguments.insert("x-max-priority".into(), AMQPValue::LongInt(max.into()));
        }
        declare_durable_queue(channel, &queue, arguments).await?;
        bind(channel, &queue, &self.jobs_exchange(), group).await
    }

    /// Declares the delay queue of `group` for `delay_ms`, of the group's `queue_type`, and
    /// returns its name. A quorum delay queue dead-letters at least once (`x-dead-letter-strategy`,
    /// which needs `x-overflow = reject-publish`): a copy whose way back to `NS.jobs` fails stays
    /// in the queue and is retried, where the default (at most once) would drop it.
    pub async fn declare_delay(
        &self,
        channel: &Channel,
        group: &str,
        delay_ms: u64,
        queue_type: QueueType,
    ) -> Result<String, AmqpError> {
        let queue = self.delay_queue(group, delay_ms);
        let mut arguments = dead_lettering(self.jobs_exchange(), queue_type);
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay_ms as i64));
        arguments.insert("x-dead-letter-routing-key".into(), long_string(group.to_string()));
        if queue_type == QueueType::Quorum {
            arguments.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once".into()),
            );
            arguments.insert("x-overflow".into(), long_string("reject-publish".into()));
        }
        declare_durable_queue(channel, &queue, arguments).await?;
        Ok(queue)
    }
}

/// The arguments of a queue of `queue_type` that dead-letters to `exchange`.
fn dead_lettering(exchange: String, queue_type: QueueType) -> FieldTable {
    let mut arguments = queue_type_arguments(queue_type);
    arguments.insert("x-dead-letter-exchange".into(), long_string(exchange));
    arguments
}

/// The arguments that make a queue of `queue_type`: `x-queue-type = quorum` for a quorum
/// queue, none for a classic one (the vhost's default type applies, as it always has).
pub fn queue_type_arguments(queue_type: QueueType) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue_type == QueueType::Quorum {
        arguments.insert("x-queue-type".into(), long_string("quorum".into()));
    }
    arguments
}

/// Declares the durable queue `name` with `arguments` (a no-op when it exists alike).
async fn declare_durable_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name.into(), durable, arguments).await?;
    Ok(())
}

/// Binds `queue` to `exchange` with `routing_key`.
pub async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), AmqpError> {
    let options = QueueBindOptions::default();
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            options,
            FieldTable::default(),
        )
        .await
}

fn long_string(value: String) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// Reads a string header from a message's headers.
pub fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(&ShortString::from(name))?;
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_lives_under_the_namespace() {
        let t = Topology::new("ns1");
        assert_eq!(t.jobs_exchange(), "ns1.jobs");
        assert_eq!(t.results_exchange(), "ns1.results");
        assert_eq!(t.control_exchange(), "ns1.control");
        assert_eq!(t.dead_letters(), "ns1.dead");
        assert_eq!(t.group_queue("etl"), "ns1.group.etl");
        assert_eq!(t.delay_queue("etl", 250), "ns1.delay.etl.250");
    }
}
