//! Faults are normal: a worker killed with SIGKILL mid-batch, and workers stopped with
//! SIGTERM (drained, or handing jobs back past the drain timeout). Every job still ends
//! exactly once.

use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// Every id has results, all identical in status and content, and a finished record.
async fn assert_one_outcome_each(
    env: &TestEnv,
    ids: &[String],
    results: &HashMap<String, Vec<ResultMessage>>,
) {
    for id in ids {
        let got = &results[id];
        let first = &got[0];
        assert_eq!(first.status, JobStatus::Finished, "{first:?}");
        for other in got {
            assert_eq!(
                (other.status, &other.result, other.attempts),
                (first.status, &first.result, first.attempts),
                "two different outcomes for {id}"
            );
        }
    }
    for (id, record) in ids.iter().zip(env.coordinator.jobs(ids).await.unwrap()) {
        let record = record.unwrap_or_else(|| panic!("{id} has no record"));
        assert_eq!(record.status, JobStatus::Finished, "{id}");
        assert_eq!(
            record.attempts, results[id][0].attempts,
            "{id}: the result reports the recorded attempts"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_its_jobs_run_again() {
    let mut env = TestEnv::new("sigkill");
    let mut subscriber = env.subscriber(&["#"]).await;
    let first = env.spawn_worker_process(&["--concurrency", "8"]);
    env.wait_for_queues(&["default".to_string()]).await;
    let producer = env.producer().await;
    // Long enough that the batch outlasts a subscriber reading results late on a loaded
    // machine: the kill must find jobs running.
    let jobs: Vec<JobMessage> = (0..400)
        .map(|i| JobMessage::new("default", "sleep", json!({"ms": 100 + i % 5})))
        .collect();
    producer.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();

    // Let it get well into the batch, then kill it without warning.
    let mut results: HashMap<String, Vec<ResultMessage>> = HashMap::new();
    while results.len() < 60 {
        let result = tokio::time::timeout(Duration::from_secs(30), subscriber.next())
            .await
            .expect("results flow")
            .unwrap();
        results.entry(result.id.clone()).or_default().push(result);
    }
    env.signal(first, libc::SIGKILL);
    assert_eq!(
        env.wait_process(first, Duration::from_secs(5)).await,
        None,
        "killed by a signal"
    );
    let started_when_killed = env
        .coordinator
        .jobs(&ids)
        .await
        .unwrap()
        .iter()
        .flatten()
        .filter(|r| r.status == JobStatus::Started)
        .count();
    assert!(started_when_killed > 0, "the kill caught jobs mid-run");

    env.spawn_worker_process(&["--concurrency", "8"]);
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !results.contains_key(*id))
        .cloned()
        .collect();
    for (id, got) in collect_results(&mut subscriber, &missing, Duration::from_secs(60)).await {
        results.entry(id).or_default().extend(got);
    }
    for extra in drain_results(&mut subscriber, Duration::from_millis(500)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    assert_one_outcome_each(&env, &ids, &results).await;
    let rerun = results.values().filter(|r| r[0].attempts > 1).count();
    assert!(
        rerun >= 1 && rerun <= started_when_killed,
        "{rerun} jobs ran again; {started_when_killed} were running at the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_jobs_and_exits_zero() {
    let mut env = TestEnv::new("drain");
    let mut subscriber = env.subscriber(&["#"]).await;
    let worker = env.spawn_worker_process(&["--concurrency", "4", "--drain-timeout", "20s"]);
    env.wait_for_queues(&["default".to_string()]).await;
    let producer = env.producer().await;
    let jobs: Vec<JobMessage> = (0..12)
        .map(|_| JobMessage::new("default", "sleep", json!({"ms": 400})))
        .collect();
    producer.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let first = tokio::time::timeout(Duration::from_secs(20), subscriber.next())
        .await
        .unwrap()
        .unwrap();
    env.signal(worker, libc::SIGTERM);
    assert_eq!(
        env.wait_process(worker, Duration::from_secs(20)).await,
        Some(0),
        "a drained worker exits 0"
    );
    // What ran finished; what was waiting is still queued, not lost.
    let records = env.coordinator.jobs(&ids).await.unwrap();
    assert!(
        records
            .iter()
            .flatten()
            .all(|r| matches!(r.status, JobStatus::Finished | JobStatus::Queued)),
        "{records:?}"
    );
    assert!(
        records.iter().flatten().any(|r| r.status == JobStatus::Queued),
        "the drain stopped taking jobs"
    );
    let workers: Vec<String> = env.coordinator.live_workers().await.unwrap();
    assert!(
        workers.is_empty(),
        "a stopped worker removes its record: {workers:?}"
    );

    env.spawn_worker_process(&["--concurrency", "4"]);
    let rest: Vec<String> = ids.iter().filter(|id| **id != first.id).cloned().collect();
    let mut results = collect_results(&mut subscriber, &rest, Duration::from_secs(30)).await;
    results.entry(first.id.clone()).or_default().push(first);
    for extra in drain_results(&mut subscriber, Duration::from_millis(300)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    assert_one_outcome_each(&env, &ids, &results).await;
    assert!(
        results.values().all(|r| r.len() == 1),
        "a clean drain publishes no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_times_out_hands_running_jobs_back() {
    let mut env = TestEnv::new("handback");
    let mut subscriber = env.subscriber(&["#"]).await;
    let worker = env.spawn_worker_process(&["--concurrency", "2", "--drain-timeout", "300ms"]);
    env.wait_for_queues(&["default".to_string()]).await;
    let producer = env.producer().await;
    let jobs: Vec<JobMessage> = (0..2)
        .map(|_| JobMessage::new("default", "sleep", json!({"ms": 3000})))
        .collect();
    producer.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    eventually(Duration::from_secs(10), || async {
        let records = env.coordinator.jobs(&ids).await.unwrap();
        records
            .iter()
            .flatten()
            .all(|r| r.status == JobStatus::Started)
            .then_some(())
    })
    .await;
    env.signal(worker, libc::SIGTERM);
    assert_eq!(env.wait_process(worker, Duration::from_secs(10)).await, Some(0));
    let records = env.coordinator.jobs(&ids).await.unwrap();
    assert!(
        records.iter().flatten().all(|r| r.status == JobStatus::Queued),
        "handed back: {records:?}"
    );

    env.spawn_worker_process(&["--concurrency", "2"]);
    let results = collect_results(&mut subscriber, &ids, Duration::from_secs(30)).await;
    assert_one_outcome_each(&env, &ids, &results).await;
    assert!(
        results.values().all(|r| r[0].attempts == 2),
        "the second start is attempt 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_lets_go_of_its_delivery_and_still_ends_once() {
    let mut env = TestEnv::new("longjob");
    env.start_worker(
        env.worker()
            .concurrency(2)
            .long_job_handoff(Duration::from_millis(300)),
    )
    .await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let long = JobMessage::new("default", "sleep", json!({"ms": 2500}));
    producer.publish(&long).await.unwrap();

    // Past the handoff, the delivery is acknowledged and a parked copy stands in for it.
    let pool = jobfleet_common::client::amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    let channel = jobfleet_common::client::open_channel(&pool, false).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        let passive = jobfleet_common::lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let delay = channel
            .queue_declare(
                env.topology
                    .delay_queue("default", jobfleet_tests::HOLD_DELAY.as_millis() as u64)
                    .into(),
                passive,
                Default::default(),
            )
            .await
            .ok()?;
        (delay.message_count() > 0).then_some(())
    })
    .await;

    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&long.id),
        Duration::from_secs(20),
    )
    .await;
    // Parked copies that come back after the end are dropped, not republished.
    let extra = drain_results(&mut subscriber, jobfleet_tests::HOLD_DELAY * 3).await;
    assert!(extra.is_empty(), "duplicates: {extra:?}");
    assert_eq!(results[&long.id].len(), 1);
    assert_eq!(
        (results[&long.id][0].status, results[&long.id][0].attempts),
        (JobStatus::Finished, 1)
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_consumer_the_broker_cancels_consumes_again() {
    let mut env = TestEnv::new("recancel");
    env.start_worker(env.worker().concurrency(2)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    // Deleting the queue makes the broker cancel the worker's consumer.
    let pool = jobfleet_common::client::amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    let channel = jobfleet_common::client::open_channel(&pool, false).await.unwrap();
    channel
        .queue_delete(env.topology.group_queue("default").into(), Default::default())
        .await
        .unwrap();
    env.wait_for_queues(&["default".to_string()]).await;
    let producer = env.producer().await;
    let job = JobMessage::new("default", "echo", json!("back"));
    producer
        .publish(&job)
        .await
        .expect("the worker declared its queue again");
    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(results[&job.id][0].result, Some(json!("back")));
    env.stop_workers().await;
}

const TWO_GROUPS: &str = r#"
[groups.alpha.functions.sleep]
[groups.beta.functions.sleep]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_caps_running_jobs_across_all_groups_of_a_worker() {
    let mut env = TestEnv::with_config("slots", TWO_GROUPS);
    env.start_worker(env.worker().group("alpha").group("beta").concurrency(2))
        .await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let jobs: Vec<JobMessage> = ["alpha", "beta"]
        .iter()
        .flat_map(|g| (0..4).map(move |_| JobMessage::new(*g, "sleep", json!({"ms": 300}))))
        .collect();
    env.producer().await.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut most = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let running =
            env.coordinator.running("alpha").await.unwrap() + env.coordinator.running("beta").await.unwrap();
        most = most.max(running);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, 2, "two slots, two groups: at most two jobs run at once");
    let results = collect_results(&mut subscriber, &ids, Duration::from_secs(20)).await;
    assert!(results.values().all(|r| r[0].status == JobStatus::Finished));
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_queue_the_broker_refuses_stops_with_the_reason() {
    let mut env = TestEnv::new("refused");
    env.start_worker(env.worker()).await;
    env.stop_workers().await;
    // The queue exists as a classic queue; a worker configured for quorum is refused.
    let mut config = env.config.clone();
    config.groups.get_mut("default").unwrap().queue_type = jobfleet_common::config::QueueType::Quorum;
    let worker = jobfleet_worker::Worker::builder()
        .config(config)
        .builtins()
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        worker.run(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("it stops instead of retrying forever");
    let error = outcome.expect_err("a refused topology is an error");
    assert!(
        error.to_string().contains("PRECONDITION_FAILED") || error.to_string().contains("inequivalent"),
        "{error}"
    );
}
