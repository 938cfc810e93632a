//! A worker's own copy of a job (parked or redelivered) that reaches it after the job's
//! function returned but before its outcome is recorded must not run the job again: the
//! job stays listed as running until its outcome is settled, so the copy is parked and,
//! when it comes back, finds the job ended.
//!
//! The window between the function's return and the recorded outcome is a few
//! microseconds in a real run; the fail point `worker-before-settle` (the worker's
//! `failpoints` feature) holds it open for two seconds. Fail points are global to a
//! process, so this file holds one test: it runs in a test binary of its own.

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::lapin::types::AMQPValue;
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_common::publish::{persistent_properties, publish_job};
use jobfleet_common::topology::HOLD_HEADER;
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the worker waits between the function's return and settling its outcome.
const SETTLE_PAUSE_MS: u64 = 2_000;
/// How long the job's function runs.
const JOB_MS: u64 = 200;

const FLEET: &str = r#"
[groups.default.functions.counted]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_own_copy_arriving_before_the_outcome_is_recorded_does_not_run_the_job_again() {
    let mut env = TestEnv::with_config("own-copy", FLEET);
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    // Several job slots: a slot is free for the copy while the job still holds its own.
    let builder = env.worker().concurrency(4).function("counted", move |_: Value| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(JOB_MS)).await;
            Ok(json!("done"))
        }
    });
    let worker_id = env.start_worker(builder).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    fail::cfg("worker-before-settle", &format!("return({SETTLE_PAUSE_MS})")).unwrap();

    let job = JobMessage::new("default", "counted", json!({}));
    producer.publish(&job).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let record = env.coordinator.job(&job.id).await.ok()??;
        (record.status == JobStatus::Started).then_some(())
    })
    .await;
    // The function has returned; the worker waits at the fail point with the job started.
    tokio::time::sleep(Duration::from_millis(JOB_MS + SETTLE_PAUSE_MS / 4)).await;
    let record = env.coordinator.job(&job.id).await.unwrap().expect("the record");
    assert_eq!(
        record.status,
        JobStatus::Started,
        "the copy must arrive before the outcome"
    );

    // The worker's own parked copy, as its hold or long-job handoff places it.
    let pool = amqp_pool(&env.config.amqp_url, 1, "jobfleet-test-own-copy").unwrap();
    let channel = open_channel(&pool, true).await.unwrap();
    let mut properties = persistent_properties(&job.id, None);
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(HOLD_HEADER.into(), AMQPValue::LongString(worker_id.into()));
    properties = properties.with_headers(headers);
    publish_job(&channel, &env.topology, &job, properties)
        .await
        .unwrap();

    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(15),
    )
    .await;
    fail::remove("worker-before-settle");
    let first = &results[&job.id][0];
    assert_eq!(first.status, JobStatus::Finished, "{first:?}");
    assert_eq!(first.attempts, 1, "{first:?}");
    // The copy comes back after the hold delay and finds the job ended: nothing more runs,
    // and any result it republishes is the same outcome.
    let late = drain_results(&mut subscriber, Duration::from_secs(3)).await;
    for result in &late {
        assert_eq!(
            (result.status, result.attempts),
            (first.status, first.attempts),
            "one outcome per job: {late:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the job ran again");
    let record = env.coordinator.job(&job.id).await.unwrap().expect("the record");
    assert_eq!((record.status, record.attempts), (JobStatus::Finished, 1));

    let _ = channel.close(200, "".into()).await;
    pool.close();
    env.stop_workers().await;
}
