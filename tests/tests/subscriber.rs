//! A result subscriber never waits forever on a connection that died without telling it
//! (found by the 30-minute soak: after a broker restart the checker's subscriber stopped
//! receiving and never said so). Here its connection goes through a proxy that turns into
//! a black hole: nothing closes, nothing arrives. Within its idle check and deadline the
//! subscriber notices, subscribes again, and results reach it.

use jobfleet_common::client::{amqp_pool, open_channel, ResultSubscriber};
use jobfleet_common::message::{JobStatus, ResultMessage};
use jobfleet_common::publish::publish_result;
use jobfleet_tests::proxy::Proxy;
use jobfleet_tests::TestEnv;
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

fn result(id: &str) -> ResultMessage {
    ResultMessage {
        id: id.to_string(),
        group: "default".into(),
        function: "echo".into(),
        status: JobStatus::Finished,
        result: Some(json!(1)),
        error: None,
        attempts: 1,
        worker: "test".into(),
        submitted_at: None,
        started_at: None,
        finished_at: jobfleet_common::now_ms(),
        duration_ms: Some(1),
        member: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_connection_silently_dies_subscribes_again() {
    let env = TestEnv::new("subscriber-blackhole");
    let broker = reqwest::Url::parse(&env.config.amqp_url).unwrap();
    let upstream = format!("{}:{}", broker.host_str().unwrap(), broker.port().unwrap_or(5672));
    let proxy = Proxy::start(upstream.parse().unwrap()).await;
    let mut through = broker.clone();
    through.set_port(Some(proxy.port())).unwrap();
    let mut subscriber = ResultSubscriber::connect(through.as_str(), env.topology.clone(), &["#"])
        .await
        .unwrap();
    let (tx, mut received) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Ok(result) = subscriber.next().await {
            if tx.send(result.id).is_err() {
                return;
            }
        }
    });
    let pool = amqp_pool(env.config.amqp_url.as_str(), 1, "subscriber-test").unwrap();
    let channel = open_channel(&pool, true).await.unwrap();
    publish_result(&channel, &env.topology, &result("before"), None)
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
    assert_eq!(first.unwrap().as_deref(), Some("before"));

    // The subscriber's connection becomes a black hole: what crosses it from now on (the
    // results published meanwhile) is held for an hour, and nothing closes. New connections
    // get through again a little later.
    proxy.set_delay(Duration::from_secs(3600));
    for n in 0..14 {
        let during = result(&format!("during-{n}"));
        publish_result(&channel, &env.topology, &during, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    proxy.set_delay(Duration::ZERO);

    // Results keep coming; an exclusive queue misses those published before it is back.
    let mut n = 0;
    let arrived = tokio::time::timeout(Duration::from_secs(45), async {
        loop {
            n += 1;
            publish_result(&channel, &env.topology, &result(&format!("after-{n}")), None)
                .await
                .unwrap();
            if let Ok(Some(id)) = tokio::time::timeout(Duration::from_millis(500), received.recv()).await {
                return id;
            }
        }
    })
    .await;
    assert!(
        arrived.as_deref().is_ok_and(|id| id.starts_with("after-")),
        "the subscriber never came back: {arrived:?}"
    );
    reader.abort();
}
