//! An ended job never runs again, whatever happens to its record afterwards: a copy of its
//! message that waited in the queue while nobody consumed the group (cancel + delete, a
//! queue timeout + delete, the retention passing) is dropped or dead-lettered, never run.

use jobfleet_common::message::{JobStatus, ResultMessage};
use jobfleet_tests::{collect_results, eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const FLEET: &str = r#"
retention = "3s"
[groups.default.functions.echo]
[groups.lonely]
queue_timeout = "1s"
[groups.lonely.functions.echo]
"#;

async fn submit(http: &Client, base: &str, group: &str) -> String {
    let body = json!({"group": group, "function": "echo", "args": {"x": 1}});
    let reply = http
        .post(format!("{base}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    reply.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn status(http: &Client, base: &str, id: &str) -> (StatusCode, Value) {
    let reply = http.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap();
    (reply.status(), reply.json().await.unwrap_or(Value::Null))
}

async fn delete(http: &Client, base: &str, id: &str) {
    let reply = http.delete(format!("{base}/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
}

/// Starts a worker of `group` (one job at a time, so the queue is served in order) and
/// returns every result published until a marker job submitted after `stale` has run.
async fn serve_until_marker(env: &mut TestEnv, base: &str, group: &str, stale: &str) -> Vec<ResultMessage> {
    let mut subscriber = env.subscriber(&["#"]).await;
    env.start_worker(env.worker().group(group).concurrency(1)).await;
    let marker = submit(&Client::new(), base, group).await;
    let ids = [stale.to_string(), marker.clone()];
    let results = collect_results(&mut subscriber, &ids[1..], Duration::from_secs(30)).await;
    let mut all: Vec<ResultMessage> = results.into_values().flatten().collect();
    all.extend(jobfleet_tests::drain_results(&mut subscriber, Duration::from_millis(300)).await);
    all
}

fn assert_never_ran(results: &[ResultMessage], id: &str) {
    let ran: Vec<&ResultMessage> = results
        .iter()
        .filter(|r| r.id == id && r.status == JobStatus::Finished)
        .collect();
    assert!(ran.is_empty(), "the ended job {id} ran again: {ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_and_deleted_job_never_runs_when_a_worker_comes() {
    let mut env = TestEnv::with_config("ended-cancel", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let id = submit(&http, &base, "default").await;
    let cancel = http
        .post(format!("{base}/v1/jobs/{id}/cancel"))
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(cancel.unwrap().status(), StatusCode::OK);
    delete(&http, &base, &id).await;

    let results = serve_until_marker(&mut env, &base, "default", &id).await;
    assert_never_ran(&results, &id);
    assert_eq!(
        status(&http, &base, &id).await.0,
        StatusCode::NOT_FOUND,
        "no record comes back"
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_timed_out_and_deleted_job_never_runs_when_a_worker_comes() {
    let mut env = TestEnv::with_config("ended-timeout", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let id = submit(&http, &base, "lonely").await;
    eventually(Duration::from_secs(20), || async {
        let (_, record) = status(&http, &base, &id).await;
        (record["status"] == "failed").then_some(())
    })
    .await;
    delete(&http, &base, &id).await;

    let results = serve_until_marker(&mut env, &base, "lonely", &id).await;
    assert_never_ran(&results, &id);
    assert_eq!(status(&http, &base, &id).await.0, StatusCode::NOT_FOUND);
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_record_expired_while_its_message_waited_never_runs() {
    let mut env = TestEnv::with_config("ended-expired", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let id = submit(&http, &base, "default").await;
    let cancel = http
        .post(format!("{base}/v1/jobs/{id}/cancel"))
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(cancel.unwrap().status(), StatusCode::OK);
    // The retention (3 s) passes while nobody consumes the group: the record expires.
    eventually(Duration::from_secs(20), || async {
        (status(&http, &base, &id).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;

    let results = serve_until_marker(&mut env, &base, "default", &id).await;
    assert_never_ran(&results, &id);
    assert_eq!(status(&http, &base, &id).await.0, StatusCode::NOT_FOUND);
    env.stop_workers().await;
}

/// A process function that kills the worker running it, as an OOM kill of the worker would.
/// It runs as root, the worker's user: as the default `nobody` it could not signal the worker.
const KILLER: &str = r#"
[groups.doomed]
max_takeovers = 2
max_failures = 100
[groups.doomed.functions.kill_parent]
sandbox = "process"
user = "root"
command = ["python3", "-c", "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_fails_crashed_after_the_takeover_limit() {
    let mut env = TestEnv::with_config("killer", KILLER);
    let coordinator = env.coordinator.clone();
    let job = jobfleet_common::message::JobMessage::new("doomed", "kill_parent", json!({}));
    // A supervisor: every time the worker dies, start another, a bounded number of times.
    let mut restarts = 0;
    loop {
        let pid = env.spawn_worker_process(&["--group", "doomed"]);
        if restarts == 0 {
            env.wait_for_queues(&["doomed".to_string()]).await;
            env.producer().await.publish(&job).await.unwrap();
        }
        let ended = eventually(Duration::from_secs(30), || async {
            let record = coordinator.job(&job.id).await.ok().flatten()?;
            record.status.is_terminal().then_some(())
        });
        let died = tokio::select! {
            _ = env.wait_process(pid, Duration::from_secs(30)) => true,
            _ = ended => false,
        };
        if !died {
            // The select dropped the wait, which owned the process handle: stop it here.
            env.signal(pid, libc::SIGKILL);
            break;
        }
        restarts += 1;
        assert!(restarts <= 5, "the job kept killing workers: {restarts} restarts");
    }
    let record = coordinator.job(&job.id).await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed, "{record:?}");
    assert_eq!(
        record.error.as_ref().unwrap().kind,
        jobfleet_common::message::ErrorKind::Crashed
    );
    assert_eq!(record.attempts, 3, "the first run and two takeovers");
    assert!(
        coordinator.group_health("doomed").await.unwrap().0 >= 1,
        "a group failure"
    );
    env.stop_workers().await;
}
