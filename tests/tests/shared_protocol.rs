//! The `shared` process line protocol (SPEC §6, §10): a process that prints a line nobody
//! asked for (at start-up, after an answer, between jobs, not JSON, an answer to another
//! request) is discarded, and no job ever finishes with another job's answer. Progress lines
//! before an answer are not answers; a process that ended while idle is replaced unnoticed.

use jobfleet_common::message::{ErrorKind, JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::{collect_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn fleet() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/shared_misbehaving.py")
        .display()
        .to_string();
    format!(
        r#"
[groups.proto]
max_failures = 1000
[groups.proto.functions.plain]
sandbox = "process"
mode = "shared"
command = ["python3", "{script}", "--no-id"]
timeout = "10s"
[groups.proto.functions.ids]
sandbox = "process"
mode = "shared"
command = ["python3", "{script}"]
timeout = "10s"
[groups.proto.functions.banner]
sandbox = "process"
mode = "shared"
command = ["python3", "{script}", "--no-id", "--banner", '{{"result": "ready"}}']
timeout = "10s"
"#
    )
}

fn job(function: &str, n: i64, extra: Value) -> JobMessage {
    let mut args = json!({ "n": n });
    args.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    JobMessage::new("proto", function, args)
}

async fn run_all(env: &TestEnv, jobs: Vec<JobMessage>) -> Vec<ResultMessage> {
    let mut subscriber = env.subscriber(&["proto.#"]).await;
    env.producer().await.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(60)).await;
    ids.iter()
        .map(|id| results.remove(id).unwrap().remove(0))
        .collect()
}

/// The `n` a finished job answered with; panics on a failed job.
fn answered(result: &ResultMessage) -> i64 {
    assert_eq!(result.status, JobStatus::Finished, "{result:?}");
    result
        .result
        .as_ref()
        .and_then(|r| r["n"].as_i64())
        .unwrap_or_else(|| {
            panic!("not an answer of this function: {result:?}");
        })
}

fn pid_alive(pid: u64) -> bool {
    // A zombie runs nothing: it counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

fn pid(result: &ResultMessage) -> u64 {
    result.result.as_ref().unwrap()["pid"].as_u64().unwrap()
}

/// Asserts the job failed as a crash of its process that broke the protocol.
fn broke_protocol(result: &ResultMessage, reason: &str) {
    let error = result
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("not failed: {result:?}"));
    assert_eq!(error.kind, ErrorKind::Crashed, "{result:?}");
    assert!(
        error.message.contains("broke the protocol") && error.message.contains(reason),
        "{result:?}"
    );
}

/// Asserts no job got another's answer: each finished with its own `n`, or failed because
/// its process broke the protocol (a stray line met while it was outstanding).
fn own_or_broken(jobs: &[JobMessage], results: &[ResultMessage]) {
    for (job, result) in jobs.iter().zip(results) {
        match result.status {
            JobStatus::Finished => {
                assert_eq!(answered(result), job.args["n"].as_i64().unwrap(), "{result:?}")
            }
            _ => broke_protocol(result, "answer"),
        }
    }
}

/// Asserts every job finished with its own `n`.
fn all_own(jobs: &[JobMessage], results: &[ResultMessage]) {
    for (job, result) in jobs.iter().zip(results) {
        assert_eq!(answered(result), job.args["n"].as_i64().unwrap(), "{result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_line_at_start_up_is_never_a_jobs_answer() {
    let mut env = TestEnv::with_config("strayup", &fleet());
    env.start_worker(env.worker().group("proto").concurrency(1)).await;
    // Each process prints an answer-shaped line before it reads its first request, so the
    // line races the request: whatever wins, no job may finish with a line that is not its
    // own answer.
    let jobs: Vec<JobMessage> = (0..10).map(|n| job("banner", n, json!({}))).collect();
    let results = run_all(&env, jobs.clone()).await;
    for (job, result) in jobs.iter().zip(&results) {
        match result.status {
            // A fresh process's own banner, arriving more than the first-answer grace before
            // its real answer on a loaded machine, can answer that process's first job (the
            // limit docs/design.md names); it is never another job's answer.
            JobStatus::Finished if result.result == Some(json!("ready")) => {}
            JobStatus::Finished => assert_eq!(answered(result), job.args["n"].as_i64().unwrap()),
            _ => broke_protocol(result, "answer"),
        }
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_line_after_an_answer_never_reaches_the_next_job() {
    let mut env = TestEnv::with_config("extra", &fleet());
    env.start_worker(env.worker().group("proto").concurrency(1)).await;

    // A second answer printed right after the first, by a process that echoes ids: the
    // process is discarded. (One that does not echo ids could print it after the next
    // request went out, where nothing tells it from that request's answer: docs/design.md,
    // "Shared process sandboxes", what remains.)
    let mut jobs = vec![
        job("ids", 99, json!({})),
        job("ids", 100, json!({"after": ["{\"result\": {\"n\": -1}}"]})),
    ];
    jobs.extend((0..5).map(|n| job("ids", n, json!({}))));
    let results = run_all(&env, jobs.clone()).await;
    assert_eq!(answered(&results[0]), 99);
    if results[1].status == JobStatus::Finished {
        assert_eq!(answered(&results[1]), 100);
    } else {
        broke_protocol(&results[1], "answer");
    }
    own_or_broken(&jobs[2..], &results[2..]);
    let later = results[2..]
        .iter()
        .find(|r| r.status == JobStatus::Finished)
        .expect("a later job finished");
    assert_ne!(pid(later), pid(&results[0]), "the process was replaced");

    // A line printed later, between jobs, while no request is outstanding. (Not by a fresh
    // process's first job: its answer waits 100 ms for a start-up line, as long as the
    // late line's delay, and would take it for one.)
    let warm = run_all(&env, vec![job("plain", 199, json!({}))]).await.remove(0);
    assert_eq!(answered(&warm), 199);
    let marker = std::env::temp_dir().join(format!("{}-late", env.namespace()));
    let late = job(
        "plain",
        200,
        json!({"late": {"line": "{\"result\": {\"n\": -2}}", "marker": marker}}),
    );
    let first = run_all(&env, vec![late]).await.remove(0);
    assert_eq!(answered(&first), 200);
    eventually(Duration::from_secs(5), || async { marker.exists().then_some(()) }).await;
    std::fs::remove_file(&marker).unwrap();
    let jobs: Vec<JobMessage> = (0..5).map(|n| job("plain", n, json!({}))).collect();
    let results = run_all(&env, jobs.clone()).await;
    all_own(&jobs, &results);
    assert_ne!(pid(&results[0]), pid(&first), "the process was replaced");

    // A process that exits after answering: its answer stands; once it is gone, the next job
    // gets a fresh process instead of the dead one.
    let exits = run_all(&env, vec![job("plain", 300, json!({"exit": true}))])
        .await
        .remove(0);
    assert_eq!(answered(&exits), 300);
    eventually(Duration::from_secs(5), || async {
        (!pid_alive(pid(&exits))).then_some(())
    })
    .await;
    let after = run_all(&env, vec![job("plain", 301, json!({}))]).await.remove(0);
    assert_eq!(answered(&after), 301);
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_json_or_answers_another_request_discards_the_process() {
    let mut env = TestEnv::with_config("nonjson", &fleet());
    env.start_worker(env.worker().group("proto").concurrency(1)).await;

    // Progress lines before the answer are not answers; the process is kept.
    let progress = json!({"before": ["{\"progress\": 50, \"message\": \"half\"}", "{\"progress\": 90}"]});
    let kept = run_all(&env, vec![job("plain", 1, json!({})), job("plain", 2, progress)]).await;
    all_own(&[job("plain", 1, json!({})), job("plain", 2, json!({}))], &kept);
    assert_eq!(pid(&kept[0]), pid(&kept[1]), "progress lines keep the process");

    // A line that is not JSON: that job crashed, the jobs behind it get their own answers
    // from a fresh process.
    let mut jobs = vec![job("plain", 100, json!({"before": ["working on it..."]}))];
    jobs.extend((0..5).map(|n| job("plain", n, json!({}))));
    let results = run_all(&env, jobs.clone()).await;
    broke_protocol(&results[0], "not JSON");
    all_own(&jobs[1..], &results[1..]);
    assert_ne!(pid(&results[1]), pid(&kept[1]), "the process was replaced");

    // An answer that names another request's id.
    let mut jobs = vec![job("ids", 100, json!({"answer_id": "someone-else"}))];
    jobs.extend((0..5).map(|n| job("ids", n, json!({}))));
    let results = run_all(&env, jobs.clone()).await;
    broke_protocol(&results[0], "someone-else");
    all_own(&jobs[1..], &results[1..]);
    env.stop_workers().await;
}
