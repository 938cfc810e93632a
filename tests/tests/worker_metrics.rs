//! The worker's `GET /metrics` over a real socket (SPEC §7): counters follow the jobs it
//! ran, the text parses as the Prometheus format, and the server stops with the worker.

use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::{collect_results, eventually, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /metrics` with HTTP/1.0, so the server closes the connection after the answer.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("answer in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// Parses the text format: every line is a comment or `name{labels} value`. Returns the
/// samples by their series (`name{labels}` as written).
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                Some(
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels: {line}")),
                ),
            ),
            None => (series, None),
        };
        let mut chars = name.chars();
        assert!(
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        assert!(
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        for pair in labels
            .into_iter()
            .flat_map(|l| l.split(','))
            .filter(|p| !p.is_empty())
        {
            let (label, quoted) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("bad label {pair:?}: {line}"));
            assert!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name: {line}"
            );
            assert!(
                quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                "unquoted label value: {line}"
            );
        }
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "duplicate series: {line}"
        );
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_the_jobs_a_worker_ran() {
    let mut env = TestEnv::new("metrics");
    let worker = env
        .worker()
        .concurrency(2)
        .metrics_listen("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let addr = worker.metrics_addr().expect("a bound metrics address");
    assert_ne!(addr.port(), 0);
    env.run_worker(worker).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;

    let mut jobs: Vec<JobMessage> = (0..3)
        .map(|i| JobMessage::new("default", "echo", json!(i)))
        .collect();
    jobs.push(JobMessage::new("default", "fail", json!({"message": "no"})));
    jobs.push(JobMessage::new("default", "crash", json!(null)));
    jobs.push(JobMessage::new("default", "not_a_function", json!(null)));
    producer.publish_many(&jobs).await.unwrap();
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let results = collect_results(&mut subscriber, &ids, Duration::from_secs(30)).await;
    assert_eq!(
        results
            .values()
            .filter(|r| r[0].status == JobStatus::Finished)
            .count(),
        3
    );

    let (head, body) = scrape(addr).await;
    let status_line = head.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.") && status_line.contains(" 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse(&body);
    let sample = |series: &str| {
        samples
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("{series} missing from\n{body}"))
    };

    assert_eq!(
        sample(r#"jobfleet_jobs_started_total{function="echo",group="default"}"#),
        3.0
    );
    assert_eq!(
        sample(r#"jobfleet_jobs_started_total{function="fail",group="default"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"jobfleet_jobs_started_total{function="crash",group="default"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"jobfleet_jobs_completed_total{function="echo",group="default",status="finished"}"#),
        3.0
    );
    assert_eq!(
        sample(r#"jobfleet_jobs_completed_total{function="fail",group="default",status="failed"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"jobfleet_jobs_completed_total{function="crash",group="default",status="failed"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"jobfleet_sandbox_crashes_total{function="crash",group="default"}"#),
        1.0
    );
    assert_eq!(
        sample(r#"jobfleet_sandbox_crashes_total{function="echo",group="default"}"#),
        0.0
    );
    // A function the worker does not know is counted, under a bounded label.
    assert_eq!(
        sample(r#"jobfleet_jobs_completed_total{function="_unknown",group="default",status="failed"}"#),
        1.0
    );
    assert!(
        !body.contains("not_a_function"),
        "a producer-chosen name became a label"
    );
    assert_eq!(
        sample(r#"jobfleet_job_duration_seconds_count{function="echo",group="default"}"#),
        3.0
    );
    assert_eq!(
        sample(r#"jobfleet_job_queue_seconds_count{function="echo",group="default"}"#),
        3.0
    );
    assert_eq!(sample(r#"jobfleet_jobs_running{group="default"}"#), 0.0);
    assert_eq!(sample(r#"jobfleet_redeliveries_total{group="default"}"#), 0.0);

    // The server goes away with the worker.
    env.stop_workers().await;
    eventually(Duration::from_secs(5), || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
}
