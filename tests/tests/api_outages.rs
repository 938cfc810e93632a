//! The API while a backing service stalls: a broker memory alarm (publishers blocked) and
//! a paused Redis answer 503 in bounded time, never a hung request, and every submit made
//! meanwhile either left nothing behind or leads to a job that ends.

use jobfleet_common::config::Config;
use jobfleet_common::redis;
use jobfleet_tests::private::{PrivateRabbit, PrivateRedis};
use jobfleet_tests::{eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FLEET: &str = r#"
[groups.default.functions.echo]
"#;

/// Long enough for any deadline of the master: a request that takes longer hangs.
const HUNG: Duration = Duration::from_secs(60);

/// What the shared services' URLs are for this run.
fn shared_services() -> Config {
    let mut config = Config::from_toml("").expect("default config");
    if let Ok(url) = std::env::var("JOBFLEET_AMQP_URL") {
        config.amqp_url = url;
    }
    if let Ok(url) = std::env::var("JOBFLEET_REDIS_URL") {
        config.redis_url = url;
    }
    config
}

fn client() -> Client {
    Client::builder().timeout(HUNG).build().expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request
        .send()
        .await
        .expect("an answer within the client's timeout");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn submit(http: &Client, base: &str, id: &str) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/jobs"))
        .json(&json!({"group": "default", "function": "echo", "id": id, "args": id}))
}

fn assert_unavailable(reply: &(StatusCode, Value), what: &str) {
    assert_eq!(reply.0, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", reply.1);
    assert_eq!(reply.1["error"]["kind"], "unavailable", "{what}: {}", reply.1);
}

/// Waits until every job of `ids` either has no record or has ended, and the group has
/// nothing queued or running.
async fn settled(env: &TestEnv, ids: &[String]) {
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = env.coordinator.keys();
    // A write waits out any pause of writes, so what the master sent before is applied.
    let probe = format!("{}:probe", env.namespace());
    eventually(Duration::from_secs(20), || async {
        let mut conn = conn.clone();
        redis::cmd("SET")
            .arg(&probe)
            .arg(1)
            .query_async::<()>(&mut conn)
            .await
            .ok()
    })
    .await;
    eventually(Duration::from_secs(60), || async {
        for id in ids {
            match env.coordinator.job(id).await.ok()? {
                Some(record) if !record.status.is_terminal() => return None,
                _ => {}
            }
        }
        let mut conn = conn.clone();
        let queued: u64 = redis::cmd("ZCARD")
            .arg(keys.queued("default"))
            .query_async(&mut conn)
            .await
            .ok()?;
        let running: u64 = redis::cmd("SCARD")
            .arg(keys.running("default"))
            .query_async(&mut conn)
            .await
            .ok()?;
        (queued == 0 && running == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_alarm_gives_503s_never_hangs() {
    let rabbit = PrivateRabbit::start();
    let mut env = TestEnv::with_services("alarm", FLEET, &rabbit.url(), &shared_services().redis_url);
    let base = env.start_master().await;
    let http = client();
    assert_eq!(send(submit(&http, &base, "before")).await.0, StatusCode::ACCEPTED);

    rabbit.raise_memory_alarm();
    let mut refused = Vec::new();
    for i in 0..3 {
        let id = format!("blocked-{i}");
        assert_unavailable(&send(submit(&http, &base, &id)).await, &id);
        refused.push(id);
    }
    // A batch is refused job by job, each in its place, and leaves no record behind.
    let ids: Vec<String> = (0..3).map(|i| format!("blocked-batch-{i}")).collect();
    let jobs: Vec<Value> = ids
        .iter()
        .map(|id| json!({"group": "default", "function": "echo", "id": id, "args": id}))
        .collect();
    let batch = http
        .post(format!("{base}/v1/jobs/batch"))
        .json(&json!({ "jobs": jobs }));
    let (status, body) = send(batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answers = body["jobs"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(answers.len(), ids.len(), "{body}");
    for (answer, id) in answers.iter().zip(&ids) {
        let shape = (
            &answer["outcome"],
            &answer["http_status"],
            &answer["error"]["kind"],
        );
        assert_eq!(
            shape,
            (&json!("error"), &json!(503), &json!("unavailable")),
            "{body}"
        );
        assert_eq!(env.coordinator.job(id).await.unwrap(), None, "{id} was discarded");
    }
    refused.extend(ids);
    // Reads that need only Redis still answer; the rest answer too.
    let (status, record) = send(http.get(format!("{base}/v1/jobs/before"))).await;
    assert_eq!(
        (status, record["status"].clone()),
        (StatusCode::OK, json!("queued"))
    );
    let (status, _) = send(http.get(format!("{base}/v1/groups/default"))).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    let (status, _) = send(http.get(format!("{base}/metrics"))).await;
    assert_eq!(status, StatusCode::OK);

    rabbit.clear_memory_alarm();
    eventually(Duration::from_secs(30), || async {
        (send(submit(&http, &base, "after")).await.0 == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    // What was refused left nothing behind or runs to its end once a worker is up.
    env.start_worker(env.worker()).await;
    refused.extend(["before".to_string(), "after".to_string()]);
    settled(&env, &refused).await;
    for id in ["before", "after"] {
        let record = env.coordinator.job(id).await.unwrap().expect("a record");
        assert_eq!(record.result, Some(json!(id)));
    }
}

/// The process id of a Redis server, as it reports it.
async fn redis_pid(url: &str) -> u32 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .expect("process_id in INFO")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_gives_503s_and_strands_no_submit() {
    let redis = PrivateRedis::start();
    let mut env = TestEnv::with_services("stall", FLEET, &shared_services().amqp_url, &redis.url());
    let base = env.start_master().await;
    env.start_worker(env.worker().concurrency(8)).await;
    let http = client();
    assert_eq!(
        send(submit(&http, &base, "warm").query(&[("wait", "10")]))
            .await
            .0,
        StatusCode::OK
    );
    let pid = redis_pid(&redis.url()).await;

    // Paused until every request has answered: each answers 503, none hangs.
    env.signal(pid, libc::SIGSTOP);
    let held: Vec<String> = (0..3).map(|i| format!("held-{i}")).collect();
    let replies = futures::future::join_all(held.iter().map(|id| send(submit(&http, &base, id)))).await;
    for (id, reply) in held.iter().zip(&replies) {
        assert_unavailable(reply, id);
    }
    assert_unavailable(&send(http.get(format!("{base}/v1/jobs/warm"))).await, "get");
    assert_unavailable(&send(http.get(format!("{base}/v1/jobs"))).await, "list");
    env.signal(pid, libc::SIGCONT);

    // Stalls while 30 jobs are submitted: Redis stopped for 1.5 s, then writes paused for
    // 1.5 s (a slow disk, a failover), so scripts run after their replies timed out.
    let stopped: Vec<String> = (0..30).map(|i| format!("stopped-{i}")).collect();
    env.signal(pid, libc::SIGSTOP);
    let submits = tokio::spawn(submit_all(http.clone(), base.clone(), stopped.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    env.signal(pid, libc::SIGCONT);
    accepted_or_unavailable(&stopped, submits.await.unwrap());
    // Writes paused for 1.5 s (a slow disk, a failover) while submits stream in: scripts
    // sent meanwhile run only after their replies timed out.
    let slowed: Vec<String> = (0..200).map(|i| format!("slowed-{i}")).collect();
    let answered = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn(submit_streams(
        http.clone(),
        base.clone(),
        slowed.clone(),
        answered.clone(),
    ));
    eventually(Duration::from_secs(30), || async {
        (answered.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    accepted_or_unavailable(&slowed, stream.await.unwrap());

    let all: Vec<String> = held.iter().chain(&stopped).chain(&slowed).cloned().collect();
    settled(&env, &all).await;
}

/// Submits `ids` over ten concurrent streams, one request after another in each, counting
/// the answers; returns them in the order of `ids`.
async fn submit_streams(
    http: Client,
    base: String,
    ids: Vec<String>,
    answered: Arc<AtomicUsize>,
) -> Vec<(StatusCode, Value)> {
    let streams = ids.chunks(ids.len().div_ceil(10)).map(|chunk| {
        let (http, base, answered) = (http.clone(), base.clone(), answered.clone());
        async move {
            let mut replies = Vec::new();
            for id in chunk {
                replies.push(send(submit(&http, &base, id)).await);
                answered.fetch_add(1, Ordering::SeqCst);
            }
            replies
        }
    });
    futures::future::join_all(streams)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn submit_all(http: Client, base: String, ids: Vec<String>) -> Vec<(StatusCode, Value)> {
    futures::future::join_all(ids.iter().map(|id| send(submit(&http, &base, id)))).await
}

fn accepted_or_unavailable(ids: &[String], replies: Vec<(StatusCode, Value)>) {
    for (id, (status, body)) in ids.iter().zip(replies) {
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::SERVICE_UNAVAILABLE,
            "{id}: {status} {body}"
        );
    }
}
