//! Escape attempts from the `process` sandbox (SPEC §8), each against a real worker: job code
//! after the worker's secrets, a fork bomb and a disk filler under limits, descendants in
//! sessions of their own that a cancel, a timeout or the worker's death must still stop, the
//! temp dirs of a SIGKILLed worker, a namespace sandbox without network and with a read-only
//! `/`, and sandbox settings that cannot work.

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::control::publish_cancel;
use jobfleet_common::message::{ErrorKind, JobMessage, JobStatus, ResultMessage};
use jobfleet_tests::{collect_results, eventually, TestEnv};
use nix::unistd::User;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A variable only the worker has, standing for its Redis and AMQP passwords.
const SECRET_VAR: &str = "JOBFLEET_TEST_FAKE_SECRET";
/// The functions that run the probe in each kind of sandbox.
const SANDBOXES: [&str; 3] = ["plain", "shared", "namespace"];

fn probe() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python/escape_probe.py")
        .display()
        .to_string()
}

fn fleet() -> String {
    let probe = probe();
    let function = |name: &str, settings: &str| {
        let shared = settings.contains("shared");
        let argv = if shared {
            format!(r#"["python3", "{probe}", "--shared"]"#)
        } else {
            format!(r#"["python3", "{probe}"]"#)
        };
        format!("[groups.escape.functions.{name}]\nsandbox = \"process\"\ncommand = {argv}\n{settings}\n")
    };
    [
        "[groups.escape]\nmax_failures = 1000\n".to_string(),
        function("plain", "timeout = \"30s\"\nlimits = { kill_grace = \"300ms\" }"),
        function(
            "shared",
            "mode = \"shared\"\ntimeout = \"30s\"\nlimits = { kill_grace = \"300ms\" }",
        ),
        function(
            "namespace",
            "isolation = \"namespace\"\ntimeout = \"30s\"\nlimits = { kill_grace = \"300ms\" }",
        ),
        function("networked", "isolation = \"namespace\"\nnetwork = true"),
        function("limited", "limits = { processes = 50, file_size_mb = 10 }"),
        function("hasty", "timeout = \"1s\"\nlimits = { kill_grace = \"300ms\" }"),
        function(
            "hasty_shared",
            "mode = \"shared\"\ntimeout = \"1s\"\nlimits = { kill_grace = \"300ms\" }",
        ),
    ]
    .concat()
}

async fn run_one(env: &TestEnv, function: &str, args: Value) -> ResultMessage {
    let job = JobMessage::new("escape", function, args);
    let mut subscriber = env.subscriber(&["escape.#"]).await;
    env.producer().await.publish(&job).await.unwrap();
    let mut results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(60),
    )
    .await;
    results.remove(&job.id).unwrap().remove(0)
}

/// The result of a job that had to finish.
async fn finished(env: &TestEnv, function: &str, args: Value) -> Value {
    let result = run_one(env, function, args).await;
    assert_eq!(result.status, JobStatus::Finished, "{function}: {result:?}");
    result.result.unwrap()
}

fn nobody() -> User {
    User::from_name("nobody").unwrap().expect("user nobody")
}

/// A `sleep` duration no other process uses, to find a job's descendants by.
fn marker() -> String {
    let random = u32::from_str_radix(&uuid::Uuid::new_v4().simple().to_string()[..6], 16).unwrap();
    format!("900.{random}")
}

/// The live processes running `sleep <marker>` (a zombie has no command line).
fn marked(marker: &str) -> Vec<i32> {
    let wanted = format!("sleep\0{marker}\0");
    all_pids()
        .into_iter()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .collect()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Waits until both `sleep <marker>` descendants of a job run; returns them and the job's
/// process (their parent).
async fn job_tree(marker: &str) -> Vec<i32> {
    let sleeps = eventually(Duration::from_secs(15), || async {
        let found = marked(marker);
        (found.len() == 2).then_some(found)
    })
    .await;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleeps[0])).unwrap();
    let parent = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1).unwrap();
    let mut tree = sleeps;
    tree.push(parent.parse().unwrap());
    tree
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
}

async fn all_gone(pids: &[i32], what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| alive(pid)) {
        let left: Vec<&i32> = pids.iter().filter(|&&pid| alive(pid)).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {left:?} still run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cancel(env: &TestEnv, id: &str) {
    let pool = amqp_pool(&env.config.amqp_url, 1, "jobfleet-test-control").unwrap();
    let control = open_channel(&pool, true).await.unwrap();
    publish_cancel(&control, &env.topology, id).await.unwrap();
    let _ = control.close(200, "".into()).await;
    pool.close();
}

/// Asserts that a snoop found nothing of the worker's: no environment, memory or trace.
fn assert_sealed(function: &str, snoop: &Value) {
    assert_eq!(
        snoop["leaks"],
        json!([]),
        "{function}: the secret leaked: {snoop}"
    );
    for attempt in ["environ", "memory", "ptrace"] {
        assert!(
            snoop[attempt].get("error").is_some(),
            "{function}: the worker's {attempt} was readable: {snoop}"
        );
    }
    assert_ne!(
        snoop["cmdline_has_secret"],
        json!({"ok": true}),
        "{function}: {snoop}"
    );
}

async fn snoop_every_sandbox(env: &TestEnv, worker: u32, secret: &str) {
    for function in SANDBOXES {
        let snoop = finished(
            env,
            function,
            json!({"mode": "snoop", "secret": secret, "worker": worker}),
        )
        .await;
        assert_sealed(function, &snoop);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_code_cannot_read_the_secrets_of_a_root_worker() {
    let mut env = TestEnv::with_config("escape-root", &fleet());
    let secret = uuid::Uuid::new_v4().to_string();
    let worker = env.spawn_worker_process_with(&["--group", "escape"], |command| {
        command.env(SECRET_VAR, &secret);
    });
    env.wait_for_queues(&["escape".to_string()]).await;
    snoop_every_sandbox(&env, worker, &secret).await;
    // The jobs ran as nobody, not as the worker's root.
    let snoop = finished(&env, "plain", json!({"mode": "snoop", "secret": secret})).await;
    assert_eq!(snoop["uid"], nobody().uid.as_raw());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_code_cannot_read_the_secrets_of_a_worker_running_as_its_own_user() {
    let mut env = TestEnv::with_config("escape-same-uid", &fleet());
    let secret = uuid::Uuid::new_v4().to_string();
    let user = nobody();
    let worker = env.spawn_worker_process_with(&["--group", "escape"], |command| {
        command
            .env(SECRET_VAR, &secret)
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw());
    });
    env.wait_for_queues(&["escape".to_string()]).await;
    // Same uid as the jobs: only the worker being non-dumpable keeps them out.
    snoop_every_sandbox(&env, worker, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_bound_a_fork_bomb_and_a_disk_filler() {
    // The limited function's jobs run as a user of their own: RLIMIT_NPROC counts every
    // process of the user on the host, and the other tests' jobs run as `nobody` meanwhile.
    let fleet = fleet().replace(
        "limits = { processes = 50",
        "user = \"daemon\"\nlimits = { processes = 50",
    );
    let mut env = TestEnv::with_config("escape-limits", &fleet);
    env.start_worker(env.worker().group("escape").concurrency(2))
        .await;
    // The disk filler first: the bomb's children may take a moment to go.
    let filler = finished(&env, "limited", json!({"mode": "big_file", "mb": 100})).await;
    assert!(
        filler["written"].as_u64().unwrap() <= 10 * 1024 * 1024,
        "limits.file_size_mb = 10: {filler}"
    );
    assert!(
        filler["error"].as_str().unwrap().contains("File too large"),
        "{filler}"
    );
    let bomb = finished(&env, "limited", json!({"mode": "fork_bomb", "count": 1000})).await;
    assert!(
        bomb["forked"].as_u64().unwrap() < 50,
        "limits.processes = 50: {bomb}"
    );
    assert!(
        bomb["error"]
            .as_str()
            .unwrap()
            .contains("Resource temporarily unavailable"),
        "{bomb}"
    );
    env.stop_workers().await;
}

/// Starts a job whose descendants hang in two sessions, and returns it and its processes.
async fn hanging_tree(env: &TestEnv, function: &str) -> (JobMessage, Vec<i32>) {
    let marker = marker();
    let job = JobMessage::new(
        "escape",
        function,
        json!({"mode": "descendants", "marker": marker}),
    );
    env.producer().await.publish(&job).await.unwrap();
    let tree = job_tree(&marker).await;
    (job, tree)
}

async fn cancel_stops_every_descendant(env: &TestEnv, function: &str) {
    let mut subscriber = env.subscriber(&["escape.#"]).await;
    let (job, tree) = hanging_tree(env, function).await;
    cancel(env, &job.id).await;
    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results[&job.id][0].status, JobStatus::Canceled, "{function}");
    all_gone(&tree, &format!("{function}, canceled")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_stop_descendants_in_sessions_of_their_own() {
    let mut env = TestEnv::with_config("escape-stop", &fleet());
    env.start_worker(env.worker().group("escape").concurrency(2))
        .await;
    for function in SANDBOXES {
        cancel_stops_every_descendant(&env, function).await;
    }
    for function in ["hasty", "hasty_shared"] {
        let mut subscriber = env.subscriber(&["escape.#"]).await;
        let (job, tree) = hanging_tree(&env, function).await;
        let results = collect_results(
            &mut subscriber,
            std::slice::from_ref(&job.id),
            Duration::from_secs(10),
        )
        .await;
        let error = results[&job.id][0].error.clone().unwrap();
        assert_eq!(error.kind, ErrorKind::Timeout, "{function}: {error:?}");
        all_gone(&tree, &format!("{function}, timed out")).await;
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_left_by_a_finished_job_dies_with_it() {
    let mut env = TestEnv::with_config("escape-daemon", &fleet());
    env.start_worker(env.worker().group("escape").concurrency(2))
        .await;
    // A shared process keeps what it started until it is replaced: only the others.
    for function in ["plain", "namespace"] {
        let marker = marker();
        let left = finished(&env, function, json!({"mode": "daemon", "marker": marker})).await;
        assert_eq!(left, "left");
        eventually(Duration::from_secs(5), || async {
            marked(&marker).is_empty().then_some(())
        })
        .await;
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_a_cancel_still_stops_descendants_in_sessions_of_their_own() {
    let mut env = TestEnv::with_config("escape-nocgroup", &fleet());
    let user = nobody();
    // A worker that is not root may not create cgroups here.
    let worker = env.spawn_worker_process_with(&["--group", "escape"], |command| {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    });
    env.wait_for_queues(&["escape".to_string()]).await;
    assert!(
        cgroups_of(worker).is_empty(),
        "the worker made cgroups: {:?}",
        cgroups_of(worker)
    );
    for function in SANDBOXES {
        cancel_stops_every_descendant(&env, function).await;
    }

    // A SIGKILL of the worker: the job's own process dies with it (the parent-death
    // signal), and so does everything in a namespace sandbox (its PID namespace ends). A
    // plain job's descendants are not found any more (see docs/security.md).
    let plain = hanging_tree(&env, "plain").await.1;
    let namespace = hanging_tree(&env, "namespace").await.1;
    env.signal(worker, libc::SIGKILL);
    all_gone(&plain[2..], "the job process after the worker's SIGKILL").await;
    all_gone(&namespace, "a namespace sandbox after the worker's SIGKILL").await;
    for pid in plain {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The instance directories of the worker with `pid` under `parent`.
fn instance_dirs(parent: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("jobfleet-worker-{pid}-");
    std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    instance_dirs(Path::new("/sys/fs/cgroup/unified"), pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_worker_leaves_no_process_behind_and_the_next_start_removes_its_temp_dirs() {
    let mut env = TestEnv::with_config("escape-kill", &fleet());
    // A temp dir of this test's own: a worker starting in another test sweeps the dirs of
    // dead workers in its own temp dir, which would take this one's before its next start.
    let tmp = std::env::temp_dir().join(env.namespace());
    std::fs::create_dir_all(&tmp).unwrap();
    let worker = env.spawn_worker_process_with(&["--group", "escape", "--concurrency", "4"], |c| {
        c.env("TMPDIR", &tmp);
    });
    env.wait_for_queues(&["escape".to_string()]).await;
    let mut processes = Vec::new();
    for function in SANDBOXES {
        processes.extend(hanging_tree(&env, function).await.1);
    }
    let temp_dirs = instance_dirs(&tmp, worker);
    assert_eq!(temp_dirs.len(), 1, "{temp_dirs:?}");

    env.signal(worker, libc::SIGKILL);
    all_gone(&processes, "after the worker's SIGKILL").await;
    assert!(
        temp_dirs[0].exists(),
        "nothing but a next start removes the dead worker's temp dir"
    );

    let next = env.spawn_worker_process_with(&["--group", "escape"], |c| {
        c.env("TMPDIR", &tmp);
    });
    env.wait_for_queues(&["escape".to_string()]).await;
    eventually(Duration::from_secs(20), || async {
        (!temp_dirs[0].exists() && cgroups_of(worker).is_empty()).then_some(())
    })
    .await;
    assert_eq!(instance_dirs(&tmp, next).len(), 1);
    drop(env);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_sandbox_has_no_network_and_a_read_only_root() {
    let mut env = TestEnv::with_config("escape-namespace", &fleet());
    env.start_worker(env.worker().group("escape").concurrency(2))
        .await;
    let broker = json!({"mode": "network", "host": "127.0.0.1", "port": 5672});
    let offline = finished(&env, "namespace", broker.clone()).await;
    assert!(offline.get("error").is_some(), "reached the broker: {offline}");
    let online = finished(&env, "networked", broker).await;
    assert_eq!(online, json!({"ok": "connected"}), "network = true");

    let paths = [
        "/jobfleet-probe",
        "/etc/jobfleet-probe",
        "/tmp/jobfleet-probe",
        "/dev/jobfleet-probe",
    ];
    let mut all = paths.to_vec();
    all.push("own-dir-file");
    let writes = finished(&env, "namespace", json!({"mode": "write", "paths": all})).await;
    for path in paths {
        let error = writes[path]["error"].as_str().unwrap_or_default();
        assert!(error.contains("Read-only file system"), "{path}: {writes}");
    }
    assert_eq!(writes["own-dir-file"], json!({"ok": "written"}), "{writes}");

    // bubblewrap reports a death by signal N as status 128 + N: still a crash.
    let aborted = run_one(&env, "namespace", json!({"mode": "abort"}))
        .await
        .error
        .unwrap();
    assert_eq!(aborted.kind, ErrorKind::Crashed, "{aborted:?}");
    assert!(aborted.message.contains("signal 6 (SIGABRT)"), "{aborted:?}");

    let me = finished(&env, "namespace", json!({"mode": "whoami"})).await;
    assert_eq!(me["hostname"], "jobfleet-sandbox");
    assert_eq!(me["uid"], nobody().uid.as_raw());
    let processes = me["processes"].as_array().unwrap();
    assert!(
        processes.iter().all(|pid| pid.as_u64().unwrap() < 10),
        "a PID namespace of its own: {processes:?}"
    );
    env.stop_workers().await;
}

/// How a command ended within 30 s (killed after), and its stderr.
fn exit_of(mut command: std::process::Command) -> (Option<i32>, String) {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn sandbox_settings_that_cannot_work_stop_the_worker_at_start() {
    let cases = [
        (
            r#"user = "no-such-user-jobfleet""#,
            None,
            "does not exist on this host",
        ),
        (
            r#"isolation = "namespace""#,
            Some("/nonexistent"),
            "`bwrap` is not on PATH",
        ),
        (
            "user = \"root\"\nlimits = { processes = 10 }",
            None,
            "limits.processes cannot bind processes that run as root",
        ),
    ];
    for (settings, path, needle) in cases {
        let toml =
            format!("[groups.bad.functions.f]\nsandbox = \"process\"\ncommand = [\"true\"]\n{settings}\n");
        let env = TestEnv::with_config("escape-bad", &toml);
        let mut command = env.worker_process_command(&["--group", "bad"]);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let (code, stderr) = exit_of(command);
        assert_eq!(code, Some(64), "{settings}: {stderr}");
        assert!(stderr.contains(needle), "{settings}: {stderr}");
    }
}
