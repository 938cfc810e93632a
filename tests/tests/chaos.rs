//! Chaos: under a 2,000-job load on process sandboxes, a worker is SIGKILLed, RabbitMQ
//! restarts, and Redis stops for seconds and starts again (from its append-only file).
//! Every job still ends in exactly one terminal status and has a terminal result on the
//! topic; producers, subscribers and workers reconnect on their own.

use jobfleet_common::client::ResultSubscriber;
use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::private::{PrivateRabbit, PrivateRedis};
use jobfleet_tests::TestEnv;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const JOBS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_ends_once_through_a_worker_kill_a_broker_restart_and_a_redis_restart() {
    let rabbit = PrivateRabbit::start();
    let mut redis = PrivateRedis::start();
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/functions");
    let fleet = format!(
        r#"
[groups.chaos]
max_failures = 1000
[groups.chaos.functions.wc]
sandbox = "process"
command = ["python3", "{exclusive}"]
max_retries = 3
retry_backoff = "200ms"
[groups.chaos.functions.wc_shared]
sandbox = "process"
mode = "shared"
command = ["python3", "{shared}"]
max_retries = 3
retry_backoff = "200ms"
"#,
        exclusive = functions.join("wordcount.py").display(),
        shared = functions.join("wordcount_shared.py").display(),
    );
    let mut env = TestEnv::with_services("chaos", &fleet, &rabbit.url(), &redis.url());

    // A durable subscription keeps results published while the broker or we are away.
    let mut subscriber = ResultSubscriber::durable(
        &env.config.amqp_url,
        env.topology.clone(),
        &format!("{}.results", env.namespace()),
        &["#"],
    )
    .await
    .unwrap();
    let first = env.spawn_worker_process(&["--group", "chaos", "--concurrency", "6"]);
    env.spawn_worker_process(&["--group", "chaos", "--concurrency", "6"]);
    env.wait_for_queues(&["chaos".to_string()]).await;

    let jobs: Vec<JobMessage> = (0..JOBS)
        .map(|i| {
            let function = if i % 4 == 0 { "wc" } else { "wc_shared" };
            JobMessage::new(
                "chaos",
                function,
                json!({"text": format!("chaos {i} and chaos again")}),
            )
        })
        .collect();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let producer = env.producer().await.with_retry_for(Duration::from_secs(120));
    let publishing = tokio::spawn(async move {
        for batch in jobs.chunks(100) {
            producer
                .publish_many(batch)
                .await
                .expect("every job is published despite the faults");
        }
    });

    let mut results: HashMap<String, Vec<ResultMessage>> = HashMap::new();
    let mut faults = vec![300, 800, 1300];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while results.len() < JOBS {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = match tokio::time::timeout(remaining, subscriber.next()).await {
            Ok(result) => result.expect("a decodable result"),
            Err(_) => {
                let missing: Vec<String> = ids
                    .iter()
                    .filter(|id| !results.contains_key(*id))
                    .cloned()
                    .collect();
                let records = env.coordinator.jobs(&missing).await.unwrap();
                panic!("{} of {JOBS} jobs have no result: {records:#?}", missing.len());
            }
        };
        results.entry(result.id.clone()).or_default().push(result);
        if faults.first().is_some_and(|at| results.len() >= *at) {
            match faults.remove(0) {
                300 => {
                    env.signal(first, libc::SIGKILL);
                    env.spawn_worker_process(&["--group", "chaos", "--concurrency", "6"]);
                }
                800 => rabbit.restart(Duration::from_secs(2)),
                _ => redis.restart(Duration::from_secs(3)),
            }
        }
    }
    publishing.await.unwrap();
    // Stragglers: duplicates are allowed after a crash, but never a second outcome.
    while let Ok(Ok(extra)) = tokio::time::timeout(Duration::from_secs(2), subscriber.next()).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }

    let records = env.coordinator.jobs(&ids).await.unwrap();
    let mut rerun = 0;
    for (id, record) in ids.iter().zip(records) {
        let record = record.unwrap_or_else(|| panic!("{id} has no record"));
        let got = &results[id];
        assert!(record.status.is_terminal(), "{id} is {}", record.status);
        assert_eq!(record.status, JobStatus::Finished, "{id}: {:?}", record.error);
        for result in got {
            assert_eq!(
                (result.status, &result.result),
                (record.status, &record.result),
                "{id} has two outcomes"
            );
        }
        rerun += usize::from(record.attempts > 1);
    }
    let duplicates: usize = results.values().map(|r| r.len() - 1).sum();
    println!("chaos: {JOBS} jobs, {rerun} ran more than once, {duplicates} duplicate result messages");
    drop(env);
    drop(redis);
    drop(rabbit);
}
