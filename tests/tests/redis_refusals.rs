//! Redis refusing calls for reasons other than a lost connection (here NOPERM, as with
//! MISCONF, NOAUTH or timeouts) is passing: the worker keeps the delivery and retries, and
//! the outcome of a job that ran meanwhile is recorded once Redis answers again.

use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::private::PrivateRedis;
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn redis_cli(redis: &PrivateRedis, admin: bool, args: &[&str]) {
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/0")
        .to_string();
    let mut command = Command::new("redis-cli");
    command.args(["-p", &port]);
    if admin {
        command.args(["--user", "admin", "--pass", "secret", "--no-auth-warning"]);
    }
    let output = command.args(args).output().expect("redis-cli");
    assert!(output.status.success(), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ran_while_redis_refused_every_call_is_recorded_once_it_answers() {
    let redis = PrivateRedis::start();
    let amqp = jobfleet_common::config::Config::default().amqp_url;
    let mut env = TestEnv::with_services("refused", "", &amqp, &redis.url());
    redis_cli(
        &redis,
        false,
        &["ACL", "SETUSER", "admin", "on", ">secret", "~*", "&*", "+@all"],
    );
    env.start_worker(env.worker().concurrency(1)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let job = JobMessage::new("default", "sleep", json!({"ms": 1500}));
    env.producer().await.publish(&job).await.unwrap();
    let c = env.coordinator.clone();
    eventually(Duration::from_secs(20), || async {
        let record = c.job(&job.id).await.ok().flatten()?;
        (record.status == JobStatus::Started).then_some(())
    })
    .await;

    // Every call of the fleet's user is refused (NOPERM) while the job ends.
    redis_cli(&redis, false, &["ACL", "SETUSER", "default", "-@all"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis_cli(&redis, true, &["ACL", "SETUSER", "default", "+@all"]);

    let results = collect_results(
        &mut subscriber,
        std::slice::from_ref(&job.id),
        Duration::from_secs(30),
    )
    .await;
    let mut all = results[&job.id].clone();
    all.extend(drain_results(&mut subscriber, Duration::from_millis(500)).await);
    assert!(all.iter().all(|r| r.status == JobStatus::Finished), "{all:?}");
    let record = c.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts),
        (JobStatus::Finished, 1),
        "{record:?}"
    );
    env.stop_workers().await;
}
