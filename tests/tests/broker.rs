//! The broker's edges, on a real RabbitMQ: copies a worker forwards (retry back-offs,
//! parked copies) are never lost to a missing queue and follow the group's queue type; a
//! delivery never waits long for a job slot; a job longer than `consumer_timeout` ends
//! once; a consumer the broker silently drops, or a queue that stops answering, is
//! noticed (private brokers for the last three).

use jobfleet_common::client::{amqp_pool, open_channel, AmqpPool, ResultSubscriber};
use jobfleet_common::config::{Config, QueueType};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::private::PrivateRabbit;
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv, HOLD_DELAY};
use jobfleet_worker::{WorkerBuilder, WorkerMetrics};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// The retry back-off of the `flaky` function below.
const RETRY_MS: u64 = 300;

/// Keys whose first attempt already failed.
static FAILED_ONCE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A worker with `flaky`: fails the first attempt for each key, then returns the key.
fn with_flaky(builder: WorkerBuilder) -> WorkerBuilder {
    builder.function("flaky", |key: String| async move {
        let first = FAILED_ONCE
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(key.clone());
        if first {
            return Err(JobError::new(ErrorKind::FunctionError, "the first attempt fails"));
        }
        Ok(key)
    })
}

/// A group `group` of `queue_type` whose `flaky` function is retried once.
fn flaky_group(group: &str, queue_type: &str) -> String {
    format!(
        r#"
[groups.{group}]
queue_type = "{queue_type}"
[groups.{group}.functions.flaky]
max_retries = 1
retry_backoff = "{RETRY_MS}ms"
"#
    )
}

/// Runs `job` and returns its only result.
async fn run_once(env: &TestEnv, job: &JobMessage) -> ResultMessage {
    let mut subscriber = env.subscriber(&["#"]).await;
    env.producer().await.publish(job).await.unwrap();
    only_result(&mut subscriber, &job.id).await
}

/// The result of job `id`, asserting that no other arrives a little later.
async fn only_result(subscriber: &mut ResultSubscriber, id: &str) -> ResultMessage {
    let ids = [id.to_string()];
    let mut results = collect_results(subscriber, &ids, Duration::from_secs(30)).await;
    let extra = drain_results(subscriber, HOLD_DELAY * 3).await;
    assert!(extra.is_empty(), "more than one result: {extra:?}");
    let mut got = results.remove(id).unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

async fn delete_queue(pool: &AmqpPool, queue: String) {
    let channel = open_channel(pool, false).await.unwrap();
    channel
        .queue_delete(queue.into(), Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_copy_whose_delay_queue_was_deleted_is_not_lost() {
    let mut env = TestEnv::with_config("lostdelay", &flaky_group("default", "classic"));
    env.start_worker(with_flaky(env.worker())).await;
    let pool = amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    let delay_queue = env.topology.delay_queue("default", RETRY_MS);

    // The first retry declares the delay queue; then it disappears.
    let first = run_once(&env, &JobMessage::new("default", "flaky", json!("first"))).await;
    assert_eq!((first.status, first.attempts), (JobStatus::Finished, 2));
    delete_queue(&pool, delay_queue.clone()).await;

    // The next retry copy is returned instead of dropped: the worker declares the queue
    // again and the job still gets its second attempt.
    let second = run_once(&env, &JobMessage::new("default", "flaky", json!("second"))).await;
    assert_eq!(
        (second.status, second.attempts, second.result),
        (JobStatus::Finished, 2, Some(json!("second")))
    );
    env.stop_workers().await;
    delete_queue(&pool, delay_queue).await;
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_groups_delay_queues_are_quorum_queues() {
    let mut env = TestEnv::with_config("qdelay", &flaky_group("qq", "quorum"));
    env.start_worker(with_flaky(env.worker().group("qq"))).await;
    // A retry goes through the quorum delay queue (TTL, dead-lettered back) and runs again.
    let job = JobMessage::new("qq", "flaky", json!("quorum"));
    let result = run_once(&env, &job).await;
    assert_eq!((result.status, result.attempts), (JobStatus::Finished, 2));
    env.stop_workers().await;

    // Both delay queues (hold and retry) exist as quorum queues: declared as classic they
    // are refused, declared as quorum they are the same queue.
    let pool = amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    for delay_ms in [HOLD_DELAY.as_millis() as u64, RETRY_MS] {
        let queue = env.topology.delay_queue("qq", delay_ms);
        let channel = open_channel(&pool, false).await.unwrap();
        let classic = env
            .topology
            .declare_delay(&channel, "qq", delay_ms, QueueType::Classic)
            .await;
        let refused = classic.expect_err(&format!("{queue} is no classic queue"));
        assert!(refused.to_string().contains("PRECONDITION_FAILED"), "{refused}");
        let channel = open_channel(&pool, false).await.unwrap();
        env.topology
            .declare_delay(&channel, "qq", delay_ms, QueueType::Quorum)
            .await
            .unwrap_or_else(|e| panic!("{queue} is a quorum queue: {e}"));
    }
    delete_queue(&pool, env.topology.delay_queue("qq", RETRY_MS)).await;
    pool.close();
}

const TWO_GROUPS: &str = r#"
[groups.alpha.functions.sleep]
[groups.beta.functions.sleep]
"#;

/// Jobs recorded as running in `groups`.
async fn running(env: &TestEnv, groups: &[&str]) -> u64 {
    let mut running = 0;
    for group in groups {
        running += env.coordinator.running(group).await.unwrap();
    }
    running
}

/// Ready and unacknowledged messages over the queues of `groups`, as the broker counts them.
fn group_counts(env: &TestEnv, groups: &[&str]) -> (u64, u64) {
    let counts = env.queue_counts();
    groups
        .iter()
        .filter_map(|group| counts.get(&format!("group.{group}")))
        .fold((0, 0), |(ready, unacked), (r, u)| (ready + r, unacked + u))
}

/// Waits until the broker counts `unacked` deliveries of `groups` unacknowledged and
/// `ready` (at least) ready while one job runs, in two polls in a row (a delivery merely
/// on its way is not caught): no delivery waits in the worker for a slot.
async fn until_waiting_jobs_stay_in_the_queue(env: &TestEnv, groups: &[&str], ready: u64, unacked: u64) {
    let in_a_row = &std::cell::Cell::new(0);
    eventually(Duration::from_secs(20), || async move {
        let counts = group_counts(env, groups);
        let holds = counts.0 >= ready && counts.1 == unacked && running(env, groups).await == 1;
        in_a_row.set(if holds { in_a_row.get() + 1 } else { 0 });
        (in_a_row.get() == 2).then_some(())
    })
    .await;
}

/// Every job of `jobs` ended once, finished at its first attempt.
async fn assert_each_finished_once(subscriber: &mut ResultSubscriber, jobs: &[JobMessage]) {
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let results = collect_results(subscriber, &ids, Duration::from_secs(60)).await;
    for id in &ids {
        let outcomes: Vec<_> = results[id].iter().map(|r| (r.status, r.attempts)).collect();
        assert_eq!(outcomes, [(JobStatus::Finished, 1)], "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_never_waits_for_a_slot_another_groups_job_holds() {
    let mut env = TestEnv::with_config("slotwait", TWO_GROUPS);
    env.start_worker(env.worker().group("alpha").group("beta").concurrency(1))
        .await;
    // One slot, two groups, a prefetch of one per consumer: each group's consumer gets a
    // job, one runs, and the other goes back to its queue instead of waiting for the slot.
    let mut subscriber = env.subscriber(&["#"]).await;
    let jobs = ["alpha", "beta"].map(|group| JobMessage::new(group, "sleep", json!({"ms": 6000})));
    env.producer().await.publish_many(&jobs).await.unwrap();
    until_waiting_jobs_stay_in_the_queue(&env, &["alpha", "beta"], 1, 1).await;
    assert_each_finished_once(&mut subscriber, &jobs).await;
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_never_waits_for_the_slot_of_a_handed_off_long_job() {
    let mut env = TestEnv::new("handoffwait");
    let worker = env
        .worker()
        .concurrency(1)
        .long_job_handoff(Duration::from_millis(300));
    env.start_worker(worker).await;
    // The long job acknowledges its delivery at the handoff but keeps its slot: the
    // broker's next delivery finds no slot and goes back to the queue.
    let mut subscriber = env.subscriber(&["#"]).await;
    let jobs = [(); 2].map(|_| JobMessage::new("default", "sleep", json!({"ms": 6000})));
    env.producer().await.publish_many(&jobs).await.unwrap();
    until_waiting_jobs_stay_in_the_queue(&env, &["default"], 1, 0).await;
    assert_each_finished_once(&mut subscriber, &jobs).await;
    env.stop_workers().await;
}

/// The Redis URL of the shared Redis (the private brokers' tests need no private one).
fn shared_redis() -> String {
    std::env::var("JOBFLEET_REDIS_URL").unwrap_or_else(|_| Config::default().redis_url)
}

/// A sample of a worker's metrics.
fn sample(metrics: &WorkerMetrics, name: &str) -> f64 {
    let text = metrics.render().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_consumer_timeout_ends_once_without_a_second_run() {
    // consumer_timeout 2 s, enforced within 0.5 s; the job runs four times as long.
    let rabbit = PrivateRabbit::with_consumer_timeout(Duration::from_secs(2));
    let mut env = TestEnv::with_services("ctimeout", "", &rabbit.url(), &shared_redis());
    let worker = || {
        env.worker()
            .concurrency(1)
            .long_job_handoff(Duration::from_millis(700))
            .build()
            .unwrap()
    };
    let (owner, other) = (worker(), worker());
    let metrics = [owner.metrics(), other.metrics()];
    env.run_worker(owner).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let job = JobMessage::new("default", "sleep", json!({"ms": 8000}));
    env.producer().await.publish(&job).await.unwrap();
    let started = r#"jobfleet_jobs_started_total{function="sleep",group="default"}"#;
    eventually(Duration::from_secs(10), || async {
        (sample(&metrics[0], started) == 1.0).then_some(())
    })
    .await;
    // A second worker that would take the job if its message came back.
    env.run_worker(other).await;

    let result = only_result(&mut subscriber, &job.id).await;
    assert_eq!((result.status, result.attempts), (JobStatus::Finished, 1));
    let total = |name: &str| metrics.iter().map(|m| sample(m, name)).sum::<f64>();
    assert_eq!(total(started), 1.0, "the job started once in the fleet");
    let redelivered = r#"jobfleet_redeliveries_total{group="default"}"#;
    assert_eq!(
        total(redelivered),
        0.0,
        "its message never came back from the broker"
    );
    assert!(
        !rabbit
            .log()
            .contains("timed out waiting for delivery acknowledgement"),
        "the broker enforced consumer_timeout"
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_channel_the_broker_closes_for_consumer_timeout_carries_on() {
    let rabbit = PrivateRabbit::with_consumer_timeout(Duration::from_secs(2));
    let mut env = TestEnv::with_services("ctclosed", "", &rabbit.url(), &shared_redis());
    // A handoff later than the broker's timeout (a misconfiguration): the broker closes the
    // worker's channel with PRECONDITION_FAILED while the job runs.
    let worker = env.worker().long_job_handoff(Duration::from_secs(3600));
    env.start_worker(worker).await;
    let long = JobMessage::new("default", "sleep", json!({"ms": 5000}));
    let result = run_once(&env, &long).await;
    assert_eq!((result.status, result.attempts), (JobStatus::Finished, 1));
    assert!(
        rabbit
            .log()
            .contains("timed out waiting for delivery acknowledgement"),
        "the broker enforced consumer_timeout"
    );
    // The worker took that for a lost session, not a refused topology: it runs the next job.
    let next = run_once(&env, &JobMessage::new("default", "echo", json!("still here"))).await;
    assert_eq!(next.result, Some(json!("still here")));
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_the_broker_silently_drops_is_noticed_and_its_jobs_run() {
    let rabbit = PrivateRabbit::start();
    let mut env = TestEnv::with_services("lostconsumer", "", &rabbit.url(), &shared_redis());
    env.start_worker(env.worker().stall_check(Duration::from_millis(300)))
        .await;
    // The broker forgets the worker's consumer without telling it: the channel stays open,
    // jobs stay ready, nothing is delivered.
    let queue = env.topology.group_queue("default");
    eventually(Duration::from_secs(20), || async {
        (rabbit.drop_consumers_silently(&queue) > 0).then_some(())
    })
    .await;
    let job = JobMessage::new("default", "echo", json!("found"));
    let result = run_once(&env, &job).await;
    assert_eq!(result.result, Some(json!("found")));
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_queue_stops_answering_exits_non_zero() {
    let rabbit = PrivateRabbit::start();
    let mut env = TestEnv::with_services("deafqueue", "", &rabbit.url(), &shared_redis());
    let pid = env.spawn_worker_process(&["--stall-check", "300ms"]);
    env.wait_for_queues(&["default".to_string()]).await;
    let queue = env.topology.group_queue("default");
    let pool = amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    eventually(Duration::from_secs(20), || async {
        let channel = open_channel(&pool, false).await.ok()?;
        let passive = jobfleet_common::lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.clone().into(), passive, Default::default())
            .await
            .ok()?;
        (declared.consumer_count() == 1).then_some(())
    })
    .await;

    // The queue answers nothing: the idle worker's check goes unanswered, then every new
    // session hangs in its declare. Three stalled sessions in a row: the worker exits.
    rabbit.suspend_queue(&queue);
    let code = env.wait_process(pid, Duration::from_secs(60)).await;
    rabbit.resume_queue(&queue);
    assert!(matches!(code, Some(code) if code != 0), "exit code {code:?}");

    // Its supervisor's restart finds the broker well again.
    env.spawn_worker_process(&[]);
    let result = run_once(&env, &JobMessage::new("default", "echo", json!("again"))).await;
    assert_eq!(result.result, Some(json!("again")));
    pool.close();
}

/// A publish the broker refuses with a negative confirm (here a full group queue that
/// rejects publishes; on a cluster a quorum queue between leaders, or a channel whose view
/// of it went stale) is retried on a fresh channel within the producer's retry time, not
/// failed at once: the job is accepted as soon as the queue takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_refuses_is_retried_until_the_queue_takes_it() {
    use jobfleet_common::lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
    use jobfleet_common::lapin::types::{AMQPValue, FieldTable};

    let env = TestEnv::new("nacked");
    let pool = amqp_pool(&env.config.amqp_url, 1, "test").unwrap();
    let channel = open_channel(&pool, false).await.unwrap();
    env.topology.declare_exchanges(&channel).await.unwrap();
    // The group's queue holds one message and refuses the next (a nack), as a length
    // limit with `reject-publish` overflow makes it.
    let queue = env.topology.group_queue("full");
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await
        .unwrap();
    jobfleet_common::topology::bind(&channel, &queue, &env.topology.jobs_exchange(), "full")
        .await
        .unwrap();

    let producer = env.producer().await.with_retry_for(Duration::from_secs(30));
    let first = JobMessage::new("full", "sleep", json!({"ms": 1}));
    producer.publish(&first).await.expect("the first job fits");
    let second = JobMessage::new("full", "sleep", json!({"ms": 1}));
    let publishing = tokio::spawn(async move { producer.publish(&second).await.map(|()| second.id) });

    // Refused while the queue is full: still trying, not failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !publishing.is_finished(),
        "the refused publish gave up: {:?}",
        publishing.await
    );
    // Room again: the retry lands.
    let taken = channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the first job waits in the queue");
    taken.ack(BasicAckOptions::default()).await.unwrap();
    let second_id = tokio::time::timeout(Duration::from_secs(20), publishing)
        .await
        .expect("the retried publish lands once there is room")
        .unwrap()
        .expect("the second job is accepted");
    let landed = eventually(Duration::from_secs(10), || async {
        channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        landed.properties.message_id().as_ref().map(|id| id.to_string()),
        Some(second_id)
    );
    delete_queue(&pool, queue).await;
    pool.close();
}
