//! Scheduling (SPEC §9) on the real services: delayed jobs (`run_at` / `delay_ms` through
//! the API and on the wire) never start before their time, all run, survive a restart of
//! the master and the workers, and a canceled one never runs; bulk cancel and retry; a
//! per-second schedule under two masters fires each second once, across a leader's death.

use jobfleet_common::coordinator::NewJob;
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_common::now_ms;
use jobfleet_tests::json_api::{time_ms, JsonApi};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

/// Waits until every job of `ids` is finished and returns their records.
async fn finished(api: &JsonApi, ids: &[String], timeout: Duration) -> Vec<Value> {
    eventually(timeout, || async {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let record = api.job(id).await;
            if record["status"] != "finished" {
                return None;
            }
            records.push(record);
        }
        Some(records)
    })
    .await
}

/// Asserts that every record started no earlier than its `run_at`.
fn assert_none_early(records: &[Value]) {
    for record in records {
        let (run_at, started_at) = (time_ms(record, "run_at"), time_ms(record, "started_at"));
        assert!(
            started_at >= run_at,
            "started {} ms early: {record}",
            run_at - started_at
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_of_any_mix_never_start_early_and_all_run() {
    let mut env = TestEnv::new("delayed-mix");
    let url = env.start_master().await;
    env.start_worker(env.worker().concurrency(8)).await;
    let api = JsonApi::new(env.http_client(), url);
    let submit = |body: Value| {
        let api = api.clone();
        async move {
            let (status, answer) = api.post("/v1/jobs", &body).await;
            assert_eq!(status, 202, "{body} → {answer}");
            answer["id"].as_str().expect("an id").to_string()
        }
    };
    // A job delayed for ten minutes first: nothing behind it waits for it.
    let blocker = submit(json!({"group": "default", "function": "echo", "delay_ms": 600_000})).await;
    let mut ids = Vec::new();
    for delay_ms in [2500, 0, 1200, 50, 2000, 400, 3000, 200, 800, 1600] {
        for copy in 0..2 {
            let args = json!({"delay_ms": delay_ms, "copy": copy});
            ids.push(
                submit(json!({"group": "default", "function": "echo", "args": args, "delay_ms": delay_ms}))
                    .await,
            );
        }
    }
    let soon = jobfleet_api::rfc3339(now_ms() + 1500).expect("a time");
    ids.push(submit(json!({"group": "default", "function": "echo", "run_at": soon})).await);
    let past = jobfleet_api::rfc3339(now_ms() - 60_000).expect("a time");
    ids.push(submit(json!({"group": "default", "function": "echo", "run_at": past})).await);
    // On the wire: a producer's delays, deferred by the worker that meets them early.
    let producer = env.producer().await;
    let mut wire = Vec::new();
    for delay_ms in [900, 300, 1800] {
        wire.push(
            JobMessage::new("default", "echo", json!({"wire": delay_ms}))
                .with_delay(Duration::from_millis(delay_ms)),
        );
    }
    wire.push(JobMessage::new("default", "echo", json!({"wire": "run_at"})).with_run_at(now_ms() + 1100));
    producer.publish_many(&wire).await.unwrap();
    ids.extend(wire.iter().map(|job| job.id.clone()));

    let records = finished(&api, &ids, Duration::from_secs(30)).await;
    assert_none_early(&records);
    let blocked = api.job(&blocker).await;
    assert_eq!(blocked["status"], "queued", "{blocked}");
    assert!(blocked["run_at"].is_string(), "{blocked}");
    let (status, canceled) = api.post(&format!("/v1/jobs/{blocker}/cancel"), &json!({})).await;
    assert_eq!(
        (status, &canceled["status"]),
        (200, &json!("canceled")),
        "{canceled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_survives_a_restart_of_the_master_and_the_workers() {
    let mut env = TestEnv::new("delayed-restart");
    let (pid, url) = env.spawn_master_process().await;
    let api = JsonApi::new(env.http_client(), url);
    let (status, answer) = api
        .post(
            "/v1/jobs",
            &json!({"group": "default", "function": "echo", "delay_ms": 1500}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let record = api.job(&id).await;
    let run_at = time_ms(&record, "run_at");
    assert_eq!(record["status"], "queued");
    // The only master dies before the job is due, with no worker up at all.
    env.signal(pid, libc::SIGKILL);
    env.wait_process(pid, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async {
        (now_ms() > run_at + 500).then_some(())
    })
    .await;
    let stranded = env.coordinator.job(&id).await.unwrap().expect("the record");
    assert_eq!(stranded.status, JobStatus::Queued, "nobody could have started it");

    let (_, url) = env.spawn_master_process().await;
    env.start_worker(env.worker()).await;
    let api = JsonApi::new(env.http_client(), url);
    let records = finished(&api, std::slice::from_ref(&id), Duration::from_secs(20)).await;
    assert_none_early(&records);
    assert_eq!(records[0]["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_canceled_before_its_time_never_runs() {
    let mut env = TestEnv::new("delayed-cancel");
    let url = env.start_master().await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), url);
    let (_, answer) = api
        .post(
            "/v1/jobs",
            &json!({"group": "default", "function": "echo", "delay_ms": 800}),
        )
        .await;
    let through_api = answer["id"].as_str().unwrap().to_string();
    let on_the_wire = JobMessage::new("default", "echo", json!({})).with_delay(Duration::from_millis(800));
    env.producer().await.publish(&on_the_wire).await.unwrap();
    let canceled = [through_api, on_the_wire.id.clone()];
    for id in &canceled {
        let (status, record) = api.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
        assert_eq!((status, &record["status"]), (200, &json!("canceled")), "{record}");
    }
    // The worker meets the wire job's message only now, after the cancel.
    env.start_worker(env.worker()).await;
    // A job due after the canceled ones: once it ran, theirs had come and gone.
    let (_, answer) = api
        .post(
            "/v1/jobs",
            &json!({"group": "default", "function": "echo", "delay_ms": 1500}),
        )
        .await;
    let later = answer["id"].as_str().unwrap().to_string();
    finished(&api, std::slice::from_ref(&later), Duration::from_secs(20)).await;
    for id in &canceled {
        let record = api.job(id).await;
        assert_eq!(record["status"], "canceled", "{record}");
        assert_eq!(record["attempts"], 0, "{record}");
        assert!(record.get("started_at").is_none(), "{record}");
    }
    let mut ids = canceled.to_vec();
    ids.push(later);
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(10)).await;
    for extra in drain_results(&mut subscriber, Duration::from_millis(500)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    for id in &canceled {
        assert!(
            results[id].iter().all(|r| r.status == JobStatus::Canceled),
            "{id}: {:?}",
            results[id]
        );
    }
    let delayed: u64 = env.coordinator.delayed_counts(&["default".into()]).await.unwrap()[0];
    assert_eq!(delayed, 0, "nothing is left in the delayed set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_job_published_by_two_leaders_runs_once() {
    // A leader that dies between publishing a due job and removing its entry leaves it to
    // the next leader, which publishes it again; so do two masters during a handover.
    let mut env = TestEnv::new("delayed-twice");
    env.start_worker(env.worker()).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let job = JobMessage::new("default", "echo", json!({"twice": true}));
    let due_at = now_ms() + 200;
    let new = NewJob {
        delay_until: Some(due_at),
        ..NewJob::new(&job, None)
    };
    env.coordinator.submit_job(new).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        (now_ms() >= due_at).then_some(())
    })
    .await;
    let first = env.coordinator.due("default", now_ms(), 10).await.unwrap();
    let second = env.coordinator.due("default", now_ms(), 10).await.unwrap();
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "both leaders read the due job"
    );
    for due in [&first, &second] {
        producer.publish(&due[0].record.to_job_message()).await.unwrap();
    }
    assert_eq!(env.coordinator.promoted("default", &first).await.unwrap(), 1);
    assert_eq!(env.coordinator.promoted("default", &second).await.unwrap(), 0);

    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(10),
    )
    .await;
    let extra = drain_results(&mut subscriber, Duration::from_secs(1)).await;
    assert_eq!(
        results[&job.id].len() + extra.len(),
        1,
        "one outcome: {results:?} {extra:?}"
    );
    let record = env.coordinator.job(&job.id).await.unwrap().expect("the record");
    assert_eq!((record.status, record.attempts), (JobStatus::Finished, 1));
}

/// Sends a bulk action and returns its answer (asserting 200).
async fn bulk(api: &JsonApi, action: &str, filter: Value) -> Value {
    let (status, answer) = api.post(&format!("/v1/jobs/{action}"), &filter).await;
    assert_eq!(status, 200, "{action} {filter}: {answer}");
    answer
}

/// The `ids` of a bulk answer.
fn ids_of(answer: &Value) -> Vec<String> {
    let ids = answer["ids"].as_array().expect("ids");
    ids.iter()
        .map(|id| id.as_str().expect("an id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_cancel_and_retry_act_on_what_the_filter_matches_and_link_retries() {
    let mut env = TestEnv::new("bulk");
    let url = env.start_master().await;
    let api = JsonApi::new(env.http_client(), url);
    let mut submitted = Vec::new();
    for function in ["echo", "echo", "echo", "fail", "fail"] {
        let (status, answer) = api
            .post(
                "/v1/jobs",
                &json!({"group": "default", "function": function, "args": {"message": "no"}}),
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        submitted.push(answer["id"].as_str().unwrap().to_string());
    }
    let (echoes, fails) = submitted.split_at(3);

    // No worker yet: everything is queued; cancel the echoes.
    let canceled = bulk(&api, "cancel", json!({"group": "default", "function": "echo"})).await;
    assert_eq!(
        (&canceled["matched"], &canceled["changed"]),
        (&json!(3), &json!(3)),
        "{canceled}"
    );
    let mut got = ids_of(&canceled);
    got.sort();
    let mut want = echoes.to_vec();
    want.sort();
    assert_eq!(got, want);
    let again = bulk(&api, "cancel", json!({"function": "echo"})).await;
    assert_eq!(
        (&again["matched"], &again["changed"]),
        (&json!(3), &json!(0)),
        "{again}"
    );

    // The fails run and fail; retrying them makes new jobs that name them.
    env.start_worker(env.worker()).await;
    eventually(Duration::from_secs(20), || async {
        for id in fails {
            if api.job(id).await["status"] != "failed" {
                return None;
            }
        }
        Some(())
    })
    .await;
    let retried = bulk(&api, "retry", json!({"status": "failed"})).await;
    assert_eq!(
        (&retried["matched"], &retried["changed"]),
        (&json!(2), &json!(2)),
        "{retried}"
    );
    let mut originals = Vec::new();
    for id in ids_of(&retried) {
        let record = api.job(&id).await;
        assert_eq!(record["function"], "fail", "{record}");
        originals.push(record["retry_of"].as_str().expect("retry_of").to_string());
    }
    originals.sort();
    let mut want = fails.to_vec();
    want.sort();
    assert_eq!(originals, want);
    // A job is retried once, however often it is asked for.
    let twice = bulk(&api, "retry", json!({"ids": fails})).await;
    assert_eq!(
        (&twice["matched"], &twice["changed"]),
        (&json!(2), &json!(0)),
        "{twice}"
    );

    // Canceled jobs are retried too, and their new jobs run.
    let revived = bulk(&api, "retry", json!({"status": "canceled", "function": "echo"})).await;
    assert_eq!(
        (&revived["matched"], &revived["changed"]),
        (&json!(3), &json!(3)),
        "{revived}"
    );
    let records = finished(&api, &ids_of(&revived), Duration::from_secs(20)).await;
    for record in records {
        let original = record["retry_of"].as_str().expect("retry_of");
        assert!(echoes.contains(&original.to_string()), "{record}");
    }
}

/// The fire times (unix ms) of the firing jobs of schedule `name` listed so far, sorted.
async fn firings(api: &JsonApi, name: &str) -> Vec<(i64, String)> {
    let (status, page) = api.get("/v1/jobs?function=echo&limit=1000").await;
    assert_eq!(status, 200, "{page}");
    let prefix = format!("{name}:");
    let mut times: Vec<(i64, String)> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|job| job["id"].as_str())
        .filter_map(|id| {
            let time = id.strip_prefix(&prefix)?;
            Some((
                jobfleet_api::parse_rfc3339(time).expect("a fire time"),
                id.to_string(),
            ))
        })
        .collect();
    times.sort();
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_second_schedule_under_two_masters_fires_each_second_once() {
    let mut env = TestEnv::new("cron");
    let (first, first_url) = env.spawn_master_process().await;
    let (_, second_url) = env.spawn_master_process().await;
    env.start_worker(env.worker().concurrency(4)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), second_url);
    let body = json!({"name": "tick", "cron": "* * * * * *", "group": "default", "function": "echo", "args": {"n": 1}});
    let (status, created) = api.post("/v1/schedules", &body).await;
    assert_eq!(status, 201, "{created}");
    let (_, listed) = api.get("/v1/schedules").await;
    assert_eq!(listed["schedules"][0]["name"], "tick", "{listed}");

    eventually(Duration::from_secs(20), || async {
        (firings(&api, "tick").await.len() >= 3).then_some(())
    })
    .await;
    // The first master (the leader, as it took the lease first) dies: the other takes
    // over after the lease's TTL and fires the seconds missed meanwhile.
    env.signal(first, libc::SIGKILL);
    env.wait_process(first, Duration::from_secs(10)).await;
    drop(first_url);
    eventually(Duration::from_secs(30), || async {
        (firings(&api, "tick").await.len() >= 10).then_some(())
    })
    .await;
    let (status, _) = api.delete("/v1/schedules/tick").await;
    assert_eq!(status, 204);

    let fired = firings(&api, "tick").await;
    for pair in fired.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 1000, "a gap or a double between {pair:?}");
    }
    let ids: Vec<String> = fired.iter().map(|(_, id)| id.clone()).collect();
    let records = finished(&api, &ids, Duration::from_secs(20)).await;
    for record in &records {
        assert!(
            time_ms(record, "started_at") >= time_ms(record, "run_at"),
            "{record}"
        );
        assert_eq!(record["attempts"], 1, "{record}");
    }
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(10)).await;
    for extra in drain_results(&mut subscriber, Duration::from_millis(500)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    for id in &ids {
        assert_eq!(results[id].len(), 1, "{id} ran {} times", results[id].len());
    }
    let (_, after) = api.get("/v1/schedules").await;
    assert_eq!(after["schedules"], json!([]), "{after}");
}
