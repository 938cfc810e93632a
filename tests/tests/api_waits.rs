//! Synchronous submits (`?wait=`) leave the master's wait registry as they found it,
//! however they end: woken by the result, timed out, repeated, failed, or dropped by the
//! client. The registry's size is the `jobfleet_http_waiting_requests` gauge.

use jobfleet_tests::{eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const FLEET: &str = r#"
[groups.default.functions.sleep]
[groups.default.functions.echo]
"#;

async fn post(client: &Client, url: &str, body: Value) -> Result<(StatusCode, Value), reqwest::Error> {
    let response = client.post(url).json(&body).send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The waiting-requests gauge of the master at `base`.
async fn waiting(http: &Client, base: &str) -> Option<i64> {
    gauge(http, base, "jobfleet_http_waiting_requests").await
}

/// The gauge `name` of the master at `base`.
async fn gauge(http: &Client, base: &str, name: &str) -> Option<i64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiting_submit_leaves_the_registry() {
    let mut env = TestEnv::with_config("waits", FLEET);
    let base = env.start_master().await;
    env.start_worker(env.worker().concurrency(4)).await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    let slow = json!({"group": "default", "function": "sleep", "id": "slow", "args": {"ms": 3000}});
    let (status, _) = post(&http, &jobs, slow.clone()).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);

    // Repeats of a running job, each waiting past its own wait.
    let repeat_url = format!("{jobs}?wait=0.2");
    let repeats = (0..10).map(|_| post(&http, &repeat_url, slow.clone()));
    for reply in futures::future::join_all(repeats).await {
        assert_eq!(reply.unwrap().0, StatusCode::OK);
    }
    // Repeats by idempotency key, new jobs woken by their result, and failed submits.
    for i in 0..5 {
        let keyed = json!({"group": "default", "function": "echo", "idempotency_key": "k", "args": i});
        assert_eq!(
            post(&http, &format!("{jobs}?wait=5"), keyed).await.unwrap().0,
            StatusCode::OK
        );
        let quick = json!({"group": "default", "function": "echo", "args": i});
        assert_eq!(
            post(&http, &format!("{jobs}?wait=5"), quick).await.unwrap().0,
            StatusCode::OK
        );
        let bad = json!({"group": "default", "function": "echo", "id": "bad id"});
        assert_eq!(
            post(&http, &format!("{jobs}?wait=5"), bad).await.unwrap().0,
            StatusCode::BAD_REQUEST
        );
    }
    // Clients that give up while their request waits.
    let impatient = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for i in 0..5 {
        let body = json!({"group": "default", "function": "sleep", "id": format!("dropped-{i}"), "args": {"ms": 2000}});
        assert!(post(&impatient, &format!("{jobs}?wait=30"), body).await.is_err());
    }
    let dropped_again = json!({"group": "default", "function": "sleep", "id": "slow"});
    assert!(post(&impatient, &format!("{jobs}?wait=30"), dropped_again)
        .await
        .is_err());

    eventually(Duration::from_secs(10), || async {
        (waiting(&http, &base).await? == 0).then_some(())
    })
    .await;
}

/// The master consumes results only while a submit waits (a master serving submits nobody
/// waits for costs the broker no second delivery per job): its feed opens with the first
/// waiting submit, wakes it, and closes once nobody waited for its idle time (2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_subscribes_to_results_only_while_submits_wait() {
    let mut env = TestEnv::with_config("waits-feed", FLEET);
    let base = env.start_master().await;
    env.start_worker(env.worker().concurrency(4)).await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    let feed = || gauge(&http, &base, "jobfleet_master_result_feed");
    let echo = |i: i32| json!({"group": "default", "function": "echo", "args": i});

    let (status, _) = post(&http, &jobs, echo(0)).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(feed().await, Some(0), "nobody waits: no feed");

    for round in 1..=2 {
        let started = std::time::Instant::now();
        let (status, record) = post(&http, &format!("{jobs}?wait=20"), echo(round))
            .await
            .unwrap();
        assert_eq!(
            (status, &record["status"]),
            (StatusCode::OK, &json!("finished")),
            "{record}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the result, not the timeout"
        );
        assert_eq!(feed().await, Some(1), "a submit waited: the feed is open");
        eventually(Duration::from_secs(15), || async {
            (feed().await == Some(0)).then_some(())
        })
        .await;
    }
    env.stop_workers().await;
}
