//! Job priorities (SPEC §9) on the real services: a backlog of mixed priorities, submitted
//! through the API (immediate and delayed: the leader publishes those from their records),
//! the CLI and a producer while no worker runs, starts highest priority first once one worker
//! with one job in flight comes; a group queue's `max_priority` cannot change under the
//! broker; and the binaries refuse a priority group on a quorum queue (exit 64).

use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::config::QueueType;
use jobfleet_common::message::JobMessage;
use jobfleet_common::publish::queue_depth;
use jobfleet_tests::json_api::{time_ms, JsonApi};
use jobfleet_tests::{binary, eventually, TestEnv};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const FLEET: &str = r#"
[groups.urgent]
max_priority = 9
[groups.urgent.functions.sleep]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_starts_highest_priority_first() {
    let mut env = TestEnv::with_config("priorities", FLEET);
    let url = env.start_master().await;
    let api = JsonApi::new(env.http_client(), url.clone());
    // Each job's priority as given (None: none given, which is 0).
    let mut given: HashMap<String, Option<u8>> = HashMap::new();
    let args = json!({"ms": 20});
    for priority in [
        Some(0),
        Some(3),
        None,
        Some(7),
        Some(1),
        Some(9),
        Some(3),
        Some(5),
    ] {
        let mut body = json!({"group": "urgent", "function": "sleep", "args": args});
        if let Some(priority) = priority {
            body["priority"] = json!(priority);
        }
        let (status, answer) = api.post("/v1/jobs", &body).await;
        assert_eq!(status, 202, "{body} → {answer}");
        given.insert(answer["id"].as_str().unwrap().to_string(), priority);
    }
    // Delayed jobs wait unpublished; the leader publishes them from their records when due.
    for priority in [8, 2] {
        let body = json!({"group": "urgent", "function": "sleep", "args": args, "delay_ms": 300, "priority": priority});
        let (status, answer) = api.post("/v1/jobs", &body).await;
        assert_eq!(status, 202, "{body} → {answer}");
        given.insert(answer["id"].as_str().unwrap().to_string(), Some(priority));
    }
    // Through the CLI.
    for priority in ["6", "0"] {
        let args = [
            "--master",
            &url,
            "submit",
            "urgent",
            "sleep",
            "--args",
            r#"{"ms": 20}"#,
        ];
        let output = tokio::process::Command::new(binary("jobfleet"))
            .args(args)
            .args(["--priority", priority])
            .env_remove("JOBFLEET_MASTER")
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let id = String::from_utf8(output.stdout).unwrap().trim().to_string();
        given.insert(id, Some(priority.parse().unwrap()));
    }
    // On the wire, through the client library.
    let wire: Vec<JobMessage> = [Some(6), None, Some(9), Some(4)]
        .into_iter()
        .map(|priority| {
            let job = JobMessage::new("urgent", "sleep", args.clone());
            match priority {
                Some(priority) => job.with_priority(priority),
                None => job,
            }
        })
        .collect();
    env.producer().await.publish_many(&wire).await.unwrap();
    given.extend(wire.iter().map(|job| (job.id.clone(), job.priority)));

    // The whole backlog waits in the group queue before any worker exists.
    let pool = amqp_pool(env.config.amqp_endpoint(), 1, "jobfleet-test").expect("pool");
    let queue = env.topology.group_queue("urgent");
    eventually(Duration::from_secs(20), || async {
        let channel = open_channel(&pool, false).await.ok()?;
        let depth = queue_depth(&channel, &queue).await.ok()?;
        (depth == given.len() as u64).then_some(())
    })
    .await;
    pool.close();

    env.start_worker(env.worker().group("urgent").concurrency(1))
        .await;
    let mut records: Vec<Value> = eventually(Duration::from_secs(30), || async {
        let mut records = Vec::new();
        for id in given.keys() {
            let record = api.job(id).await;
            if record["status"] != "finished" {
                return None;
            }
            records.push(record);
        }
        Some(records)
    })
    .await;
    for record in &records {
        let shown = record["priority"].as_u64().map(|p| p as u8);
        assert_eq!(shown, given[record["id"].as_str().unwrap()], "{record}");
    }
    records.sort_by_key(|record| time_ms(record, "started_at"));
    let order: Vec<u8> = records
        .iter()
        .map(|record| record["priority"].as_u64().unwrap_or(0) as u8)
        .collect();
    let mut highest_first = order.clone();
    highest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(order, highest_first, "priorities in start order: {records:#?}");
}

#[tokio::test]
async fn the_broker_refuses_to_change_a_group_queues_max_priority() {
    let env = TestEnv::with_config("priority-change", FLEET);
    let pool = amqp_pool(env.config.amqp_endpoint(), 1, "jobfleet-test").expect("pool");
    let channel = open_channel(&pool, false).await.unwrap();
    let topology = &env.topology;
    topology.declare_base(&channel, QueueType::Classic).await.unwrap();
    topology
        .declare_group(&channel, "urgent", QueueType::Classic, Some(9))
        .await
        .unwrap();
    // Declaring it alike again is a no-op.
    topology
        .declare_group(&channel, "urgent", QueueType::Classic, Some(9))
        .await
        .unwrap();
    let err = topology
        .declare_group(&channel, "urgent", QueueType::Classic, Some(5))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("PRECONDITION_FAILED") && text.contains("x-max-priority"),
        "{text}"
    );
    pool.close();
}

#[tokio::test]
async fn the_binaries_refuse_a_priority_group_on_a_quorum_queue() {
    let env = TestEnv::new("priority-quorum");
    let toml = "[groups.urgent]\nqueue_type = \"quorum\"\nmax_priority = 5\n[groups.urgent.functions.echo]\n";
    for (name, args) in [
        ("jobfleet-master", ["--listen", "127.0.0.1:0"]),
        ("jobfleet-worker", ["--group", "urgent"]),
    ] {
        let (code, stderr) = env.refused_start(name, toml, &args).await;
        assert_eq!(code, Some(64), "{name}: {stderr}");
        assert!(
            stderr.contains("quorum queues have no priorities"),
            "{name}: {stderr}"
        );
    }
}
