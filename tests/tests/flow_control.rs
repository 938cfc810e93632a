//! Flow control (SPEC §9) on the real services, under concurrency: a fleet-wide
//! `max_running` never exceeded by 4 workers × 16 and given back when a worker holding
//! slots is SIGKILLed; `rate_limit` paces starts fleet-wide, and per `limit_key` value;
//! a paused group starts nothing until resumed; limits changed at run time apply.

use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::json_api::JsonApi;
use jobfleet_tests::{eventually, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

/// Publishes `count` jobs of `group` sleeping `ms` and returns their ids.
async fn publish(env: &TestEnv, group: &str, count: usize, ms: u64) -> Vec<String> {
    let jobs: Vec<JobMessage> = (0..count)
        .map(|_| JobMessage::new(group, "sleep", json!({"ms": ms})))
        .collect();
    env.producer().await.publish_many(&jobs).await.expect("published");
    jobs.into_iter().map(|job| job.id).collect()
}

/// Waits until every job of `ids` finished; returns their records (panics with them
/// after `timeout`).
async fn all_finished(env: &TestEnv, ids: &[String], timeout: Duration) -> Vec<JobRecord> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let records = env.coordinator.jobs(ids).await.expect("records");
        let records: Vec<JobRecord> = records.into_iter().map(|r| r.expect("a record")).collect();
        if records.iter().all(|r| r.status == JobStatus::Finished) {
            return records;
        }
        if tokio::time::Instant::now() > deadline {
            let unfinished: Vec<String> = records
                .iter()
                .filter(|r| r.status != JobStatus::Finished)
                .map(|r| format!("{} {} attempts {} {:?}", r.id, r.status, r.attempts, r.error))
                .collect();
            panic!("not finished after {timeout:?}: {unfinished:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most jobs that ran at one time, from the records' start and finish times. Each
/// interval is trimmed by `slack` ms at both ends: a worker takes its start time just
/// before its claim, which may wait for Redis while another job's completion frees the
/// slot.
fn most_at_once(records: &[JobRecord], slack: i64) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::new();
    for record in records {
        let (Some(start), Some(end)) = (record.started_at, record.finished_at) else {
            continue;
        };
        events.push((start + slack, 1));
        events.push((end - slack, -1));
    }
    // At one instant an end comes before a start.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

/// Samples the group's fleet-wide running count every 20 ms until `done`; the highest.
fn sample_running(
    env: &TestEnv,
    group: &str,
) -> (tokio::task::JoinHandle<u64>, tokio_util::sync::CancellationToken) {
    let done = tokio_util::sync::CancellationToken::new();
    let (coordinator, group, stop) = (env.coordinator.clone(), group.to_string(), done.clone());
    let sampler = tokio::spawn(async move {
        let mut highest = 0;
        while !stop.is_cancelled() {
            if let Ok(running) = coordinator.running(&group).await {
                highest = highest.max(running);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        highest
    });
    (sampler, done)
}

const CAPPED: &str = r#"
[groups.capped]
max_running = 5
[groups.capped.functions.sleep]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_of_sixteen_never_run_more_than_max_running() {
    let mut env = TestEnv::with_config("cap", CAPPED);
    env.start_master().await;
    for _ in 0..4 {
        env.start_worker(env.worker().group("capped").concurrency(16))
            .await;
    }
    let (sampler, done) = sample_running(&env, "capped");
    let ids = publish(&env, "capped", 40, 200).await;
    let records = all_finished(&env, &ids, Duration::from_secs(60)).await;
    done.cancel();
    let sampled = sampler.await.expect("sampler");
    assert!(
        sampled <= 5,
        "{sampled} jobs running at once under max_running = 5"
    );
    let most = most_at_once(&records, 25);
    assert!(
        (3..=5).contains(&most),
        "{most} jobs ran at once under max_running = 5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_gives_its_slots_back() {
    let fleet = CAPPED.replace("max_running = 5", "max_running = 2");
    let mut env = TestEnv::with_config("capkill", &fleet);
    env.start_master().await;
    let doomed = env.spawn_worker_process(&["--group", "capped", "--concurrency", "4"]);
    let first = publish(&env, "capped", 2, 3_000).await;
    eventually(Duration::from_secs(30), || async {
        (env.coordinator.running("capped").await.ok()? == 2).then_some(())
    })
    .await;
    // Both slots are the doomed worker's; these wait for them.
    let waiting = publish(&env, "capped", 4, 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.signal(doomed, libc::SIGKILL);
    env.start_worker(env.worker().group("capped").concurrency(4))
        .await;

    let ids: Vec<String> = first.into_iter().chain(waiting).collect();
    let records = all_finished(&env, &ids, Duration::from_secs(60)).await;
    assert!(most_at_once(&records, 25) <= 2);
    assert_eq!(
        env.coordinator.running("capped").await.unwrap(),
        0,
        "a slot stayed taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_of_20_per_second_paces_starts_fleet_wide() {
    let fleet = r#"
[groups.paced]
rate_limit = "20/s"
[groups.paced.functions.sleep]
"#;
    let mut env = TestEnv::with_config("rate", fleet);
    env.start_master().await;
    for _ in 0..2 {
        env.start_worker(env.worker().group("paced").concurrency(8)).await;
    }
    let ids = publish(&env, "paced", 260, 1).await;
    let records = all_finished(&env, &ids, Duration::from_secs(60)).await;
    let mut starts: Vec<i64> = records.iter().filter_map(|r| r.started_at).collect();
    starts.sort();
    let from = starts[0] + 1_000;
    let in_ten_seconds = starts
        .iter()
        .filter(|&&at| at >= from && at < from + 10_000)
        .count();
    let per_second = in_ten_seconds as f64 / 10.0;
    assert!(
        (18.0..=22.0).contains(&per_second),
        "{per_second} starts/s under rate_limit = 20/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_key_value_has_a_rate_of_its_own() {
    let fleet = r#"
[groups.keyed]
rate_limit = "5/s"
limit_key = "customer"
[groups.keyed.functions.echo]
"#;
    let mut env = TestEnv::with_config("ratekey", fleet);
    env.start_master().await;
    env.start_worker(env.worker().group("keyed").concurrency(16))
        .await;
    let customer = |name: &str| {
        let jobs: Vec<JobMessage> = (0..16)
            .map(|i| JobMessage::new("keyed", "echo", json!({"customer": name, "n": i})))
            .collect();
        let ids: Vec<String> = jobs.iter().map(|job| job.id.clone()).collect();
        (jobs, ids)
    };
    let ((a_jobs, a), (b_jobs, b)) = (customer("a"), customer("b"));
    let producer = env.producer().await;
    producer.publish_many(&a_jobs).await.unwrap();
    producer.publish_many(&b_jobs).await.unwrap();
    let span = |records: &[JobRecord]| {
        let starts: Vec<i64> = records.iter().filter_map(|r| r.started_at).collect();
        (*starts.iter().min().unwrap(), *starts.iter().max().unwrap())
    };
    let (a_first, a_last) = span(&all_finished(&env, &a, Duration::from_secs(30)).await);
    let (b_first, b_last) = span(&all_finished(&env, &b, Duration::from_secs(30)).await);
    // 16 starts at 5/s take 3 s for each customer, and the two go side by side.
    for (first, last) in [(a_first, a_last), (b_first, b_last)] {
        assert!(
            last - first >= 2_700,
            "16 starts at 5/s within {} ms",
            last - first
        );
    }
    assert!(
        b_first < a_last && a_first < b_last,
        "the customers waited for each other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_group_starts_nothing_until_resumed() {
    let mut env = TestEnv::new("pause");
    let url = env.start_master().await;
    env.start_worker(env.worker().concurrency(4)).await;
    let api = JsonApi::new(env.http_client(), url);
    let (status, view) = api.post("/v1/groups/default/pause", &json!({})).await;
    assert_eq!((status, &view["paused"]), (200, &json!(true)), "{view}");

    let jobs: Vec<JobMessage> = (0..10)
        .map(|i| JobMessage::new("default", "echo", json!(i)))
        .collect();
    env.producer().await.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
    eventually(Duration::from_secs(10), || async {
        let (_, view) = api.get("/v1/groups/default").await;
        (view["held"] == 10).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for record in env.coordinator.jobs(&ids).await.unwrap() {
        let record = record.expect("a record");
        assert_eq!(
            record.status,
            JobStatus::Queued,
            "{} started while paused",
            record.id
        );
    }

    let (status, view) = api.post("/v1/groups/default/resume", &json!({})).await;
    assert_eq!((status, &view["paused"]), (200, &json!(false)), "{view}");
    all_finished(&env, &ids, Duration::from_secs(20)).await;
    let (_, view) = api.get("/v1/groups/default").await;
    assert_eq!(view["held"], 0, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_changed_at_run_time_apply_and_reset_to_the_config() {
    let mut env = TestEnv::with_config("runtime", CAPPED);
    let url = env.start_master().await;
    env.start_worker(env.worker().group("capped").concurrency(8))
        .await;
    let api = JsonApi::new(env.http_client(), url);
    let limits = "/v1/groups/capped/limits";
    let (status, view) = api
        .patch(limits, &json!({"max_running": 1, "rate_limit": "100/s"}))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (&view["max_running"], &view["rate_limit"]),
        (&json!(1), &json!("100/s"))
    );

    let ids = publish(&env, "capped", 6, 150).await;
    let records = all_finished(&env, &ids, Duration::from_secs(30)).await;
    assert_eq!(most_at_once(&records, 25), 1, "max_running = 1 set at run time");

    // An empty change changes nothing; null lifts a limit; DELETE goes back to the config
    // file's.
    let (status, view) = api.patch(limits, &json!({})).await;
    assert_eq!((status, &view["max_running"]), (200, &json!(1)), "{view}");
    let (_, view) = api.patch(limits, &json!({"max_running": null})).await;
    assert_eq!(view["max_running"], Value::Null, "{view}");
    let (status, view) = api.delete(limits).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (&view["max_running"], &view["rate_limit"]),
        (&json!(5), &Value::Null)
    );
}
