//! `--log-format json` on the real binaries: stderr is one JSON object per line, and the
//! events of a job carry its span's fields (`job_id`, `group`, `function`, `attempt`), so
//! a log pipeline can follow one job across workers.

use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::{binary, collect_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A spawned binary whose stderr lines are collected; killed on drop.
struct Logged {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn spawn(env: &TestEnv, program: &str, args: &[&str]) -> Logged {
        let mut child = Command::new(binary(program))
            .args([
                "--config",
                env.config_path().to_str().expect("utf-8 path"),
                "--log-format",
                "json",
            ])
            .args(args)
            .env("JOBFLEET_AMQP_URL", &env.config.amqp_url)
            .env("JOBFLEET_REDIS_URL", &env.config.redis_url)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Logged { child, lines }
    }

    /// Every line so far, each parsed as a JSON object (panics on any other line).
    fn events(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lines").clone();
        lines
            .iter()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(event) if event.is_object() => event,
                _ => panic!("a stderr line is not a JSON object: {line}"),
            })
            .collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of the `job` span an event was logged in: its current span, or one of the
/// spans it is nested in.
fn job_span(event: &Value) -> Option<&Value> {
    std::iter::once(&event["span"])
        .chain(event["spans"].as_array().into_iter().flatten())
        .find(|span| span["name"] == "job")
}

/// `fail` is retried once, 500 ms later (the delay queue the test kit cleans up): the
/// retry is logged inside the job's span.
const FLEET: &str = r#"
[groups.default.functions.echo]
[groups.default.functions.fail]
max_retries = 1
retry_backoff = "500ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_worker_log_carries_the_job_span_fields() {
    let env = TestEnv::with_config("jsonlog", FLEET);
    let worker = Logged::spawn(
        &env,
        "jobfleet-worker",
        &[
            "--metrics-listen",
            "off",
            "--heartbeat-interval",
            "500ms",
            "--heartbeat-ttl",
            "2s",
        ],
    );
    env.wait_for_queues(&["default".to_string()]).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let echo = JobMessage::new("default", "echo", json!({"hello": "logs"}));
    let fail = JobMessage::new("default", "fail", json!({"message": "on purpose"}));
    producer
        .publish_many(&[echo.clone(), fail.clone()])
        .await
        .expect("publish");
    let results = collect_results(
        &mut subscriber,
        &[echo.id.clone(), fail.id.clone()],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(results[&echo.id][0].status, JobStatus::Finished);
    assert_eq!(
        (results[&fail.id][0].status, results[&fail.id][0].attempts),
        (JobStatus::Failed, 2)
    );

    // Every job is named by its id ("delivery handled"); the events inside a job's span
    // (here: the retry of `fail`) carry the span's job_id, group, function and attempt.
    let (echo_events, fail_events) = eventually(Duration::from_secs(10), || {
        let events = worker.events();
        let echo_events: Vec<Value> = events
            .iter()
            .filter(|e| e["job_id"] == echo.id.as_str())
            .cloned()
            .collect();
        let fail_events: Vec<Value> = events
            .iter()
            .filter(|e| job_span(e).is_some_and(|s| s["job_id"] == fail.id.as_str()))
            .cloned()
            .collect();
        std::future::ready(
            (!echo_events.is_empty() && !fail_events.is_empty()).then_some((echo_events, fail_events)),
        )
    })
    .await;
    for event in echo_events.iter().chain(&fail_events) {
        assert!(
            event["timestamp"].is_string() && event["level"].is_string() && event["message"].is_string(),
            "{event}"
        );
    }
    for event in &fail_events {
        let span = job_span(event).expect("a job span");
        assert_eq!(
            (&span["group"], &span["function"]),
            (&json!("default"), &json!("fail")),
            "{event}"
        );
    }
    let retry = fail_events
        .iter()
        .find(|e| e["level"] == "WARN")
        .unwrap_or_else(|| panic!("no retry warning in {fail_events:#?}"));
    assert_eq!(job_span(retry).expect("a job span")["attempt"], 1, "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_master_log_is_json_from_the_first_line() {
    let env = TestEnv::new("jsonlog-master");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let master = Logged::spawn(
        &env,
        "jobfleet-master",
        &["--listen", &format!("127.0.0.1:{port}")],
    );
    let serving = eventually(Duration::from_secs(20), || {
        let events = master.events();
        async move { events.into_iter().find(|e| e["message"] == "master serving") }
    })
    .await;
    assert_eq!(serving["address"], format!("127.0.0.1:{port}"), "{serving}");
    assert_eq!(serving["level"], "INFO");
}
