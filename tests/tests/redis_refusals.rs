//! Redis refusing calls for reasons other than a lost connection (here NOPERM, as with
//! MISCONF, NOAUTH or timeouts) is passing: the worker keeps the delivery and retries, and
//! the outcome of a job that ran meanwhile is recorded once Redis answers again.

use jobfleet_common::message::{JobMessage, JobStatus};
use jobfleet_tests::private::{PrivateRabbit, PrivateRedis};
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

/// Lets the `admin` user (password `secret`) of `redis` do anything, so that the test can
/// take the fleet's own user's rights away and give them back.
fn add_admin(redis: &PrivateRedis) {
    redis_cli(
        redis,
        false,
        &["ACL", "SETUSER", "admin", "on", ">secret", "~*", "&*", "+@all"],
    );
}

/// Publishes a 1.5 s `sleep` job and waits until it has started.
async fn start_sleep(env: &TestEnv) -> JobMessage {
    let job = JobMessage::new("default", "sleep", json!({"ms": 1500}));
    env.producer().await.publish(&job).await.unwrap();
    let c = env.coordinator.clone();
    eventually(Duration::from_secs(20), || async {
        let record = c.job(&job.id).await.ok().flatten()?;
        (record.status == JobStatus::Started).then_some(())
    })
    .await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ran_while_redis_refused_every_call_is_recorded_once_it_answers() {
    let redis = PrivateRedis::start();
    let amqp = jobfleet_common::config::Config::default().amqp_url;
    let mut env = TestEnv::with_services("refused", "", &amqp, &redis.url());
    add_admin(&redis);
    env.start_worker(env.worker().concurrency(1)).await;
    let mut subscriber = env.subscriber(&["#"]).await;
    let job = start_sleep(&env).await;
    let c = env.coordinator.clone();

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

/// A worker's own copy of a job (here redelivered after its connection was cut) that
/// arrives after the job's function returned but before its outcome is recorded (Redis
/// refusing meanwhile) must not be taken over and run a second time by the same worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_arriving_while_the_outcome_waits_for_redis_does_not_run_the_job_again() {
    let redis = PrivateRedis::start();
    let rabbit = PrivateRabbit::start();
    let mut env = TestEnv::with_services("owncopy", "", &rabbit.url(), &redis.url());
    add_admin(&redis);
    // A free slot for the copy: it must not wait behind the job it copies.
    env.start_worker(env.worker().concurrency(2)).await;
    let job = start_sleep(&env).await;
    let c = env.coordinator.clone();

    // Redis refuses every call while the function returns; the outcome's retries back off
    // to their longest wait (seconds).
    redis_cli(&redis, false, &["ACL", "SETUSER", "default", "-@all"]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    // The delivery comes back as a redelivered copy to the same worker, held in the broker
    // (its queue suspended) until Redis answers again; then the copy's claim, retrying at
    // short intervals from its first refusal, comes before the outcome's next try.
    let queue = env.topology.group_queue("default");
    rabbit.suspend_queue(&queue);
    rabbit.close_all_connections();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbit.resume_queue(&queue);
    redis_cli(&redis, true, &["ACL", "SETUSER", "default", "+@all"]);

    // The record tells: a second run is a takeover, a second attempt.
    eventually(Duration::from_secs(40), || async {
        let record = c.job(&job.id).await.ok().flatten()?;
        (record.status == JobStatus::Finished).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = c.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.attempts),
        (JobStatus::Finished, 1),
        "the job ran again: {record:?}"
    );
    env.stop_workers().await;
}
