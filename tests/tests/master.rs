//! The master's HTTP API through a real socket, with real workers: submit (async, sync,
//! idempotent), validation, status, listing, cancel, delete, groups, workers, health,
//! metrics, OpenAPI, queue timeouts, retention, and the leader lease.

use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::{eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const FLEET: &str = r#"
max_args_bytes = 2000
[groups.default.functions.echo]
[groups.default.functions.sleep]
[groups.default.functions.fail]
[groups.default.functions.crash]
[groups.default.functions.wordcount]
schema = { type = "object", required = ["text"], properties = { text = { type = "string" } } }
[groups.lonely]
queue_timeout = "1s"
[groups.lonely.functions.echo]
"#;

async fn post(client: &Client, url: &str, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &Client, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_error(reply: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["kind"], kind, "{}", reply.1);
    assert!(reply.1["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_validates_runs_and_reports_jobs() {
    let mut env = TestEnv::with_config("api", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");

    // Validation happens before anything is queued.
    assert_error(
        &post(&http, &jobs, json!({"group": "nope", "function": "echo"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &post(&http, &jobs, json!({"group": "default", "function": "nope"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_function",
    );
    assert_error(
        &post(
            &http,
            &jobs,
            json!({"group": "default", "function": "wordcount", "args": {"txt": 1}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_args",
    );
    assert_error(
        &post(
            &http,
            &jobs,
            json!({"group": "default", "function": "echo", "args": "x".repeat(3000)}),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert_error(
        &post(
            &http,
            &jobs,
            json!({"group": "default", "function": "echo", "id": "bad id"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &post(&http, &jobs, json!({"group": "default"})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &post(
            &http,
            &format!("{jobs}?wait=301"),
            json!({"group": "default", "function": "echo"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let garbage = http.post(&jobs).body("{not json").send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    // A client of its own: the master answers 413 before reading the whole body and drops
    // the connection, which a shared pool could hand to the next request.
    let huge = Client::new()
        .post(&jobs)
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let listed = get(&http, &jobs).await;
    assert_eq!(
        listed.1["jobs"],
        json!([]),
        "nothing was queued by invalid submits"
    );

    // Async submit: 202 and queued until a worker exists.
    let (status, accepted) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "wordcount", "args": {"text": "a b a"}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap().to_string();
    let (status, record) = get(&http, &format!("{jobs}/{id}")).await;
    assert_eq!(
        (status, record["status"].clone()),
        (StatusCode::OK, json!("queued"))
    );
    assert_error(
        &get(&http, &format!("{jobs}/no-such-job")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &post(&http, &format!("{jobs}/{id}/nope"), json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let not_yet = http.delete(format!("{jobs}/{id}")).send().await.unwrap();
    assert_eq!(
        not_yet.status(),
        StatusCode::CONFLICT,
        "a queued job cannot be deleted"
    );

    env.start_worker(env.worker().concurrency(4)).await;
    let record = eventually(Duration::from_secs(20), || async {
        let (_, record) = get(&http, &format!("{jobs}/{id}")).await;
        (record["status"] == "finished").then_some(record)
    })
    .await;
    assert_eq!(record["result"], json!({"a": 2, "b": 1}));
    assert_eq!(record["attempts"], 1);
    assert!(record["worker"].as_str().is_some());
    for field in ["submitted_at", "started_at", "finished_at"] {
        let text = record[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {record}"));
        assert!(
            text.ends_with('Z') && text.contains('T'),
            "{field} is RFC 3339 UTC: {text}"
        );
    }

    // Sync submit answers with the ended job.
    let started = Instant::now();
    let (status, record) = post(
        &http,
        &format!("{jobs}?wait=10"),
        json!({"group": "default", "function": "echo", "args": [1, "two"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(
        (record["status"].clone(), record["result"].clone()),
        (json!("finished"), json!([1, "two"]))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, record) = post(
        &http,
        &format!("{jobs}?wait=5"),
        json!({"group": "default", "function": "fail", "args": {"message": "nope"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        record["error"],
        json!({"kind": "function_error", "message": "nope"})
    );
    // A job that outlasts the wait answers 202.
    let (status, reply) = post(
        &http,
        &format!("{jobs}?wait=0.3"),
        json!({"group": "default", "function": "sleep", "args": {"ms": 1500}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(reply["status"].as_str(), Some("queued" | "started")));

    // A repeated id returns the original job.
    let (status, first) = post(
        &http,
        &format!("{jobs}?wait=10"),
        json!({"group": "default", "function": "echo", "id": "mine-1", "args": 1}),
    )
    .await;
    assert_eq!((status, first["result"].clone()), (StatusCode::OK, json!(1)));
    let (status, again) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "echo", "id": "mine-1", "args": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["result"], json!(1), "the original, not a second run");

    // Terminal jobs: cancel is a conflict, delete forgets them.
    assert_error(
        &post(&http, &format!("{jobs}/mine-1/cancel"), json!({})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_eq!(
        http.delete(format!("{jobs}/mine-1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_error(
        &get(&http, &format!("{jobs}/mine-1")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        http.delete(format!("{jobs}/mine-1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Health, readiness, metrics, OpenAPI.
    assert_eq!(get(&http, &format!("{base}/healthz")).await.0, StatusCode::OK);
    assert_eq!(get(&http, &format!("{base}/readyz")).await.0, StatusCode::OK);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "jobfleet_jobs_submitted_total",
        "jobfleet_queue_depth",
        "jobfleet_workers",
        "jobfleet_group_broken",
        "jobfleet_http_requests_total",
        "jobfleet_http_request_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(
        metrics.contains(r#"jobfleet_jobs_submitted_total{function="echo",group="default"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jobfleet_workers{group="default"} 1"#),
        "{metrics}"
    );
    let (status, openapi) = get(&http, &format!("{base}/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/groups",
        "/v1/groups/{group}",
        "/v1/groups/{group}/reset",
        "/v1/workers",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_newest_first_filtered_and_paged_while_jobs_are_added() {
    let mut env = TestEnv::with_config("listing", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    let mut ids = Vec::new();
    for i in 0..25 {
        let function = if i % 5 == 0 { "fail" } else { "echo" };
        let (status, reply) = post(
            &http,
            &jobs,
            json!({"group": "default", "function": function, "args": {"i": i}}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(reply["id"].as_str().unwrap().to_string());
    }
    // Page through 10 at a time, adding jobs between pages: every original job shows once,
    // in newest-first order, and none of the new ones slips in.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{jobs}?limit=10&cursor={c}"),
            None => format!("{jobs}?limit=10"),
        };
        let (status, page) = get(&http, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        post(&http, &jobs, json!({"group": "default", "function": "echo"})).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let (_, page) = get(&http, &format!("{jobs}?function=fail&limit=1000")).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);
    let (_, page) = get(&http, &format!("{jobs}?status=finished")).await;
    assert_eq!(page["jobs"], json!([]), "no worker ran anything");
    let (_, page) = get(&http, &format!("{jobs}?group=lonely")).await;
    assert_eq!(page["jobs"], json!([]));
    assert_error(
        &get(&http, &format!("{jobs}?status=done")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &get(&http, &format!("{jobs}?limit=0")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &get(&http, &format!("{jobs}?limit=1001")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &get(&http, &format!("{jobs}?cursor=zzz")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_racing_idempotent_submits_run_the_job_once() {
    let mut env = TestEnv::with_config("idem", FLEET);
    let base = env.start_master().await;
    env.start_worker(env.worker().concurrency(8)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let http = Client::new();
    let replies = futures::future::join_all((0..50).map(|_| {
        let http = http.clone();
        let url = format!("{base}/v1/jobs");
        async move { post(&http, &url, json!({"group": "default", "function": "sleep", "args": {"ms": 50}, "idempotency_key": "order-42"})).await }
    }))
    .await;
    let ids: HashSet<&str> = replies
        .iter()
        .map(|(_, r)| r["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 1, "every racing submit names the same job");
    assert_eq!(
        replies.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count(),
        1,
        "exactly one submit created it"
    );
    assert!(replies
        .iter()
        .all(|(s, _)| *s == StatusCode::ACCEPTED || *s == StatusCode::OK));
    let id = ids.into_iter().next().unwrap().to_string();
    let results = jobfleet_tests::collect_results(
        &mut subscriber,
        std::slice::from_ref(&id),
        Duration::from_secs(20),
    )
    .await;
    let extra = jobfleet_tests::drain_results(&mut subscriber, Duration::from_millis(500)).await;
    assert_eq!(results[&id].len() + extra.len(), 1, "one run, one result");
    let record = env.coordinator.job(&id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Finished, 1));
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_jobs_and_queued_jobs_never_run() {
    let mut env = TestEnv::with_config("cancel", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    let mut subscriber = env.subscriber(&["#"]).await;

    // Canceled before any worker exists: it never runs once one starts.
    let (_, queued) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "echo", "args": "never"}),
    )
    .await;
    let queued_id = queued["id"].as_str().unwrap().to_string();
    let (status, canceled) = post(&http, &format!("{jobs}/{queued_id}/cancel"), json!({})).await;
    assert_eq!(
        (status, canceled["status"].clone()),
        (StatusCode::OK, json!("canceled"))
    );
    assert_eq!(canceled["error"]["kind"], "canceled");
    let early = jobfleet_tests::collect_results(
        &mut subscriber,
        std::slice::from_ref(&queued_id),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        early[&queued_id][0].status,
        JobStatus::Canceled,
        "the cancel is announced on the topic"
    );

    env.start_worker(env.worker().concurrency(2)).await;
    let (_, long) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "sleep", "args": {"ms": 30000}}),
    )
    .await;
    let long_id = long["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), || async {
        (get(&http, &format!("{jobs}/{long_id}")).await.1["status"] == "started").then_some(())
    })
    .await;
    let asked = Instant::now();
    let (status, reply) = post(&http, &format!("{jobs}/{long_id}/cancel"), json!({})).await;
    assert_eq!(
        (status, reply["status"].clone()),
        (StatusCode::OK, json!("canceled"))
    );
    // The worker lets go of it: its running set empties within a second.
    eventually(Duration::from_secs(1), || async {
        let workers = env.coordinator.workers().await.unwrap();
        workers
            .iter()
            .all(|w| w["running"].as_array().is_none_or(|r| r.is_empty()))
            .then_some(())
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stopped within a second"
    );

    // A marker job proves the queue moved past the canceled one; neither ran after all.
    let (status, marker) = post(
        &http,
        &format!("{jobs}?wait=10"),
        json!({"group": "default", "function": "echo", "args": "marker"}),
    )
    .await;
    assert_eq!(
        (status, marker["status"].clone()),
        (StatusCode::OK, json!("finished"))
    );
    let extra = jobfleet_tests::drain_results(&mut subscriber, Duration::from_millis(500)).await;
    assert!(
        extra.iter().all(|r| r.id != queued_id),
        "the canceled queued job never ran: {extra:?}"
    );
    let long_results: Vec<_> = extra.iter().filter(|r| r.id == long_id).collect();
    assert_eq!(
        long_results.len(),
        1,
        "one result for the canceled running job: {extra:?}"
    );
    assert_eq!(long_results[0].status, JobStatus::Canceled);
    for id in [&queued_id, &long_id] {
        let record = env.coordinator.job(id).await.unwrap().unwrap();
        assert_eq!(record.status, JobStatus::Canceled);
    }
    assert_eq!(
        env.coordinator.job(&queued_id).await.unwrap().unwrap().attempts,
        0
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_workers_queue_timeouts_and_broken_groups() {
    let mut env = TestEnv::with_config("groups", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");

    // No worker for `lonely`: its queue timeout fails the job with no_worker.
    let (_, lonely) = post(
        &http,
        &format!("{jobs}?wait=10"),
        json!({"group": "lonely", "function": "echo"}),
    )
    .await;
    assert_eq!(lonely["status"], "failed", "{lonely}");
    assert_eq!(lonely["error"]["kind"], "no_worker");

    let worker = env.spawn_worker_process(&["--group", "default", "--concurrency", "2"]);
    let (_, listed) = eventually(Duration::from_secs(10), || async {
        let reply = get(&http, &format!("{base}/v1/workers")).await;
        (reply.1["workers"].as_array().is_some_and(|w| w.len() == 1)).then_some(reply)
    })
    .await;
    let entry = &listed["workers"][0];
    assert_eq!(entry["pid"], worker);
    assert_eq!(entry["groups"], json!(["default"]));
    assert_eq!(entry["concurrency"], 2);

    let (status, group) = get(&http, &format!("{base}/v1/groups/default")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["workers"], 1);
    assert_eq!(
        group["functions"],
        json!(["crash", "echo", "fail", "sleep", "wordcount"])
    );
    let (_, all) = get(&http, &format!("{base}/v1/groups")).await;
    assert_eq!(all["groups"].as_array().unwrap().len(), 2);
    assert_error(
        &get(&http, &format!("{base}/v1/groups/nope")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &post(&http, &format!("{base}/v1/groups/nope/reset"), json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Five crashes in a row break the group: submits fail fast, reset restores it.
    for _ in 0..5 {
        let (_, crashed) = post(
            &http,
            &format!("{jobs}?wait=10"),
            json!({"group": "default", "function": "crash"}),
        )
        .await;
        assert_eq!(crashed["error"]["kind"], "crashed");
    }
    let (_, group) = get(&http, &format!("{base}/v1/groups/default")).await;
    assert_eq!(
        (group["broken"].clone(), group["consecutive_failures"].clone()),
        (json!(true), json!(5))
    );
    assert_error(
        &post(&http, &jobs, json!({"group": "default", "function": "echo"})).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "group_broken",
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"jobfleet_group_broken{group="default"} 1"#));
    let (status, reset) = post(&http, &format!("{base}/v1/groups/default/reset"), json!({})).await;
    assert_eq!(
        (
            status,
            reset["broken"].clone(),
            reset["consecutive_failures"].clone()
        ),
        (StatusCode::OK, json!(false), json!(0))
    );
    let (status, ok) = post(
        &http,
        &format!("{jobs}?wait=10"),
        json!({"group": "default", "function": "echo", "args": "back"}),
    )
    .await;
    assert_eq!((status, ok["result"].clone()), (StatusCode::OK, json!("back")));

    // A worker killed without warning leaves the live set within its heartbeat timeout
    // (2 s in tests) and counts as a crash for its groups.
    env.signal(worker, libc::SIGKILL);
    let killed = Instant::now();
    eventually(Duration::from_secs(6), || async {
        (get(&http, &format!("{base}/v1/workers")).await.1["workers"] == json!([])).then_some(())
    })
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "gone after {:?}",
        killed.elapsed()
    );
    eventually(Duration::from_secs(5), || async {
        (get(&http, &format!("{base}/v1/groups/default")).await.1["consecutive_failures"] == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_records_expire_with_their_index_entries() {
    let mut env = TestEnv::with_config("retention", &format!("retention = \"2s\"\n{FLEET}"));
    let base = env.start_master().await;
    env.start_worker(env.worker()).await;
    let http = Client::new();
    let (status, done) = post(
        &http,
        &format!("{base}/v1/jobs?wait=10"),
        json!({"group": "default", "function": "echo"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = done["id"].as_str().unwrap().to_string();
    let (_, page) = get(&http, &format!("{base}/v1/jobs")).await;
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    eventually(Duration::from_secs(10), || async {
        let gone = get(&http, &format!("{base}/v1/jobs/{id}")).await.0 == StatusCode::NOT_FOUND;
        let index = format!("{}:index", env.namespace());
        let client = jobfleet_common::redis::Client::open(env.config.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let indexed: i64 = jobfleet_common::redis::cmd("ZCARD")
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap();
        (gone && indexed == 0).then_some(())
    })
    .await;
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leading_master_dies_another_keeps_the_monitor_going() {
    let mut env = TestEnv::with_config("leader", FLEET);
    let (first, first_url) = env.spawn_master_process().await;
    let (second, second_url) = env.spawn_master_process().await;
    let http = Client::new();
    // Either master serves any call.
    for url in [&first_url, &second_url] {
        assert_eq!(
            post(
                &http,
                &format!("{url}/v1/jobs"),
                json!({"group": "default", "function": "echo"})
            )
            .await
            .0,
            StatusCode::ACCEPTED
        );
    }
    let lease_key = format!("{}:lease:monitor", env.namespace());
    let client = jobfleet_common::redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let holder: String = eventually(Duration::from_secs(10), || {
        let mut conn = conn.clone();
        let key = lease_key.clone();
        async move {
            jobfleet_common::redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;
    let (leader, survivor_url) = if holder.contains(&format!("master-{first}-")) {
        (first, &second_url)
    } else {
        (second, &first_url)
    };
    env.signal(leader, libc::SIGKILL);
    let _ = env.wait_process(leader, Duration::from_secs(5)).await;

    // The survivor takes the lease and runs the queue-timeout duty.
    let (status, lonely) = post(
        &http,
        &format!("{survivor_url}/v1/jobs?wait=30"),
        json!({"group": "lonely", "function": "echo"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{lonely}");
    assert_eq!(lonely["error"]["kind"], "no_worker");
    let new_holder: String = jobfleet_common::redis::cmd("GET")
        .arg(&lease_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_ne!(new_holder, holder);
    let _ = JobMessage::new("default", "echo", json!(null));
}
