//! The `process` sandbox and the failure policy: each isolation guarantee asserted
//! (cleared environment, own temp dir removed, rlimits, process group killed with nothing
//! left behind), shared processes reused, recycled and replaced, retries with back-off,
//! a poison job that never blocks the jobs behind it, and crashes breaking a group.

use jobfleet_common::message::{ErrorKind, JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::{collect_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn probe() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/sandbox_probe.py")
        .display()
        .to_string()
}

fn fleet(max_failures: u32) -> String {
    let probe = probe();
    format!(
        r#"
[groups.sandbox]
max_failures = {max_failures}
[groups.sandbox.functions.probe]
sandbox = "process"
command = ["python3", "{probe}"]
timeout = "5s"
env = ["PROBE_VISIBLE"]
limits = {{ memory_mb = 256, open_files = 64, kill_grace = "500ms" }}
[groups.sandbox.functions.shared]
sandbox = "process"
mode = "shared"
command = ["python3", "{probe}", "--shared"]
timeout = "5s"
recycle_after = 3
limits = {{ kill_grace = "500ms" }}
[groups.sandbox.functions.retried]
sandbox = "process"
command = ["python3", "{probe}"]
max_retries = 2
retry_backoff = "300ms"
[groups.sandbox.functions.echo]
"#
    )
}

async fn run_one(env: &TestEnv, function: &str, args: Value) -> ResultMessage {
    run_all(env, vec![JobMessage::new("sandbox", function, args)])
        .await
        .remove(0)
}

async fn run_all(env: &TestEnv, jobs: Vec<JobMessage>) -> Vec<ResultMessage> {
    let mut subscriber = env.subscriber(&["sandbox.#"]).await;
    env.producer().await.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(60)).await;
    ids.iter()
        .map(|id| results.remove(id).unwrap().remove(0))
        .collect()
}

fn pid_alive(pid: u64) -> bool {
    // A zombie runs nothing: it counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_process_is_isolated_and_cleaned_up() {
    let mut env = TestEnv::with_config("sandbox", &fleet(100));
    env.start_worker(env.worker().group("sandbox").concurrency(4))
        .await;

    let echo = run_one(&env, "probe", json!({"mode": "echo", "value": {"a": [1, "b"]}})).await;
    assert_eq!(
        (echo.status, echo.result.clone()),
        (JobStatus::Finished, Some(json!({"a": [1, "b"]})))
    );

    // The environment is cleared but for the allow-list and the basics.
    let environment = run_one(&env, "probe", json!({"mode": "env"}))
        .await
        .result
        .unwrap();
    let names: Vec<&str> = environment
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for name in [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "JOBFLEET_JOB_ID",
        "JOBFLEET_ATTEMPT",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        !names.contains(&"CARGO_MANIFEST_DIR") && !names.contains(&"JOBFLEET_REDIS_URL"),
        "the worker's environment leaked: {names:?}"
    );

    // Its own working directory, removed afterwards.
    let cwd = run_one(&env, "probe", json!({"mode": "cwd"}))
        .await
        .result
        .unwrap();
    let cwd = cwd.as_str().unwrap();
    assert!(cwd.contains("jobfleet-"), "{cwd}");
    assert!(!Path::new(cwd).exists(), "the temp dir {cwd} was left behind");

    // rlimits and its own process group.
    let limits = run_one(&env, "probe", json!({"mode": "limits"}))
        .await
        .result
        .unwrap();
    assert_eq!(
        limits,
        json!({"nofile": 64, "as": 256 * 1024 * 1024, "pgid_is_own": true})
    );

    // A memory hog dies by its limit; a failing process reports status and stderr; an
    // aborting one is a crash.
    let hog = run_one(&env, "probe", json!({"mode": "hog", "mb": 1024})).await;
    assert_eq!(hog.status, JobStatus::Failed);
    assert!(
        hog.error.as_ref().unwrap().message.contains("MemoryError"),
        "{hog:?}"
    );
    let failed = run_one(&env, "probe", json!({"mode": "fail"}))
        .await
        .error
        .unwrap();
    assert_eq!(failed.kind, ErrorKind::FunctionError);
    assert!(
        failed.message.contains("status 3") && failed.message.contains("probe failing on purpose"),
        "{failed:?}"
    );
    let aborted = run_one(&env, "probe", json!({"mode": "abort"}))
        .await
        .error
        .unwrap();
    assert_eq!(aborted.kind, ErrorKind::Crashed, "{aborted:?}");
    assert!(aborted.message.contains("signal 6"));

    // A grandchild left behind by a process that exits is killed with its group.
    let forked = run_one(&env, "probe", json!({"mode": "fork"})).await;
    let grandchild = forked.result.unwrap()["grandchild"].as_u64().unwrap();
    eventually(Duration::from_secs(3), || async {
        (!pid_alive(grandchild)).then_some(())
    })
    .await;

    // A job past its timeout: the whole tree is gone.
    let pidfile = std::env::temp_dir().join(format!("{}-hang.pid", env.namespace()));
    let hung = run_one(&env, "probe", json!({"mode": "hang", "pidfile": pidfile})).await;
    assert_eq!(hung.error.as_ref().unwrap().kind, ErrorKind::Timeout, "{hung:?}");
    let pids: Vec<u64> = std::fs::read_to_string(&pidfile)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    std::fs::remove_file(&pidfile).unwrap();
    for pid in pids {
        eventually(Duration::from_secs(3), || async {
            (!pid_alive(pid)).then_some(())
        })
        .await;
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_processes_are_reused_recycled_and_replaced() {
    let mut env = TestEnv::with_config("shared", &fleet(100));
    env.start_worker(env.worker().group("sandbox").concurrency(1))
        .await;
    let whoami = || JobMessage::new("sandbox", "shared", json!({"mode": "whoami"}));
    let results = run_all(&env, (0..4).map(|_| whoami()).collect()).await;
    let seen: Vec<(u64, u64)> = results
        .iter()
        .map(|r| {
            (
                r.result.as_ref().unwrap()["pid"].as_u64().unwrap(),
                r.result.as_ref().unwrap()["served"].as_u64().unwrap(),
            )
        })
        .collect();
    // One process serves three jobs (recycle_after = 3), then a fresh one takes over.
    assert_eq!(seen[0].0, seen[1].0);
    assert_eq!(seen[1].0, seen[2].0);
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 3, 1]);
    assert_ne!(seen[3].0, seen[0].0);
    assert!(!pid_alive(seen[0].0), "the recycled process is gone");

    // A job's own error keeps the process; a death is a crash and the next job gets a new one.
    let own = run_one(&env, "shared", json!({"mode": "bogus"})).await;
    assert_eq!(own.error.unwrap().kind, ErrorKind::FunctionError);
    let died = run_one(&env, "shared", json!({"mode": "die"})).await;
    assert_eq!(died.error.unwrap().kind, ErrorKind::Crashed);
    let after = run_one(&env, "shared", json!({"mode": "whoami"})).await;
    assert_eq!(after.result.unwrap()["served"], 1);
    let pidfile = std::env::temp_dir().join(format!("{}-hang.pid", env.namespace()));
    let hung = run_one(&env, "shared", json!({"mode": "hang", "pidfile": pidfile})).await;
    assert_eq!(hung.error.unwrap().kind, ErrorKind::Timeout);
    for pid in std::fs::read_to_string(&pidfile)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<u64>().unwrap())
    {
        eventually(Duration::from_secs(3), || async {
            (!pid_alive(pid)).then_some(())
        })
        .await;
    }
    std::fs::remove_file(&pidfile).unwrap();
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_and_a_poison_job_never_blocks_the_queue() {
    let mut env = TestEnv::with_config("retries", &fleet(100));
    env.start_worker(env.worker().group("sandbox").concurrency(1))
        .await;
    let flaky = JobMessage::new("sandbox", "retried", json!({"mode": "flaky"}));
    let poison = JobMessage::new("sandbox", "retried", json!({"mode": "fail"}));
    let behind: Vec<JobMessage> = (0..5)
        .map(|i| JobMessage::new("sandbox", "echo", json!(i)))
        .collect();
    let mut jobs = vec![flaky.clone(), poison.clone()];
    jobs.extend(behind.clone());
    let results = run_all(&env, jobs).await;

    let flaky_result = &results[0];
    assert_eq!(
        (flaky_result.status, flaky_result.attempts),
        (JobStatus::Finished, 2),
        "{flaky_result:?}"
    );
    assert_eq!(flaky_result.result, Some(json!({"attempt": 2})));
    let poison_result = &results[1];
    assert_eq!(
        (poison_result.status, poison_result.attempts),
        (JobStatus::Failed, 3),
        "max_retries = 2: three attempts"
    );
    assert_eq!(
        poison_result.error.as_ref().unwrap().kind,
        ErrorKind::FunctionError
    );
    // With one slot, everything behind the poison job ended while it waited out its back-offs.
    for result in &results[2..] {
        assert_eq!(result.status, JobStatus::Finished);
        assert!(
            result.finished_at < poison_result.finished_at,
            "a job behind the poison job waited for it"
        );
    }
    let record = env.coordinator.job(&poison.id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Failed, 3));
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_crashes_in_a_row_break_the_group_until_reset() {
    let mut env = TestEnv::with_config("broken", &fleet(5));
    env.start_worker(env.worker().group("sandbox").concurrency(1))
        .await;
    for _ in 0..5 {
        let crashed = run_one(&env, "probe", json!({"mode": "abort"})).await;
        assert_eq!(crashed.error.unwrap().kind, ErrorKind::Crashed);
    }
    assert_eq!(env.coordinator.group_health("sandbox").await.unwrap(), (5, true));
    let refused = run_one(&env, "probe", json!({"mode": "echo", "value": 1})).await;
    assert_eq!(
        refused.error.unwrap().kind,
        ErrorKind::GroupBroken,
        "failed fast at pickup"
    );
    env.coordinator.reset_group("sandbox").await.unwrap();
    let back = run_one(&env, "probe", json!({"mode": "echo", "value": 1})).await;
    assert_eq!(back.result, Some(json!(1)));
    env.stop_workers().await;
}
