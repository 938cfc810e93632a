//! Cancel of a running job through the control exchange (SPEC §3): the worker stops the
//! sandbox, the job ends `canceled` exactly once, and the worker takes the next job.

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::codec;
use jobfleet_common::control::publish_cancel;
use jobfleet_common::coordinator::{EndEarly, EndRequest};
use jobfleet_common::lapin::options::BasicPublishOptions;
use jobfleet_common::lapin::BasicProperties;
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_broadcast_stops_the_running_job_and_frees_the_worker() {
    let mut env = TestEnv::new("cancel");
    // One job at a time: the echo below can only run once the canceled sleep let go.
    env.start_worker(env.worker().concurrency(1)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let pool = amqp_pool(&env.config.amqp_url, 1, "jobfleet-test-control").unwrap();
    let control = open_channel(&pool, true).await.unwrap();

    let sleeper = JobMessage::new("default", "sleep", json!({"ms": 30_000}));
    producer.publish(&sleeper).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let record = env.coordinator.job(&sleeper.id).await.ok()??;
        (record.status == JobStatus::Started).then_some(())
    })
    .await;

    // A control message of a type this version does not know is ignored, not fatal.
    let pause = codec::encode(&json!({"type": "pause", "group": "default"}));
    let properties = BasicProperties::default().with_content_type(codec::MSGPACK.into());
    control
        .basic_publish(
            env.topology.control_exchange().into(),
            "".into(),
            BasicPublishOptions::default(),
            &pause,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // So is a cancel of a job nobody runs.
    publish_cancel(&control, &env.topology, "no-such-job")
        .await
        .unwrap();

    let canceled_at = tokio::time::Instant::now();
    publish_cancel(&control, &env.topology, &sleeper.id)
        .await
        .unwrap();
    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&sleeper.id),
        Duration::from_secs(2),
    )
    .await;
    let result = &results[&sleeper.id][0];
    assert!(canceled_at.elapsed() < Duration::from_secs(2));
    assert_eq!(result.status, JobStatus::Canceled, "{result:?}");
    assert_eq!(
        result.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Canceled),
        "{result:?}"
    );
    assert_eq!(result.attempts, 1);

    let record = env
        .coordinator
        .job(&sleeper.id)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.error.map(|e| e.kind), Some(ErrorKind::Canceled));

    // The worker is free again: the next job runs to the end.
    let echo = JobMessage::new("default", "echo", json!("after the cancel"));
    producer.publish(&echo).await.unwrap();
    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&echo.id),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results[&echo.id][0].status, JobStatus::Finished);
    assert_eq!(results[&echo.id][0].result, Some(json!("after the cancel")));
    let late = drain_results(&mut subscriber, Duration::from_millis(300)).await;
    assert!(late.is_empty(), "one result per job: {late:?}");

    let _ = control.close(200, "".into()).await;
    pool.close();
    env.stop_workers().await;
}

/// The master's cancel of a running job, with or without the master having published
/// the result (it may die in between); returns the results seen for the canceled job.
async fn master_cancel(announced: bool) -> Vec<jobfleet_common::message::ResultMessage> {
    let mut env = TestEnv::new("cancel-cas");
    env.start_worker(env.worker().concurrency(1)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let pool = amqp_pool(&env.config.amqp_url, 1, "jobfleet-test-control").unwrap();
    let control = open_channel(&pool, true).await.unwrap();

    let sleeper = JobMessage::new("default", "sleep", json!({"ms": 30_000}));
    producer.publish(&sleeper).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let record = env.coordinator.job(&sleeper.id).await.ok()??;
        (record.status == JobStatus::Started).then_some(())
    })
    .await;

    // What the master does: compare-and-set started -> canceled, then broadcast.
    let error = JobError::new(ErrorKind::Canceled, "canceled by the master");
    let ended = env
        .coordinator
        .end_early(EndRequest {
            id: &sleeper.id,
            group: None,
            status: JobStatus::Canceled,
            error: &error,
            allowed_from: &[JobStatus::Queued, JobStatus::Started],
        })
        .await
        .unwrap();
    assert!(
        matches!(
            ended,
            EndEarly::Ended {
                previous: JobStatus::Started,
                ..
            }
        ),
        "{ended:?}"
    );
    if announced {
        if let EndEarly::Ended { record, .. } = &ended {
            env.coordinator
                .announced(&record.group, &record.id)
                .await
                .unwrap();
        }
    }
    publish_cancel(&control, &env.topology, &sleeper.id)
        .await
        .unwrap();

    // With one slot, the echo runs only once the sleep let go: well before its 30 s.
    let echo = JobMessage::new("default", "echo", json!(1));
    producer.publish(&echo).await.unwrap();
    let mut results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&echo.id),
        Duration::from_secs(5),
    )
    .await;
    for extra in drain_results(&mut subscriber, Duration::from_millis(300)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    assert_eq!(results[&echo.id][0].status, JobStatus::Finished);

    let record = env
        .coordinator
        .job(&sleeper.id)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(record.status, JobStatus::Canceled);
    assert_eq!(record.error, Some(error));

    let _ = control.close(200, "".into()).await;
    pool.close();
    env.stop_workers().await;
    results.remove(&sleeper.id).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_master_ended_and_announced_the_job_the_worker_stops_it_and_publishes_nothing() {
    let seen = master_cancel(true).await;
    assert!(
        seen.is_empty(),
        "the master published the job it ended, not the worker: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_master_died_before_announcing_a_cancel_the_worker_publishes_it() {
    let seen = master_cancel(false).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].status, JobStatus::Canceled);
    assert_eq!(seen[0].error.as_ref().unwrap().message, "canceled by the master");
}
