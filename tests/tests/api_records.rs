//! The API renders every stored record, whoever stored it: args nested deeper than the
//! JSON parser reads back, unparsable JSON fields, times far in the future or before 1970.
//! Submits refuse args nested deeper than the workers accept, and an id reused across
//! groups names its original job and never stalls the monitor's queue timeouts.

use jobfleet_common::codec::MAX_ARGS_DEPTH;
use jobfleet_common::message::JobMessage;
use jobfleet_common::redis;
use jobfleet_tests::{eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const FLEET: &str = r#"
[groups.default.functions.echo]
[groups.alpha.functions.echo]
[groups.beta]
queue_timeout = "1s"
[groups.beta.functions.echo]
"#;

/// The first year RFC 3339 cannot write (10000-01-01), in unix ms.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

async fn get(client: &Client, url: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .expect("an answer, not a reset connection");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(client: &Client, url: &str, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `levels` arrays nested in each other around a number.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

/// Writes a record straight into Redis (as an old worker or a tampering hand could), with
/// its index entry so listings find it.
async fn store(env: &TestEnv, group: &str, id: &str, fields: &[(&str, String)]) {
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut record = vec![
        ("id", id.to_string()),
        ("group", group.to_string()),
        ("function", "echo".to_string()),
    ];
    record.extend(fields.iter().cloned());
    let _: () = redis::cmd("HSET")
        .arg(env.coordinator.keys().job(group, id))
        .arg(record)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(env.coordinator.keys().index(group))
        .arg(jobfleet_common::now_ms())
        .arg(id)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_record_renders() {
    let mut env = TestEnv::with_config("records", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let deep = serde_json::to_string(&nested(200)).unwrap();
    let now = jobfleet_common::now_ms().to_string();
    let status = |s: &str| ("status", s.to_string());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("deep-args", vec![status("queued"), ("args", deep.clone())]),
        (
            "deep-result",
            vec![status("finished"), ("args", "1".into()), ("result", deep.clone())],
        ),
        (
            "corrupt-json",
            vec![
                status("finished"),
                ("args", "{not json".into()),
                ("result", "[1,".into()),
            ],
        ),
        (
            "future",
            vec![
                status("finished"),
                ("submitted_at", YEAR_10000_MS.to_string()),
                ("started_at", i64::MAX.to_string()),
                ("finished_at", (YEAR_10000_MS * 10).to_string()),
            ],
        ),
        (
            "past",
            vec![
                status("failed"),
                ("submitted_at", "-5".into()),
                ("started_at", i64::MIN.to_string()),
                ("finished_at", "-1".into()),
                ("error_kind", "timeout".into()),
            ],
        ),
        (
            "future-submit-only",
            vec![status("queued"), ("submitted_at", YEAR_10000_MS.to_string())],
        ),
        (
            "unreadable-numbers",
            vec![
                status("started"),
                ("submitted_at", "soon".into()),
                ("started_at", now.clone()),
                ("attempts", "many".into()),
                ("duration_ms", "-3".into()),
            ],
        ),
    ];
    for (id, fields) in &cases {
        store(&env, "default", id, fields).await;
    }
    // What a producer publishes straight to AMQP is stored before any worker checks it.
    let producer = env.producer().await;
    let mut far = JobMessage::new("default", "echo", nested(100));
    far.id = "published-deep".into();
    producer.publish(&far).await.unwrap();
    let mut future = JobMessage::new("default", "echo", json!(1));
    future.id = "published-future".into();
    future.submitted_at = Some(i64::MAX);
    producer.publish(&future).await.unwrap();

    let ids: Vec<&str> = cases
        .iter()
        .map(|(id, _)| *id)
        .chain(["published-deep", "published-future"])
        .collect();
    for id in &ids {
        let (status, record) = get(&http, &format!("{base}/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{id}: {record}");
        assert_eq!(record["id"], *id, "{record}");
        let submitted = record["submitted_at"].as_str().expect("submitted_at is text");
        assert!(
            submitted.ends_with('Z') && submitted.len() >= 20,
            "{id}: {record}"
        );
        for time in ["started_at", "finished_at"] {
            assert!(
                record[time].is_null() || record[time].as_str().is_some_and(|t| t.ends_with('Z')),
                "{id}: {record}"
            );
        }
    }
    // Unreadable JSON comes back as its stored text.
    let (_, record) = get(&http, &format!("{base}/v1/jobs/deep-args")).await;
    assert_eq!(record["args"], json!(deep));
    let (_, record) = get(&http, &format!("{base}/v1/jobs/corrupt-json")).await;
    assert_eq!(
        (record["args"].clone(), record["result"].clone()),
        (json!("{not json"), json!("[1,"))
    );
    let (_, record) = get(&http, &format!("{base}/v1/jobs/published-deep")).await;
    assert_eq!(record["args"], nested(100), "readable depth renders as JSON");

    // One bad record never takes the listing down for everyone.
    let (status, page) = get(&http, &format!("{base}/v1/jobs?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    for id in &ids {
        assert!(listed.contains(id), "{id} missing from {listed:?}");
    }
    let (status, _) = get(&http, &format!("{base}/v1/jobs?status=queued")).await;
    assert_eq!(status, StatusCode::OK);

    // A record no transition could have written (an unknown status) is left out of the
    // listing instead of failing it.
    let bogus = [("status", "bogus".to_string()), ("submitted_at", now.clone())];
    store(&env, "default", "bogus-status", &bogus).await;
    let (status, page) = get(&http, &format!("{base}/v1/jobs?limit=1000")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = page["jobs"].as_array().unwrap();
    assert!(listed.iter().all(|j| j["id"] != "bogus-status"), "{page}");
    assert!(listed.len() >= ids.len(), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_refuse_args_nested_deeper_than_workers_accept() {
    let mut env = TestEnv::with_config("depth", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    for levels in [MAX_ARGS_DEPTH + 1, 100, 127, 200] {
        let (status, body) = post(
            &http,
            &jobs,
            json!({"group": "default", "function": "echo", "args": nested(levels)}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{levels} levels: {body}");
        assert_eq!(body["error"]["kind"], "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nest")),
            "{body}"
        );
    }
    let (status, accepted) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "echo", "args": nested(MAX_ARGS_DEPTH)}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, listed) = get(&http, &jobs).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        1,
        "only the accepted job was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_reused_across_groups_names_the_original_job() {
    let mut env = TestEnv::with_config("reused", FLEET);
    let base = env.start_master().await;
    let http = Client::new();
    let jobs = format!("{base}/v1/jobs");
    let (status, _) = post(
        &http,
        &jobs,
        json!({"group": "default", "function": "echo", "id": "shared", "args": "first"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, existing) = post(
        &http,
        &jobs,
        json!({"group": "alpha", "function": "echo", "id": "shared", "args": "second"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{existing}");
    assert_eq!(
        (existing["group"].clone(), existing["args"].clone()),
        (json!("default"), json!("first")),
        "the original job, never a second one"
    );
    let alpha = env.coordinator.keys().job("alpha", "shared");
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&alpha)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "nothing was recorded in the second group");
    let (status, waited) = post(
        &http,
        &format!("{jobs}?wait=0.2"),
        json!({"group": "alpha", "function": "echo", "id": "shared"}),
    )
    .await;
    assert_eq!(
        (status, waited["group"].clone()),
        (StatusCode::OK, json!("default"))
    );
}

/// A record's status read straight from its group's key.
async fn status_in(env: &TestEnv, group: &str, id: &str) -> Option<String> {
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGET")
        .arg(env.coordinator.keys().job(group, id))
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_reused_across_groups_never_stall_queue_timeouts() {
    let mut env = TestEnv::with_config("stall", FLEET);
    let base = env.start_master().await;
    // Producers publishing straight to AMQP can record one id in two groups: the same ids
    // in `alpha` (no queue timeout) and `beta` (1 s), more of them than one scan reads.
    let producer = env.producer().await;
    let in_alpha: Vec<JobMessage> = (0..120)
        .map(|i| {
            let mut job = JobMessage::new("alpha", "echo", json!(i));
            job.id = format!("reused-{i:03}");
            job
        })
        .collect();
    let in_beta: Vec<JobMessage> = in_alpha
        .iter()
        .map(|job| JobMessage {
            group: "beta".into(),
            ..job.clone()
        })
        .collect();
    producer.publish_many(&in_alpha).await.unwrap();
    producer.publish_many(&in_beta).await.unwrap();
    let http = Client::new();
    let (status, late) = post(
        &http,
        &format!("{base}/v1/jobs"),
        json!({"group": "beta", "function": "echo", "id": "late"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{late}");

    // Every beta job times out, the one submitted after them too.
    eventually(Duration::from_secs(30), || async {
        (status_in(&env, "beta", "late").await.as_deref() == Some("failed")).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        for job in &in_beta {
            if status_in(&env, "beta", &job.id).await.as_deref() != Some("failed") {
                return None;
            }
        }
        Some(())
    })
    .await;
    // The same ids in alpha, which has no queue timeout, are untouched.
    for job in &in_alpha {
        assert_eq!(
            status_in(&env, "alpha", &job.id).await.as_deref(),
            Some("queued"),
            "{}",
            job.id
        );
    }
}
