//! Workflows and batches (SPEC §10) against a real master and workers: a diamond passes
//! results downstream, a failed step fails its dependents with `dependency_failed`, a
//! cancel mid-workflow cancels what has not ended, a fan-out of 1,000 steps fans in, a
//! worker SIGKILLed mid-DAG still leaves every step ended once, and a batch's callback
//! runs once with the outcomes summarized, however often its jobs' results arrive; step
//! results lost with a SIGKILLed master are made good by the next leader's reconcile.

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::message::ResultMessage;
use jobfleet_common::publish::publish_result;
use jobfleet_tests::json_api::JsonApi;
use jobfleet_tests::{drain_results, eventually, TestEnv};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const FLEET: &str = r#"
[groups.default]
max_failures = 1000
[groups.default.functions.echo]
[groups.default.functions.sleep]
[groups.default.functions.fail]
"#;

/// A step of the default group.
fn step(name: &str, function: &str, after: &[&str], args: Value) -> Value {
    json!({"name": name, "group": "default", "function": function, "after": after, "args": args})
}

/// Waits until the workflow (or batch) at `path` has `status`; returns its document.
async fn until_status(api: &JsonApi, path: &str, status: &str, within: Duration) -> Value {
    eventually(within, || async {
        let (code, body) = api.get(path).await;
        (code == 200 && body["status"] == status).then_some(body)
    })
    .await
}

/// The steps of a workflow document by name.
fn steps_of(workflow: &Value) -> HashMap<String, Value> {
    workflow["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{workflow}"))
        .iter()
        .map(|s| (s["name"].as_str().unwrap_or_default().to_string(), s.clone()))
        .collect()
}

/// How many results each job id got on the topic.
fn counts(results: &[ResultMessage]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for result in results {
        *counts.entry(result.id.clone()).or_insert(0) += 1;
    }
    counts
}

/// A fleet with a master and an in-process worker, and a subscriber to every result.
async fn fleet(name: &str) -> (TestEnv, JsonApi, jobfleet_common::client::ResultSubscriber) {
    let mut env = TestEnv::with_config(name, FLEET);
    env.start_worker(env.worker().concurrency(8)).await;
    let master = env.start_master().await;
    let subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), master);
    (env, api, subscriber)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_passes_results_downstream_and_runs_each_step_once() {
    let (_env, api, mut subscriber) = fleet("wf-diamond").await;
    let workflow = json!({"id": "diamond", "steps": [
        step("a", "echo", &[], json!({"x": 1})),
        step("b", "echo", &["a"], json!({"from_a": {"$result": "a"}})),
        step("c", "echo", &["a"], json!({"c": [{"$result": "a"}]})),
        step("d", "echo", &["b", "c"], json!({"b": {"$result": "b"}, "c": {"$result": "c"}})),
    ]});
    let (code, accepted) = api.post("/v1/workflows", &workflow).await;
    assert_eq!((code, &accepted["id"]), (202, &json!("diamond")), "{accepted}");
    let done = until_status(&api, "/v1/workflows/diamond", "finished", Duration::from_secs(30)).await;
    let steps = steps_of(&done);
    assert_eq!(
        steps["d"]["result"],
        json!({"b": {"from_a": {"x": 1}}, "c": {"c": [{"x": 1}]}}),
        "{done}"
    );
    // Each step is an ordinary job, marked as the workflow's, started after its inputs.
    let job = |name: &str| {
        let api = &api;
        let id = steps[name]["job_id"].as_str().unwrap().to_string();
        async move { api.job(&id).await }
    };
    let (a, d) = (job("a").await, job("d").await);
    assert_eq!(
        (&d["workflow"], &d["step"], &d["attempts"]),
        (&json!("diamond"), &json!("d"), &json!(1))
    );
    assert!(d["started_at"].as_str() >= a["finished_at"].as_str(), "{a} {d}");
    // A repeat of the same id creates nothing.
    let (code, again) = api.post("/v1/workflows", &workflow).await;
    assert_eq!((code, &again["status"]), (200, &json!("finished")), "{again}");
    let results = drain_results(&mut subscriber, Duration::from_secs(2)).await;
    let counts = counts(&results);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(counts.get(&format!("diamond.{name}")), Some(&1), "{counts:?}");
    }
    assert!(results
        .iter()
        .all(|r| r.member.workflow.as_deref() == Some("diamond")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_fails_its_dependents_with_dependency_failed() {
    let (_env, api, mut subscriber) = fleet("wf-failed").await;
    let workflow = json!({"id": "broken", "steps": [
        step("a", "fail", &[], json!({"message": "no"})),
        step("b", "echo", &["a"], json!({"$result": "a"})),
        step("c", "echo", &["b"], Value::Null),
        step("side", "echo", &[], json!(7)),
    ]});
    assert_eq!(api.post("/v1/workflows", &workflow).await.0, 202);
    let done = until_status(&api, "/v1/workflows/broken", "failed", Duration::from_secs(30)).await;
    let steps = steps_of(&done);
    assert_eq!(steps["a"]["error"]["kind"], "function_error", "{done}");
    for name in ["b", "c"] {
        assert_eq!(
            (&steps[name]["status"], &steps[name]["error"]["kind"]),
            (&json!("failed"), &json!("dependency_failed")),
            "{done}"
        );
        let record = api.job(&format!("broken.{name}")).await;
        assert_eq!(record["attempts"], 0, "never ran: {record}");
    }
    assert_eq!(steps["side"]["result"], 7, "{done}");
    // The dependents' failures are announced like any job's.
    let results = drain_results(&mut subscriber, Duration::from_secs(2)).await;
    let counts = counts(&results);
    for name in ["a", "b", "c", "side"] {
        assert_eq!(counts.get(&format!("broken.{name}")), Some(&1), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_workflow_cancels_what_has_not_ended() {
    let (_env, api, _subscriber) = fleet("wf-cancel").await;
    let workflow = json!({"id": "long", "steps": [
        step("quick", "echo", &[], json!(1)),
        step("slow", "sleep", &["quick"], json!({"ms": 20_000})),
        step("after", "echo", &["slow"], Value::Null),
    ]});
    assert_eq!(api.post("/v1/workflows", &workflow).await.0, 202);
    eventually(Duration::from_secs(20), || async {
        let (_, body) = api.get("/v1/workflows/long").await;
        (steps_of(&body)["slow"]["status"] == "started").then_some(())
    })
    .await;
    let (code, canceled) = api.post("/v1/workflows/long/cancel", &json!({})).await;
    assert_eq!(
        (code, &canceled["status"]),
        (200, &json!("canceled")),
        "{canceled}"
    );
    let done = until_status(&api, "/v1/workflows/long", "canceled", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), || async {
        let (_, body) = api.get("/v1/workflows/long").await;
        (body["finished_at"].is_string()).then_some(())
    })
    .await;
    let steps = steps_of(&api.get("/v1/workflows/long").await.1);
    assert_eq!(steps["quick"]["status"], "finished", "{done}");
    assert_eq!(steps["slow"]["status"], "canceled");
    assert_eq!(steps["after"]["status"], "canceled");
    assert_eq!(api.job("long.after").await["attempts"], 0);
    assert_eq!(api.post("/v1/workflows/long/cancel", &json!({})).await.0, 409);
    assert_eq!(api.post("/v1/workflows/nope/cancel", &json!({})).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_1000_steps_fans_in() {
    let (_env, api, _subscriber) = fleet("wf-fan").await;
    let mut steps = vec![step("start", "echo", &[], json!(0))];
    let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    steps.extend(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| step(n, "echo", &["start"], json!(i))),
    );
    let parts: Vec<Value> = names.iter().map(|n| json!({"$result": n})).collect();
    let after: Vec<&str> = names.iter().map(String::as_str).collect();
    steps.push(step("sum", "echo", &after, json!({"parts": parts})));
    let (code, _) = api
        .post("/v1/workflows", &json!({"id": "fan", "steps": steps}))
        .await;
    assert_eq!(code, 202);
    let done = until_status(&api, "/v1/workflows/fan", "finished", Duration::from_secs(180)).await;
    let sum = &steps_of(&done)["sum"]["result"]["parts"];
    let expected: Vec<Value> = (0..1000).map(|i| json!(i)).collect();
    assert_eq!(sum, &json!(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_dag_leaves_every_step_ended_once() {
    let mut env = TestEnv::with_config("wf-kill", FLEET);
    let master = env.start_master().await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let api = JsonApi::new(env.http_client(), master);
    let first = env.spawn_worker_process(&["--group", "default"]);
    let workflow = json!({"id": "dag", "steps": [
        step("a", "echo", &[], json!(1)),
        step("b", "sleep", &["a"], json!({"ms": 3000})),
        step("c", "echo", &["b"], json!({"$result": "b"})),
    ]});
    assert_eq!(api.post("/v1/workflows", &workflow).await.0, 202);
    eventually(Duration::from_secs(20), || async {
        let (_, body) = api.get("/v1/workflows/dag").await;
        (steps_of(&body)["b"]["status"] == "started").then_some(())
    })
    .await;
    env.signal(first, 9);
    env.spawn_worker_process(&["--group", "default"]);
    let done = until_status(&api, "/v1/workflows/dag", "finished", Duration::from_secs(90)).await;
    assert_eq!(
        steps_of(&done)["c"]["result"],
        json!({"slept_ms": 3000}),
        "{done}"
    );
    let results = drain_results(&mut subscriber, Duration::from_secs(2)).await;
    let mut statuses: HashMap<String, Vec<_>> = HashMap::new();
    for r in &results {
        statuses.entry(r.id.clone()).or_default().push(r.status);
    }
    for name in ["a", "b", "c"] {
        let seen = &statuses[&format!("dag.{name}")];
        assert!(
            !seen.is_empty() && seen.iter().all(|s| *s == seen[0]),
            "{name}: {seen:?}"
        );
    }
    assert_eq!(api.job("dag.c").await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_callback_runs_once_with_the_outcomes_whatever_arrives_twice() {
    let (env, api, mut subscriber) = fleet("batch-cb").await;
    let mut jobs: Vec<Value> = (0..18)
        .map(|i| json!({"group": "default", "function": "echo", "args": i}))
        .collect();
    jobs.push(json!({"group": "default", "function": "fail"}));
    jobs.push(json!({"group": "default", "function": "fail"}));
    let batch = json!({"id": "b1", "jobs": jobs,
        "on_complete": {"group": "default", "function": "echo", "args": {"note": "done"}}});
    let (code, accepted) = api.post("/v1/batches", &batch).await;
    assert_eq!(code, 202, "{accepted}");
    let done = until_status(&api, "/v1/batches/b1", "failed", Duration::from_secs(30)).await;
    assert_eq!(
        (&done["total"], &done["finished"], &done["failed"]),
        (&json!(20), &json!(18), &json!(2))
    );
    let callback = &done["on_complete"];
    assert_eq!(callback["status"], "finished", "{done}");
    let summary = &callback["result"];
    assert_eq!(
        (&summary["batch"], &summary["finished"], &summary["failed"]),
        (&json!("b1"), &json!(18), &json!(2))
    );
    assert_eq!(summary["unfinished"], json!(["b1.18", "b1.19"]));
    assert_eq!(summary["args"], json!({"note": "done"}));

    // Every job's result delivered again (a redelivery, a second master): nothing reruns.
    let results = drain_results(&mut subscriber, Duration::from_secs(1)).await;
    let pool = amqp_pool(env.config.amqp_endpoint(), 1, "batch-test").unwrap();
    let channel = open_channel(&pool, true).await.unwrap();
    for result in results.iter().filter(|r| r.id != "b1.on_complete") {
        publish_result(&channel, &env.topology, result, None)
            .await
            .unwrap();
        publish_result(&channel, &env.topology, result, None)
            .await
            .unwrap();
    }
    let again = drain_results(&mut subscriber, Duration::from_secs(4)).await;
    let callbacks = results
        .iter()
        .chain(&again)
        .filter(|r| r.id == "b1.on_complete")
        .count();
    assert_eq!(callbacks, 1, "the callback ran or was announced again");
    assert_eq!(api.job("b1.on_complete").await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_results_lost_with_a_killed_master_are_made_good_by_the_next_leader() {
    let mut env = TestEnv::with_config("wf-master", FLEET);
    env.start_worker(env.worker().concurrency(4)).await;
    let (pid, first) = env.spawn_master_process().await;
    let api = JsonApi::new(env.http_client(), first);
    let workflow = json!({"id": "lost", "steps": [
        step("a", "sleep", &[], json!({"ms": 1000})),
        step("b", "echo", &["a"], json!({"$result": "a"})),
        step("c", "sleep", &[], json!({"ms": 1000})),
        step("d", "echo", &["c"], Value::Null),
    ]});
    assert_eq!(api.post("/v1/workflows", &workflow).await.0, 202);
    // The master dies, the roots end meanwhile, and their results are lost with it.
    env.signal(pid, 9);
    for id in ["lost.a", "lost.c"] {
        eventually(Duration::from_secs(20), || async {
            let record = env.coordinator.job(id).await.unwrap()?;
            record.status.is_terminal().then_some(())
        })
        .await;
    }
    let pool = amqp_pool(env.config.amqp_endpoint(), 1, "wf-master-test").unwrap();
    let channel = open_channel(&pool, false).await.unwrap();
    channel
        .queue_purge(env.topology.flows().into(), Default::default())
        .await
        .unwrap();
    let api = JsonApi::new(env.http_client(), env.start_master().await);
    let done = until_status(&api, "/v1/workflows/lost", "finished", Duration::from_secs(30)).await;
    let steps = steps_of(&done);
    assert_eq!(steps["b"]["result"], json!({"slept_ms": 1000}), "{done}");
    for name in ["a", "b", "c", "d"] {
        assert_eq!(api.job(&format!("lost.{name}")).await["attempts"], 1, "{done}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_result_for_a_running_step_releases_nothing() {
    let (env, api, _subscriber) = fleet("wf-forged").await;
    let workflow = json!({"id": "forged", "steps": [
        step("a", "sleep", &[], json!({"ms": 3000})),
        step("b", "echo", &["a"], Value::Null),
    ]});
    assert_eq!(api.post("/v1/workflows", &workflow).await.0, 202);
    eventually(Duration::from_secs(20), || async {
        let (_, body) = api.get("/v1/workflows/forged").await;
        (steps_of(&body)["a"]["status"] == "started").then_some(())
    })
    .await;
    // Anyone who may publish to NS.results claims `a` finished while it still runs.
    let mut forged = ResultMessage {
        id: "forged.a".into(),
        group: "default".into(),
        function: "sleep".into(),
        status: jobfleet_common::message::JobStatus::Finished,
        result: Some(json!("forged")),
        error: None,
        attempts: 1,
        worker: "nobody".into(),
        submitted_at: None,
        started_at: None,
        finished_at: jobfleet_common::now_ms(),
        duration_ms: Some(1),
        member: Default::default(),
    };
    forged.member.workflow = Some("forged".into());
    forged.member.step = Some("a".into());
    let pool = amqp_pool(env.config.amqp_endpoint(), 1, "forged-test").unwrap();
    let channel = open_channel(&pool, true).await.unwrap();
    publish_result(&channel, &env.topology, &forged, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, body) = api.get("/v1/workflows/forged").await;
    assert_eq!(steps_of(&body)["b"]["status"], "waiting", "{body}");
    let done = until_status(&api, "/v1/workflows/forged", "finished", Duration::from_secs(30)).await;
    assert_eq!(
        steps_of(&done)["a"]["result"],
        json!({"slept_ms": 3000}),
        "{done}"
    );
}
