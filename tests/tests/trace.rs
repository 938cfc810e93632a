//! W3C trace context: a `traceparent` on the job message (from a producer, or from the
//! HTTP submit) continues into the job: the sandbox and the result message carry the same
//! trace id with the job's own span id.

use futures::StreamExt;
use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use jobfleet_common::message::JobMessage;
use jobfleet_common::topology::header_str;
use jobfleet_common::trace::{TraceParent, TRACEPARENT};
use jobfleet_tests::TestEnv;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_trace_continues_into_the_sandbox_and_the_result() {
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/sandbox_probe.py");
    let fleet = format!(
        "[groups.default.functions.probe]\nsandbox = \"process\"\ncommand = [\"python3\", \"{}\"]\n",
        probe.display()
    );
    let mut env = TestEnv::with_config("trace", &fleet);
    env.start_worker(env.worker()).await;
    let master = env.start_master().await;

    // A raw consumer, to see the result message's headers.
    let pool = amqp_pool(&env.config.amqp_url, 1, "trace-test").unwrap();
    let channel = open_channel(&pool, false).await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            env.topology.results_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let mut results = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();

    let producer = env.producer().await;
    let job = JobMessage::new("default", "probe", json!({"mode": "env"}));
    producer.publish_traced(&job, PARENT).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("a result")
        .unwrap()
        .unwrap();
    let result = jobfleet_common::codec::decode_result(None, &delivery.data).unwrap();
    assert_eq!(result.id, job.id);
    let sandbox = TraceParent::parse(
        result.result.unwrap()["TRACEPARENT"]
            .as_str()
            .expect("TRACEPARENT in the sandbox"),
    )
    .unwrap();
    let header = TraceParent::parse(
        &header_str(delivery.properties.headers().as_ref(), TRACEPARENT).expect("traceparent on the result"),
    )
    .unwrap();
    let parent = TraceParent::parse(PARENT).unwrap();
    assert_eq!(sandbox.trace_id, parent.trace_id);
    assert_ne!(
        sandbox.parent_id, parent.parent_id,
        "the job has a span of its own"
    );
    assert_eq!(header, sandbox, "the result carries the job's context");

    // The same through the HTTP API; a malformed header is ignored, not an error.
    let http = reqwest::Client::new();
    let reply = http
        .post(format!("{master}/v1/jobs"))
        .header(TRACEPARENT, PARENT)
        .json(&json!({"group": "default", "function": "probe", "args": {"mode": "env"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let delivery = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("a result")
        .unwrap()
        .unwrap();
    let header =
        TraceParent::parse(&header_str(delivery.properties.headers().as_ref(), TRACEPARENT).unwrap())
            .unwrap();
    assert_eq!(header.trace_id, parent.trace_id);
    let reply = http
        .post(format!("{master}/v1/jobs"))
        .header(TRACEPARENT, "garbage")
        .json(&json!({"group": "default", "function": "probe", "args": {"mode": "env"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let delivery = tokio::time::timeout(Duration::from_secs(20), results.next())
        .await
        .expect("a result")
        .unwrap()
        .unwrap();
    assert!(header_str(delivery.properties.headers().as_ref(), TRACEPARENT).is_none());
    pool.close();
    env.stop_workers().await;
}
