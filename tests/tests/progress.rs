//! Progress and log lines (SPEC §10): reported by in-process functions (JobContext) and by
//! process sandboxes in both modes (stdout progress lines, stderr log lines), shown in the
//! record, `GET /v1/jobs/{id}/logs` and the Server-Sent Events of `GET /v1/jobs/{id}/events`
//! (read by a real HTTP client from start to the terminal event, and resumed mid-way).

use jobfleet_common::coordinator::activity::{ActivityEntry, ActivityKind, MAX_EVENTS_PER_JOB};
use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::{eventually, TestEnv};
use jobfleet_worker::{JobContext, JobError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// An in-process function that logs `lines` lines, `pause_ms` apart, then reports progress.
async fn report(args: Value) -> Result<Value, JobError> {
    let context = JobContext::current();
    let lines = args["lines"].as_u64().unwrap_or(3);
    for i in 0..lines {
        context.log(&format!("line {i}"));
        if let Some(pause) = args["pause_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
    context.progress(50.0, Some("half"));
    Ok(json!({"lines": lines}))
}

/// A fleet whose `default` group has the `report` function.
const REPORTING: &str = "[groups.default.functions.report]\n";

async fn finished(env: &TestEnv, id: &str) {
    let c = env.coordinator.clone();
    eventually(Duration::from_secs(30), || async {
        let record = c.job(id).await.ok().flatten()?;
        (record.status == JobStatus::Finished).then_some(())
    })
    .await;
}

async fn get_json(env: &TestEnv, url: &str) -> Value {
    let response = env.http_client().get(url).send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap()
}

/// One SSE event as read off the wire.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Reads the events stream of `id` (after `last_event_id`) until it ends, or until `stop`
/// says to hang up; returns what was read.
async fn read_events(
    master: &str,
    id: &str,
    last_event_id: Option<&str>,
    stop: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{master}/v1/jobs/{id}/events"));
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let mut events = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    events.push(event);
                }
            }
            if stop(&events) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends with the job");
    events
}

fn parse(block: &str) -> Option<Received> {
    let mut event = None;
    let mut id = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    Some(Received {
        event: event?,
        id,
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
    })
}

fn log_lines(events: &[Received]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["line"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_function_reports_progress_and_logs_to_record_logs_and_events() {
    let mut env = TestEnv::with_config("progress", REPORTING);
    env.start_worker(env.worker().function("report", report)).await;
    let master = env.start_master().await;
    let job = JobMessage::new("default", "report", json!({"lines": 3}));
    env.producer().await.publish(&job).await.unwrap();
    finished(&env, &job.id).await;

    let record = get_json(&env, &format!("{master}/v1/jobs/{}", job.id)).await;
    assert_eq!(record["progress"], json!({"percent": 50.0, "message": "half"}));
    let logs = get_json(&env, &format!("{master}/v1/jobs/{}/logs", job.id)).await;
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["line 0", "line 1", "line 2"]);

    // The whole story from the start, ending with the terminal status.
    let events = read_events(&master, &job.id, None, |_| false).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["log", "log", "log", "progress", "status"], "{events:?}");
    assert_eq!(events[3].data["percent"], json!(50.0));
    assert_eq!(events[4].data["status"], "finished");

    // An ended attempt stores nothing more, and a job's events go with its record.
    let late = ActivityEntry {
        at_ms: 0,
        attempt: 1,
        kind: ActivityKind::Log { line: "late".into() },
    };
    let stored = env
        .coordinator
        .append_activity("default", &job.id, 1, &[late])
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let deleted = env
        .http_client()
        .delete(format!("{master}/v1/jobs/{}", job.id))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let page = env
        .coordinator
        .activity_of("default", &job.id, None, 10)
        .await
        .unwrap();
    assert!(page.record.is_none() && page.events.is_empty(), "{page:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_stream_resumes_after_the_last_event_id() {
    let mut env = TestEnv::with_config("resume", REPORTING);
    env.start_worker(env.worker().function("report", report)).await;
    let master = env.start_master().await;
    let job = JobMessage::new("default", "report", json!({"lines": 10, "pause_ms": 150}));
    env.producer().await.publish(&job).await.unwrap();

    // Hang up after three lines, while the job still runs.
    let first = read_events(&master, &job.id, None, |events| log_lines(events).len() >= 3).await;
    assert!(
        !first
            .iter()
            .any(|e| e.event == "status" && e.data["status"] == "finished"),
        "{first:?}"
    );
    let seen = log_lines(&first);
    let last_id = first.iter().rev().find_map(|e| e.id.clone()).unwrap();
    let rest = read_events(&master, &job.id, Some(&last_id), |_| false).await;
    let mut all = seen.clone();
    all.extend(log_lines(&rest));
    let expected: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    assert_eq!(all, expected, "every line once, in order");
    let last = rest.last().unwrap();
    assert_eq!(
        (last.event.as_str(), &last.data["status"]),
        ("status", &json!("finished"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_keeps_its_latest_events_within_the_bound() {
    let mut env = TestEnv::with_config("bounds", REPORTING);
    env.start_worker(env.worker().function("report", report)).await;
    let master = env.start_master().await;
    let lines = MAX_EVENTS_PER_JOB as u64 + 500;
    // Fewer than the worker queues at once, so none is dropped before Redis has it.
    let job = JobMessage::new("default", "report", json!({"lines": lines}));
    env.producer().await.publish(&job).await.unwrap();
    finished(&env, &job.id).await;
    let logs = get_json(&env, &format!("{master}/v1/jobs/{}/logs", job.id)).await;
    let kept = logs["lines"].as_array().unwrap();
    // The newest events are kept: the progress report and the last lines.
    assert_eq!(
        kept.len(),
        MAX_EVENTS_PER_JOB - 1,
        "one slot holds the progress event"
    );
    assert_eq!(kept.last().unwrap()["line"], format!("line {}", lines - 1));
    let bad = env
        .http_client()
        .get(format!("{master}/v1/jobs/{}/logs?after=nonsense", job.id))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

fn process_fleet() -> String {
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/progress_probe.py");
    let probe = probe.display();
    format!(
        r#"
[groups.proc.functions.exclusive]
sandbox = "process"
command = ["python3", "{probe}"]
[groups.proc.functions.shared]
sandbox = "process"
mode = "shared"
command = ["python3", "{probe}", "--shared"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sandboxes_report_progress_on_stdout_and_log_stderr_in_both_modes() {
    let mut env = TestEnv::with_config("procprogress", &process_fleet());
    env.start_worker(env.worker().group("proc").concurrency(2)).await;
    let master = env.start_master().await;
    for function in ["exclusive", "shared", "shared"] {
        let job = JobMessage::new("proc", function, json!({"steps": 4, "logs": 2}));
        env.producer().await.publish(&job).await.unwrap();
        finished(&env, &job.id).await;
        let record = get_json(&env, &format!("{master}/v1/jobs/{}", job.id)).await;
        assert_eq!(record["result"], json!({"steps": 4}), "{function}: {record}");
        assert_eq!(
            record["progress"],
            json!({"percent": 100.0, "message": "step 4 of 4"}),
            "{function}"
        );
        let logs = get_json(&env, &format!("{master}/v1/jobs/{}/logs", job.id)).await;
        let lines: Vec<&str> = logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["line 0", "line 1"], "{function}");
    }
}
