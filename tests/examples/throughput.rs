//! Throughput of the whole pipeline: JOBS echo jobs (default 10,000) published with the
//! client library, run by one worker of CONCURRENCY (default 64), every result received
//! from the result topic. Prints jobs/s.
//!
//! `cargo run --release -p jobfleet-tests --example throughput -- [JOBS] [CONCURRENCY]`

use jobfleet_common::message::JobMessage;
use jobfleet_tests::{collect_results, TestEnv};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map(|a| a.parse().expect("JOBS")).unwrap_or(10_000);
    let concurrency: usize = args.next().map(|a| a.parse().expect("CONCURRENCY")).unwrap_or(64);
    let mut env = TestEnv::new("throughput");
    env.start_worker(env.worker().concurrency(concurrency)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let producer = env.producer().await;
    let batch: Vec<JobMessage> = (0..jobs)
        .map(|i| JobMessage::new("default", "echo", json!({"i": i})))
        .collect();
    let ids: Vec<String> = batch.iter().map(|j| j.id.clone()).collect();

    let start = Instant::now();
    let publishing = async {
        for chunk in batch.chunks(1000) {
            producer.publish_many(chunk).await.expect("publish");
        }
        start.elapsed()
    };
    let (published_in, results) = tokio::join!(
        publishing,
        collect_results(&mut subscriber, &ids, Duration::from_secs(600))
    );
    let elapsed = start.elapsed();
    assert_eq!(results.len(), jobs);
    println!(
        "{jobs} echo jobs, 1 worker, concurrency {concurrency}: published in {:.2}s, all results in {:.2}s = {:.0} jobs/s",
        published_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    env.stop_workers().await;
}
