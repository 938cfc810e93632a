//! Any service can publish: a Python client (pika + msgpack, written from the spec)
//! publishes a job straight to RabbitMQ, a worker runs it, and the Python subscriber
//! receives its result.

use jobfleet_common::message::JobStatus;
use jobfleet_tests::TestEnv;
use serde_json::{json, Value};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_producer_and_subscriber_speak_the_wire_protocol() {
    let mut env = TestEnv::new("python");
    env.start_worker(env.worker().concurrency(2)).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/foreign_client.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["default", "wordcount", r#"{"text": "to be or not to be"}"#])
        .env("JOBFLEET_NAMESPACE", env.namespace())
        .env("JOBFLEET_AMQP_URL", &env.config.amqp_url)
        .output()
        .await
        .expect("python3 runs (scripts/services installs pika and msgpack)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(result["status"], "finished", "{result}");
    assert_eq!(result["result"], json!({"to": 2, "be": 2, "or": 1, "not": 1}));
    assert_eq!(result["attempts"], 1);
    assert_eq!(result["group"], "default");
    let id = result["id"].as_str().expect("an id");
    assert!(id.starts_with("py-"));
    assert!(result["submitted_at"].as_i64().is_some() && result["finished_at"].as_i64().is_some());

    // The coordinator created the record the foreign producer never wrote.
    let record = env.coordinator.job(id).await.unwrap().expect("a record");
    assert_eq!(record.status, JobStatus::Finished);
    assert_eq!(record.args, json!({"text": "to be or not to be"}));
    env.stop_workers().await;
}
