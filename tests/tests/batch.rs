//! `POST /v1/jobs/batch` against a real master and worker: each job of a batch is answered
//! in place (created, existing or its error), every created job runs exactly once, the same
//! batch sent again answers `existing` with the same ids and runs nothing, and a broken or
//! unknown group fails only its own jobs.

use jobfleet_tests::json_api::JsonApi;
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

const FLEET: &str = r#"
[groups.default.functions.echo]
[groups.fragile]
max_failures = 1
[groups.fragile.functions.crash]
[groups.fragile.functions.echo]
"#;

/// 50 echo jobs (even ones with an id of their own, odd ones with an idempotency key) and,
/// at indexes 10 and 31, a job of an unknown function and one with an invalid id.
fn jobs() -> Vec<Value> {
    let mut jobs: Vec<Value> = (0..50)
        .map(|n| match n % 2 {
            0 => json!({"group": "default", "function": "echo", "args": {"n": n}, "id": format!("batch-{n}")}),
            _ => json!({"group": "default", "function": "echo", "args": {"n": n}, "idempotency_key": format!("k-{n}")}),
        })
        .collect();
    jobs.insert(10, json!({"group": "default", "function": "nope"}));
    jobs.insert(
        31,
        json!({"group": "default", "function": "echo", "id": "not an id"}),
    );
    jobs
}

/// The ids of the answers with `outcome`, in order; asserts the two errors in place.
fn ids_of(body: &Value, outcome: &str) -> Vec<String> {
    let answers = body["jobs"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(answers.len(), 52, "{body}");
    assert_eq!(
        (
            &answers[10]["outcome"],
            &answers[10]["http_status"],
            &answers[10]["error"]["kind"]
        ),
        (&json!("error"), &json!(422), &json!("unknown_function")),
        "{body}"
    );
    assert_eq!(
        (
            &answers[31]["outcome"],
            &answers[31]["http_status"],
            &answers[31]["error"]["kind"]
        ),
        (&json!("error"), &json!(400), &json!("bad_request")),
        "{body}"
    );
    answers
        .iter()
        .enumerate()
        .filter(|(i, _)| ![10, 31].contains(i))
        .map(|(_, answer)| {
            assert_eq!(answer["outcome"], outcome, "{answer}");
            answer["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_batch_runs_each_valid_job_once_and_a_repeat_runs_nothing() {
    let mut env = TestEnv::with_config("batch", FLEET);
    env.start_worker(env.worker()).await;
    let master = env.start_master().await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), master);
    let batch = json!({ "jobs": jobs() });

    let (status, body) = api.post("/v1/jobs/batch", &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["created"], &body["existing"], &body["failed"]),
        (&json!(50), &json!(0), &json!(2))
    );
    let ids = ids_of(&body, "created");
    assert!(body["jobs"][0]["http_status"] == 202, "{body}");
    assert_eq!(ids[0], "batch-0");
    assert_eq!(
        ids[1..].iter().filter(|id| id.starts_with("batch-")).count(),
        24,
        "{ids:?}"
    );
    let results = collect_results(&mut subscriber, &ids, Duration::from_secs(60)).await;
    assert!(results.values().all(|r| r.len() == 1), "{results:?}");

    // The same batch again: the same ids, as existing, and nothing runs a second time.
    let (status, again) = api.post("/v1/jobs/batch", &batch).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(ids_of(&again, "existing"), ids);
    assert_eq!((&again["created"], &again["existing"]), (&json!(0), &json!(50)));
    assert!(again["jobs"][0]["http_status"] == 200, "{again}");
    let extra = drain_results(&mut subscriber, Duration::from_secs(2)).await;
    assert!(extra.is_empty(), "{extra:?}");
    for id in &ids {
        let record = api.job(id).await;
        assert_eq!(
            (&record["status"], &record["attempts"]),
            (&json!("finished"), &json!(1)),
            "{record}"
        );
    }
}

#[tokio::test]
async fn a_broken_or_unknown_group_fails_only_its_own_jobs_of_a_batch() {
    let mut env = TestEnv::with_config("batch-broken", FLEET);
    env.start_worker(env.worker().group("default").group("fragile"))
        .await;
    let master = env.start_master().await;
    let api = JsonApi::new(env.http_client(), master);
    // One crash breaks `fragile` (max_failures = 1).
    let crash = json!({"group": "fragile", "function": "crash"});
    let (status, crashed) = api.post("/v1/jobs", &crash).await;
    assert_eq!(status, 202, "{crashed}");
    eventually(Duration::from_secs(60), || async {
        (api.get("/v1/groups/fragile").await.1["broken"] == true).then_some(())
    })
    .await;

    let batch = json!({"jobs": [
        {"group": "fragile", "function": "echo"},
        {"group": "default", "function": "echo", "args": 1},
        {"group": "nowhere", "function": "echo"},
        {"group": "fragile", "function": "echo", "id": "fragile-1"},
    ]});
    let (status, body) = api.post("/v1/jobs/batch", &batch).await;
    assert_eq!(status, 200, "{body}");
    let answers = body["jobs"].as_array().unwrap_or_else(|| panic!("{body}"));
    let shape: Vec<(Value, Value, Value)> = answers
        .iter()
        .map(|a| {
            (
                a["outcome"].clone(),
                a["http_status"].clone(),
                a["error"]["kind"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (json!("error"), json!(503), json!("group_broken")),
            (json!("created"), json!(202), Value::Null),
            (json!("error"), json!(404), json!("not_found")),
            (json!("error"), json!(503), json!("group_broken")),
        ],
        "{body}"
    );
    let id = answers[1]["id"].as_str().unwrap_or_else(|| panic!("{body}"));
    eventually(Duration::from_secs(30), || async {
        (api.job(id).await["status"] == "finished").then_some(())
    })
    .await;
    let (status, _) = api.get("/v1/jobs/fragile-1").await;
    assert_eq!(status, 404, "nothing was recorded for fragile-1");
}
