//! Retention per group (issue #16): a group's own `retention` keeps its ended jobs (records
//! and idempotency keys) that long; the other groups keep the fleet's.

use jobfleet_common::message::JobStatus;
use jobfleet_common::redis;
use jobfleet_tests::json_api::JsonApi;
use jobfleet_tests::{collect_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

const FLEET: &str = r#"
retention = "1h"
[groups.default.functions.echo]
[groups.brief]
retention = "3s"
[groups.brief.functions.echo]
"#;

/// The seconds the key `key` has left to live (-2: gone, -1: no expiry).
async fn ttl(env: &TestEnv, key: &str) -> i64 {
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("TTL").arg(key).query_async(&mut conn).await.unwrap()
}

/// Submits `body` over the API; the job's id.
async fn submit(api: &JsonApi, body: Value) -> String {
    let (status, reply) = api.post("/v1/jobs", &body).await;
    assert_eq!(status, 202, "{reply}");
    reply["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_its_own_retention_keeps_its_ended_jobs_that_long() {
    let mut env = TestEnv::with_config("retention", FLEET);
    env.start_worker(env.worker().group("default")).await;
    env.start_worker(env.worker().group("brief")).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), env.start_master().await);
    let kept = submit(&api, json!({"group": "default", "function": "echo"})).await;
    let brief = submit(
        &api,
        json!({"group": "brief", "function": "echo", "idempotency_key": "brief-once"}),
    )
    .await;
    let ids = [kept.clone(), brief.clone()];
    let results = collect_results(&mut subscriber, &ids, Duration::from_secs(15)).await;
    assert!(ids.iter().all(|id| results[id][0].status == JobStatus::Finished));

    let keys = env.coordinator.keys().clone();
    let kept_ttl = ttl(&env, &keys.job("default", &kept)).await;
    assert!(
        kept_ttl > 3_000 && kept_ttl <= 3_600,
        "the fleet's retention: {kept_ttl}"
    );
    let brief_ttl = ttl(&env, &keys.job("brief", &brief)).await;
    assert!(
        (1..=3).contains(&brief_ttl),
        "the group's own retention: {brief_ttl}"
    );
    let key_ttl = ttl(&env, &keys.idempotency("brief", "brief-once")).await;
    assert!((1..=3).contains(&key_ttl), "its idempotency key too: {key_ttl}");

    eventually(Duration::from_secs(10), || async {
        env.coordinator.job(&brief).await.unwrap().is_none().then_some(())
    })
    .await;
    let record = env.coordinator.job(&kept).await.unwrap();
    assert_eq!(record.map(|r| r.status), Some(JobStatus::Finished));
    env.stop_workers().await;
}
