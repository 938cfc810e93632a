//! The `jobfleet` CLI as a subprocess against a running fleet (an in-process master and
//! worker): every command's output, its `--json` form and its exit status.

use jobfleet_tests::{binary, eventually, TestEnv};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const FLEET: &str = r#"
[groups.default.functions.echo]
[groups.default.functions.sleep]
[groups.default.functions.fail]
[groups.default.functions.wordcount]
[groups.fragile]
max_failures = 1
[groups.fragile.functions.crash]
[groups.fragile.functions.echo]
"#;

/// What a finished `jobfleet` run left.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit status, and for a failure a single `jobfleet: ...` line on stderr.
    fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "{self:?}");
        if code != 0 {
            let lines: Vec<&str> = self.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
            assert!(lines[0].starts_with("jobfleet: "), "{self:?}");
        }
        self
    }
}

/// Runs `jobfleet --master MASTER ARGS...` to its end (at most a minute).
async fn jobfleet(master: &str, args: &[&str]) -> Run {
    let child = tokio::process::Command::new(binary("jobfleet"))
        .arg("--master")
        .arg(master)
        .args(args)
        .env_remove("JOBFLEET_MASTER")
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("jobfleet ends within a minute")
        .expect("jobfleet runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A URL where nothing listens.
fn dead_master() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_status_list_cancel_and_exit_statuses() {
    let mut env = TestEnv::with_config("cli", FLEET);
    let master = env.start_master().await;
    env.start_worker(env.worker().group("default").group("fragile").concurrency(4))
        .await;
    let m = master.as_str();

    // submit prints the id; --json the accepted job.
    let id = jobfleet(m, &["submit", "default", "echo", "--args", r#"{"hello": "cli"}"#])
        .await
        .expect(0)
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), 32, "{id:?}");
    let accepted = jobfleet(m, &["submit", "default", "echo", "--json", "--id", "cli-json-1"])
        .await
        .expect(0)
        .json();
    assert_eq!(accepted, json!({"id": "cli-json-1", "status": "queued"}));

    // --wait prints the result; a file of args works the same.
    let finished = jobfleet(
        m,
        &[
            "submit",
            "default",
            "wordcount",
            "--args",
            r#"{"text": "a b a"}"#,
            "--wait",
        ],
    )
    .await
    .expect(0);
    assert_eq!(
        serde_json::from_str::<Value>(&finished.stdout).unwrap(),
        json!({"a": 2, "b": 1})
    );
    let args_file = env.config_path().with_file_name("args.json");
    std::fs::write(&args_file, r#"{"text": "x y x x"}"#).unwrap();
    let record = jobfleet(
        m,
        &[
            "--json",
            "submit",
            "default",
            "wordcount",
            "--args-file",
            args_file.to_str().unwrap(),
            "--wait",
            "--id",
            "cli-file-1",
        ],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(
        (
            record["id"].clone(),
            record["status"].clone(),
            record["result"].clone()
        ),
        (json!("cli-file-1"), json!("finished"), json!({"x": 3, "y": 1}))
    );

    // A failed job under --wait: exit 1 and one line naming the job and its error.
    let failed = jobfleet(
        m,
        &[
            "submit",
            "default",
            "fail",
            "--args",
            r#"{"message": "no luck"}"#,
            "--wait",
            "--id",
            "cli-fail-1",
        ],
    )
    .await
    .expect(1);
    assert_eq!(
        failed.stderr.trim(),
        "jobfleet: job cli-fail-1 failed: function_error: no luck"
    );
    let failed_json = jobfleet(m, &["submit", "default", "fail", "--wait", "--json"])
        .await
        .expect(1)
        .json();
    assert_eq!(failed_json["status"], "failed");
    assert_eq!(failed_json["error"]["kind"], "function_error");

    // The master's refusals are exit 3 with its kind and message; usage errors exit 2;
    // an unreachable master exits 4 naming its URL.
    let unknown = jobfleet(m, &["submit", "nope", "echo"]).await.expect(3);
    assert_eq!(
        unknown.stderr.trim(),
        r#"jobfleet: not_found: unknown group "nope""#
    );
    let unknown_function = jobfleet(m, &["submit", "default", "nope", "--wait"])
        .await
        .expect(3);
    assert!(
        unknown_function.stderr.contains("unknown_function"),
        "{unknown_function:?}"
    );
    jobfleet(m, &["submit", "default", "echo", "--args", "{broken"])
        .await
        .expect(2);
    jobfleet(m, &["submit", "default", "echo", "--args-file", "/no/such/file"])
        .await
        .expect(2);
    let dead = dead_master();
    let unreachable = jobfleet(&dead, &["submit", "default", "echo"]).await.expect(4);
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot reach the master at {dead}")),
        "{unreachable:?}"
    );
    jobfleet(&dead, &["groups"]).await.expect(4);

    // status: the record as text and as JSON; an unknown id is exit 3.
    let status = jobfleet(m, &["status", &id]).await.expect(0);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("id") && l.ends_with(&id)),
        "{status:?}"
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("args") && l.contains(r#"{"hello":"cli"}"#)),
        "{status:?}"
    );
    let record = jobfleet(m, &["status", "cli-fail-1", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        record["error"],
        json!({"kind": "function_error", "message": "no luck"})
    );
    jobfleet(m, &["status", "no-such-job"]).await.expect(3);

    // list: a table with headers, filters, JSON.
    let table = jobfleet(m, &["list", "--group", "default"]).await.expect(0);
    let header = table.stdout.lines().next().unwrap_or_default().to_string();
    for column in [
        "ID",
        "GROUP",
        "FUNCTION",
        "STATUS",
        "ATTEMPTS",
        "SUBMITTED",
        "DURATION",
        "OUTCOME",
    ] {
        assert!(header.contains(column), "{header:?}");
    }
    assert!(
        table.stdout.lines().any(|l| l.starts_with("cli-fail-1 ")
            && l.contains(" failed ")
            && l.contains("function_error: no luck")),
        "{table:?}"
    );
    let failed_only = jobfleet(m, &["list", "--status", "failed", "--json"])
        .await
        .expect(0)
        .json();
    let statuses: Vec<&Value> = failed_only["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["status"])
        .collect();
    assert_eq!(statuses.len(), 2, "{failed_only}");
    assert!(statuses.iter().all(|s| *s == "failed"));
    let one = jobfleet(m, &["list", "--limit", "1"]).await.expect(0);
    assert_eq!(one.stdout.lines().count(), 2, "header and one job: {one:?}");
    assert!(one.stderr.contains("jobfleet list --cursor "), "{one:?}");
    jobfleet(m, &["list", "--status", "bogus"]).await.expect(2);

    // cancel: a running job ends canceled; a second cancel is a conflict (exit 3).
    let sleeper = jobfleet(m, &["submit", "default", "sleep", "--args", r#"{"ms": 60000}"#])
        .await
        .expect(0)
        .stdout
        .trim()
        .to_string();
    eventually(Duration::from_secs(20), || async {
        let record = jobfleet(m, &["status", &sleeper, "--json"]).await.json();
        (record["status"] == "started").then_some(())
    })
    .await;
    let canceled = jobfleet(m, &["cancel", &sleeper]).await.expect(0);
    assert_eq!(canceled.stdout.trim(), format!("canceled {sleeper}"));
    let again = jobfleet(m, &["cancel", &sleeper]).await.expect(3);
    assert!(again.stderr.starts_with("jobfleet: conflict: "), "{again:?}");
    let record = jobfleet(m, &["status", &sleeper, "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(record["status"], "canceled");
    // A job canceled while --wait waits for it: exit 1.
    let waiter = tokio::spawn({
        let m = master.clone();
        async move {
            jobfleet(
                &m,
                &[
                    "submit",
                    "default",
                    "sleep",
                    "--args",
                    r#"{"ms": 60000}"#,
                    "--id",
                    "cli-wait-cancel",
                    "--wait",
                ],
            )
            .await
        }
    });
    eventually(Duration::from_secs(20), || async {
        // 404 (exit 3) until the waiting submit has reached the master.
        let record: Value =
            serde_json::from_str(&jobfleet(m, &["status", "cli-wait-cancel", "--json"]).await.stdout).ok()?;
        (record["status"] == "started").then_some(())
    })
    .await;
    jobfleet(m, &["--json", "cancel", "cli-wait-cancel"])
        .await
        .expect(0);
    let waited = waiter.await.unwrap().expect(1);
    assert_eq!(
        waited.stderr.trim(),
        "jobfleet: job cli-wait-cancel canceled: canceled: canceled by request"
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_workers_and_reset() {
    let mut env = TestEnv::with_config("cli-fleet", FLEET);
    let master = env.start_master().await;
    let worker = env
        .start_worker(env.worker().group("default").group("fragile").concurrency(2))
        .await;
    let m = master.as_str();

    // The worker's first heartbeat registers it.
    let workers = eventually(Duration::from_secs(20), || async {
        let run = jobfleet(m, &["workers"]).await.expect(0);
        (run.stdout.lines().count() == 2).then_some(run)
    })
    .await;
    let mut lines = workers.stdout.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["WORKER", "HOST", "PID", "GROUPS", "RUNNING", "HEARTBEAT"] {
        assert!(header.contains(column), "{header:?}");
    }
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with(&worker)
            && row.contains("default,fragile")
            && row.contains("0/2")
            && row.ends_with(" ago"),
        "{workers:?}"
    );
    let listed = jobfleet(m, &["workers", "--json"]).await.expect(0).json();
    assert_eq!(listed["workers"][0]["id"], json!(worker));

    let groups = jobfleet(m, &["groups"]).await.expect(0);
    let header = groups.stdout.lines().next().unwrap_or_default();
    for column in [
        "GROUP",
        "WORKERS",
        "QUEUED",
        "RUNNING",
        "FAILURES",
        "BROKEN",
        "FUNCTIONS",
    ] {
        assert!(header.contains(column), "{header:?}");
    }
    let row = |text: &str, group: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{group} ")))
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        row(&groups.stdout, "default"),
        ["default", "1", "0", "0", "0", "no", "echo,fail,sleep,wordcount"]
    );
    assert_eq!(
        row(&groups.stdout, "fragile"),
        ["fragile", "1", "0", "0", "0", "no", "crash,echo"]
    );

    // One crash breaks `fragile` (max_failures = 1); its submits then fail fast (503: exit 4).
    let crashed = jobfleet(m, &["submit", "fragile", "crash", "--wait"])
        .await
        .expect(1);
    assert!(crashed.stderr.contains(" failed: crashed: "), "{crashed:?}");
    let broken = jobfleet(m, &["groups", "--json"]).await.expect(0).json();
    let fragile = broken["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "fragile")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (fragile["broken"].clone(), fragile["consecutive_failures"].clone()),
        (json!(true), json!(1)),
        "{broken}"
    );
    assert_eq!(row(&jobfleet(m, &["groups"]).await.stdout, "fragile")[5], "yes");
    let refused = jobfleet(m, &["submit", "fragile", "echo"]).await.expect(4);
    assert!(
        refused.stderr.starts_with("jobfleet: group_broken: "),
        "{refused:?}"
    );

    let reset = jobfleet(m, &["reset", "fragile"]).await.expect(0);
    assert_eq!(
        reset.stdout.trim(),
        "reset fragile: 0 consecutive failures, broken: no"
    );
    let view = jobfleet(m, &["reset", "fragile", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        (view["name"].clone(), view["broken"].clone()),
        (json!("fragile"), json!(false))
    );
    jobfleet(m, &["reset", "nope"]).await.expect(3);
    let echoed = jobfleet(m, &["submit", "fragile", "echo", "--args", "[1,2]", "--wait"])
        .await
        .expect(0);
    assert_eq!(
        serde_json::from_str::<Value>(&echoed.stdout).unwrap(),
        json!([1, 2])
    );

    // Flow control: pause, limits set and shown, bad values, resume, back to the config.
    let paused = jobfleet(m, &["pause", "fragile"]).await.expect(0);
    assert!(paused.stdout.starts_with("fragile: paused,"), "{paused:?}");
    let set = jobfleet(
        m,
        &[
            "limits",
            "fragile",
            "--max-running",
            "3",
            "--rate-limit",
            "10/s",
            "--json",
        ],
    )
    .await
    .expect(0)
    .json();
    assert_eq!(
        (&set["paused"], &set["max_running"], &set["rate_limit"]),
        (&json!(true), &json!(3), &json!("10/s"))
    );
    let shown = jobfleet(m, &["limits", "fragile"]).await.expect(0);
    assert!(
        shown
            .stdout
            .contains("max_running 3, rate_limit 10/s, limit_key none"),
        "{shown:?}"
    );
    jobfleet(m, &["limits", "fragile", "--rate-limit", "10/d"])
        .await
        .expect(3);
    jobfleet(m, &["limits", "fragile", "--max-running", "many"])
        .await
        .expect(2);
    jobfleet(m, &["pause", "nope"]).await.expect(3);
    let resumed = jobfleet(m, &["resume", "fragile"]).await.expect(0);
    assert!(resumed.stdout.starts_with("fragile: not paused,"), "{resumed:?}");
    let reset = jobfleet(m, &["limits", "fragile", "--reset", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        (&reset["max_running"], &reset["rate_limit"]),
        (&Value::Null, &Value::Null)
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_submits_a_jsonl_file_and_summarizes_outcomes() {
    let mut env = TestEnv::with_config("cli-bulk", FLEET);
    let master = env.start_master().await;
    env.start_worker(env.worker().concurrency(4)).await;
    let m = master.as_str();
    let dir = env.config_path().parent().unwrap().to_path_buf();

    // 20 lines, a blank one skipped: every job finishes.
    let good: String = (0..20)
        .map(|i| format!("{{\"ms\": {}}}\n", i % 3))
        .collect::<String>()
        + "\n";
    let good_file = dir.join("good.jsonl");
    std::fs::write(&good_file, good).unwrap();
    let run = jobfleet(
        m,
        &[
            "submit",
            "default",
            "sleep",
            "--bulk",
            good_file.to_str().unwrap(),
        ],
    )
    .await
    .expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("20 jobs of default.sleep in "), "{run:?}");
    let counts: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        counts,
        [
            vec!["OUTCOME", "JOBS"],
            vec!["finished", "20"],
            vec!["failed", "0"],
            vec!["canceled", "0"]
        ],
        "{run:?}"
    );
    assert!(run.stderr.is_empty(), "no progress bar off a terminal: {run:?}");
    // The lines went in one batch request; POST /v1/jobs only waited for them, one each.
    let metrics = reqwest::get(format!("{m}/metrics")).await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let posts = |route: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("jobfleet_http_requests_total{"))
            .filter(|l| l.contains("method=\"POST\"") && l.contains(&format!("route=\"{route}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!((posts("/v1/jobs/batch"), posts("/v1/jobs")), (1, 20), "{metrics}");

    // 17 good lines and 3 the function rejects: exit 1, the summary names the bad lines.
    let mixed: String = (1..=20)
        .map(|line| {
            if line % 7 == 0 || line == 20 {
                "{\"ms\": \"soon\"}\n".to_string()
            } else {
                "{\"ms\": 1}\n".to_string()
            }
        })
        .collect();
    let mixed_file = dir.join("mixed.jsonl");
    std::fs::write(&mixed_file, mixed).unwrap();
    let run = jobfleet(
        m,
        &[
            "submit",
            "default",
            "sleep",
            "--bulk",
            mixed_file.to_str().unwrap(),
        ],
    )
    .await
    .expect(1);
    assert_eq!(
        run.stderr.trim(),
        "jobfleet: 3 of 20 jobs did not finish (3 failed)"
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["finished", "17"]),
        "{run:?}"
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["failed", "3"]),
        "{run:?}"
    );
    let failed_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("invalid_args"))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(failed_lines, ["7", "14", "20"], "{run:?}");

    let summary = jobfleet(
        m,
        &[
            "--json",
            "submit",
            "default",
            "sleep",
            "--bulk",
            mixed_file.to_str().unwrap(),
            "--in-flight",
            "4",
        ],
    )
    .await
    .expect(1)
    .json();
    assert_eq!(
        (
            summary["total"].clone(),
            summary["finished"].clone(),
            summary["failed"].clone(),
            summary["canceled"].clone()
        ),
        (json!(20), json!(17), json!(3), json!(0))
    );
    let jobs = summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 20);
    assert!(jobs
        .iter()
        .enumerate()
        .all(|(i, job)| job["line"] == json!(i + 1) && job["id"].as_str().is_some()));
    assert_eq!(jobs[6]["error"]["kind"], "invalid_args");

    // Refused before anything is submitted: unknown group or function (3), bad line (2).
    jobfleet(
        m,
        &["submit", "nope", "sleep", "--bulk", good_file.to_str().unwrap()],
    )
    .await
    .expect(3);
    let unknown = jobfleet(
        m,
        &["submit", "default", "nope", "--bulk", good_file.to_str().unwrap()],
    )
    .await
    .expect(3);
    assert!(unknown.stderr.contains("unknown_function"), "{unknown:?}");
    let bad_file = dir.join("bad.jsonl");
    std::fs::write(&bad_file, "{\"ms\": 1}\n{oops\n").unwrap();
    let bad = jobfleet(
        m,
        &["submit", "default", "sleep", "--bulk", bad_file.to_str().unwrap()],
    )
    .await
    .expect(2);
    assert!(bad.stderr.contains("bad.jsonl:2: not valid JSON"), "{bad:?}");
    let page = jobfleet(m, &["list", "--limit", "1000", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(
        page["jobs"].as_array().unwrap().len(),
        60,
        "only the three good bulk runs submitted jobs"
    );
    env.stop_workers().await;
}

/// Starts `jobfleet watch ARGS...` for the env's fleet and waits until it is subscribed.
async fn start_watch(env: &TestEnv, args: &[&str]) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(binary("jobfleet"))
        .arg("watch")
        .args(args)
        .env("JOBFLEET_NAMESPACE", env.namespace())
        .env("JOBFLEET_AMQP_URL", &env.config.amqp_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("jobfleet watch runs");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("watch subscribes in time")
        .expect("stderr");
    assert!(
        first.as_deref().is_some_and(|l| l.starts_with("watching ")),
        "{first:?}"
    );
    child
}

/// Waits for a watch to exit; returns its status and stdout.
async fn finish_watch(mut child: tokio::process::Child) -> (Option<i32>, String) {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("watch exits after its count")
        .expect("wait");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut stdout)
        .await
        .expect("stdout");
    (status.code(), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_results_as_they_come() {
    let mut env = TestEnv::with_config("cli-watch", FLEET);
    let master = env.start_master().await;
    env.start_worker(env.worker().concurrency(2)).await;
    let m = master.as_str();

    let all = start_watch(&env, &["--count", "3"]).await;
    let failures = start_watch(&env, &["*.*.failed", "--count", "1", "--json"]).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            jobfleet(
                m,
                &[
                    "submit",
                    "default",
                    "echo",
                    "--args",
                    &n.to_string(),
                    "--wait",
                    "--json",
                ],
            )
            .await
            .expect(0)
            .json()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let failed = jobfleet(
        m,
        &[
            "submit",
            "default",
            "fail",
            "--args",
            r#"{"message": "seen"}"#,
            "--id",
            "cli-watch-fail",
        ],
    )
    .await
    .expect(0);
    assert_eq!(failed.stdout.trim(), "cli-watch-fail");

    let (code, stdout) = finish_watch(all).await;
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (n, id) in ids.iter().enumerate() {
        assert!(
            lines
                .iter()
                .any(|line| line.ends_with(&format!(" {id} default.echo finished {n}"))),
            "{id} {n}: {stdout}"
        );
    }

    let (code, stdout) = finish_watch(failures).await;
    assert_eq!(code, Some(0));
    let result: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(
        (
            result["id"].clone(),
            result["status"].clone(),
            result["error"]["kind"].clone()
        ),
        (json!("cli-watch-fail"), json!("failed"), json!("function_error"))
    );

    // Ctrl-C stops a watch cleanly.
    let watch = start_watch(&env, &[]).await;
    let pid = watch.id().expect("pid");
    env.signal(pid, libc::SIGINT);
    let (code, _) = finish_watch(watch).await;
    assert_eq!(code, Some(0));

    // No broker: exit 4 with one line.
    let output = tokio::process::Command::new(binary("jobfleet"))
        .args([
            "watch",
            "--namespace",
            env.namespace(),
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        ])
        .output()
        .await
        .expect("jobfleet watch runs");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
    .expect(4);
    assert!(
        run.stderr
            .contains("cannot reach the broker at amqp://guest:***@127.0.0.1:1"),
        "{run:?}"
    );
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_submit_status_and_cancel() {
    let mut env = TestEnv::with_config(
        "cli-wf",
        "[groups.default.functions.echo]\n[groups.default.functions.sleep]\n",
    );
    env.start_worker(env.worker()).await;
    let master = env.start_master().await;
    let file = env.config_path().with_file_name("workflow.json");
    let workflow = json!({"id": "cliwf", "steps": [
        {"name": "a", "group": "default", "function": "echo", "args": 1},
        {"name": "b", "group": "default", "function": "echo", "after": ["a"], "args": {"$result": "a"}},
    ]});
    std::fs::write(&file, workflow.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let submitted = jobfleet(&master, &["workflow", "submit", file]).await.expect(0);
    assert_eq!(submitted.stdout.trim(), "cliwf");
    eventually(Duration::from_secs(20), || async {
        let run = jobfleet(&master, &["workflow", "status", "cliwf"])
            .await
            .expect(0);
        run.stdout.starts_with("workflow cliwf finished").then_some(())
    })
    .await;
    let json = jobfleet(&master, &["--json", "workflow", "status", "cliwf"])
        .await
        .expect(0)
        .json();
    assert_eq!(json["steps"][1]["result"], 1, "{json}");
    // A cycle is refused (4xx: exit 3), an ended workflow cannot be canceled (409: exit 3).
    let cycle = json!({"steps": [{"name": "a", "group": "default", "function": "echo", "after": ["a"]}]});
    std::fs::write(file, cycle.to_string()).unwrap();
    jobfleet(&master, &["workflow", "submit", file]).await.expect(3);
    jobfleet(&master, &["workflow", "cancel", "cliwf"])
        .await
        .expect(3);
    jobfleet(&master, &["workflow", "submit", "/nonexistent.json"])
        .await
        .expect(2);
}
