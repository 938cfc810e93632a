//! The pipeline end to end: jobs published with the client library run on workers of
//! their group, reach exactly one terminal status in Redis and one result on the topic.

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::codec;
use jobfleet_common::lapin::options::{BasicGetOptions, BasicPublishOptions};
use jobfleet_common::lapin::BasicProperties;
use jobfleet_common::message::{ErrorKind, JobMessage, JobStatus};
use jobfleet_common::topology::{header_str, REASON_HEADER};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

const TWO_GROUPS: &str = r#"
[groups.alpha.functions.echo]
[groups.alpha.functions.wordcount]
[groups.beta.functions.echo]
[groups.beta.functions.wordcount]
schema = { type = "object", required = ["text"], properties = { text = { type = "string" } } }
[groups.beta.functions.fail]
[groups.beta.functions.crash]
[groups.beta.functions.sleep]
"#;

fn text_for(i: usize) -> String {
    format!("job {i} counts words and job {} again", i % 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_jobs_over_two_groups_and_three_workers_each_end_once() {
    let mut env = TestEnv::with_config("pipeline", TWO_GROUPS);
    env.start_worker(env.worker().group("alpha").concurrency(16))
        .await;
    env.start_worker(env.worker().group("beta").concurrency(16)).await;
    env.start_worker(env.worker().group("alpha").group("beta").concurrency(16))
        .await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;

    let jobs: Vec<JobMessage> = (0..5000)
        .map(|i| {
            let group = if i % 2 == 0 { "alpha" } else { "beta" };
            if i % 4 < 2 {
                JobMessage::new(group, "echo", json!({"n": i, "tag": "e2e"}))
            } else {
                JobMessage::new(group, "wordcount", json!({"text": text_for(i)}))
            }
        })
        .collect();
    for batch in jobs.chunks(500) {
        producer.publish_many(batch).await.expect("publish");
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(120)).await;
    for extra in drain_results(&mut subscriber, Duration::from_millis(500)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }

    let mut workers_seen = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let got = &results[&job.id];
        assert_eq!(got.len(), 1, "job {} has {} results", job.id, got.len());
        let result = &got[0];
        assert_eq!(result.status, JobStatus::Finished, "{result:?}");
        assert_eq!(
            (result.group.as_str(), result.function.as_str()),
            (job.group.as_str(), job.function.as_str())
        );
        assert_eq!(result.attempts, 1);
        let expected = if job.function == "echo" {
            json!({"n": i, "tag": "e2e"})
        } else {
            serde_json::to_value(jobfleet_worker::builtins::wordcount(&text_for(i))).unwrap()
        };
        assert_eq!(result.result.as_ref(), Some(&expected));
        *workers_seen.entry(result.worker.clone()).or_insert(0) += 1;
    }
    assert_eq!(workers_seen.len(), 3, "every worker ran jobs: {workers_seen:?}");

    let records = env.coordinator.jobs(&ids).await.expect("records");
    for (job, record) in jobs.iter().zip(records) {
        let record = record.unwrap_or_else(|| panic!("no record for {}", job.id));
        assert_eq!(record.status, JobStatus::Finished);
        assert_eq!(record.attempts, 1);
        assert_eq!(record.args, job.args);
        assert!(record.finished_at.is_some() && record.started_at.is_some());
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_run_once_and_bad_input_ends_with_the_right_error() {
    let mut env = TestEnv::with_config("badinput", TWO_GROUPS);
    env.start_worker(env.worker().group("beta").concurrency(1)).await;
    let mut subscriber = env.subscriber(&["beta.#"]).await;
    let producer = env.producer().await;

    // The same id twice, then a marker: with concurrency 1 the marker ends after both copies.
    let twice = JobMessage::new("beta", "echo", json!("once")).with_id("dup-1");
    producer.publish(&twice).await.unwrap();
    producer.publish(&twice).await.unwrap();
    let unknown = JobMessage::new("beta", "no_such_function", json!(null));
    let invalid = JobMessage::new("beta", "wordcount", json!({"txt": 5}));
    let failing = JobMessage::new("beta", "fail", json!({"message": "as asked"}));
    let crashing = JobMessage::new("beta", "crash", json!(null));
    let after_crash = JobMessage::new("beta", "echo", json!("still alive"));
    let timing_out = JobMessage::new("beta", "sleep", json!({"ms": 5000})).with_timeout_ms(100);
    let jobs = [
        unknown.clone(),
        invalid.clone(),
        failing.clone(),
        crashing.clone(),
        after_crash.clone(),
        timing_out.clone(),
    ];
    producer.publish_many(&jobs).await.unwrap();

    let mut ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    ids.push(twice.id.clone());
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(30)).await;
    for extra in drain_results(&mut subscriber, Duration::from_millis(300)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    assert_eq!(results["dup-1"].len(), 1, "a duplicate id ran twice");
    let record = env.coordinator.job("dup-1").await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Finished, 1));

    let kind_of = |job: &JobMessage| {
        let result = &results[&job.id][0];
        assert_eq!(result.status, JobStatus::Failed, "{result:?}");
        result.error.as_ref().map(|e| e.kind)
    };
    assert_eq!(kind_of(&unknown), Some(ErrorKind::UnknownFunction));
    assert_eq!(kind_of(&invalid), Some(ErrorKind::InvalidArgs));
    assert_eq!(kind_of(&failing), Some(ErrorKind::FunctionError));
    assert_eq!(
        results[&failing.id][0].error.as_ref().unwrap().message,
        "as asked"
    );
    assert_eq!(kind_of(&crashing), Some(ErrorKind::Crashed));
    assert_eq!(kind_of(&timing_out), Some(ErrorKind::Timeout));
    assert_eq!(results[&after_crash.id][0].result, Some(json!("still alive")));
    let record = env.coordinator.job(&invalid.id).await.unwrap().unwrap();
    let error = record.error.unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidArgs);
    assert!(
        error.message.contains("schema"),
        "the worker checks args against the schema: {error:?}"
    );

    // Malformed messages, published straight to AMQP, land in NS.dead with a reason.
    let pool = amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    let channel = open_channel(&pool, true).await.unwrap();
    let publish = |body: Vec<u8>, content_type: &'static str| {
        let channel = channel.clone();
        let exchange = env.topology.jobs_exchange();
        async move {
            channel
                .basic_publish(
                    exchange.into(),
                    "beta".into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_content_type(content_type.into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish(b"\xc1 not msgpack".to_vec(), codec::MSGPACK).await;
    publish(
        codec::encode(&json!({"id": "half-1", "group": "beta"})),
        codec::MSGPACK,
    )
    .await;
    publish(
        br#"{"id": "json-1", "group": "beta", "function": "echo", "args": [1]}"#.to_vec(),
        codec::JSON,
    )
    .await;

    let seen = std::sync::Mutex::new(Vec::new());
    let reasons = eventually(Duration::from_secs(20), || async {
        while let Some(message) = channel
            .basic_get(
                env.topology.dead_letters().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            seen.lock().unwrap().push(
                header_str(message.delivery.properties.headers().as_ref(), REASON_HEADER)
                    .expect("a reason header"),
            );
        }
        let reasons = seen.lock().unwrap().clone();
        (reasons.len() >= 2).then_some(reasons)
    })
    .await;
    assert!(reasons.iter().any(|r| r.contains("msgpack")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("function")), "{reasons:?}");
    let half = env
        .coordinator
        .job("half-1")
        .await
        .unwrap()
        .expect("the readable id is recorded");
    assert_eq!(half.status, JobStatus::Failed);
    assert_eq!(half.error.unwrap().kind, ErrorKind::BadMessage);

    // A JSON job from a foreign client runs like any other; the undecodable job whose id
    // could be read gets its failed result like every ended job.
    let late = collect_results(
        &mut subscriber,
        &["json-1".to_string(), "half-1".to_string()],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(late["json-1"][0].result, Some(json!([1])));
    assert_eq!(late["half-1"][0].status, JobStatus::Failed);
    assert_eq!(
        late["half-1"][0].error.as_ref().unwrap().kind,
        ErrorKind::BadMessage
    );
    // The worker kept going through all of it.
    assert_eq!(
        env.coordinator.job("json-1").await.unwrap().unwrap().status,
        JobStatus::Finished
    );
    assert!(env.coordinator.job("no-such-job").await.unwrap().is_none());
    env.stop_workers().await;
}
