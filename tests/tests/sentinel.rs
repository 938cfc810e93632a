//! Redis Sentinel (SPEC §12): a fleet on `redis+sentinel://` (an in-process master and
//! worker, a worker process) goes on by itself through a `SENTINEL FAILOVER` and through a
//! SIGKILL of the primary under a steady load. Every accepted job reaches exactly one
//! terminal status and no id gets two different results, although the replica never had
//! the last transitions: a worker reruns a job whose record is gone, and the run-record
//! corrector sends back what a live worker no longer runs. Each test prints what the
//! failover lost (docs/operations.md, "Redis Sentinel").

use jobfleet_common::client::{Producer, ResultSubscriber};
use jobfleet_common::config::{self, Config};
use jobfleet_common::coordinator::{
    AttemptKey, Claim, ClaimRequest, CompleteRequest, Completion, Coordinator, CopyKind, Orphan, Outcome,
    RetryRequest,
};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus, ResultMessage};
use jobfleet_common::now_ms;
use jobfleet_common::redis::{self, AsyncCommands};
use jobfleet_common::topology::Topology;
use jobfleet_tests::pki::TestPki;
use jobfleet_tests::private::PrivateRedis;
use jobfleet_tests::sentinel::{
    monitor_config, progress, transitions_missing, PrivateSentinelSet, ProbeReport, WriteProbe, MASTER_NAME,
};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::block_in_place;

/// Sleep jobs (1.0–1.6 s, longer than what a failover loses, so no job lives and ends
/// entirely inside the lost stretch); a short corrector bound.
const FLEET: &str = r#"
corrector_bound = "2s"
[groups.default.functions.sleep]
"#;

/// Jobs submitted per second, and for how long.
const RATE: u64 = 20;
const LOAD_FOR: Duration = Duration::from_secs(10);
/// When the failover happens, after the load starts.
const FAILOVER_AT: Duration = Duration::from_secs(3);

fn amqp_url() -> String {
    Config::load(None, config::process_env)
        .expect("JOBFLEET_* environment")
        .amqp_url
}

/// A fleet on the sentinel set: an in-process master and worker, a worker process; and a
/// subscriber to its results.
async fn fleet(name: &str, toml: &str, set: &PrivateSentinelSet) -> (TestEnv, String, ResultSubscriber) {
    let mut env = TestEnv::with_services(name, toml, &amqp_url(), &set.url());
    let master = env.start_master().await;
    env.start_worker(env.worker().concurrency(32)).await;
    env.spawn_worker_process(&["--concurrency", "32"]);
    let subscriber = env.subscriber(&["default.#"]).await;
    (env, master, subscriber)
}

/// Jobs submitted at [`RATE`] through the client library, each publish in its own task;
/// the accepted ones (the publish answered Ok) with their args.
struct Load {
    accepted: Arc<Mutex<Vec<JobMessage>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(producer: Producer) -> Load {
        let producer = Arc::new(producer.with_retry_for(Duration::from_secs(20)));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let sink = accepted.clone();
        let handle = tokio::spawn(async move {
            let mut publishes = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            for n in 0..RATE * LOAD_FOR.as_secs() {
                tick.tick().await;
                let job = JobMessage::new("default", "sleep", json!({"ms": 1000 + (n % 7) * 100}));
                let (producer, sink) = (producer.clone(), sink.clone());
                publishes.spawn(async move {
                    if producer.publish(&job).await.is_ok() {
                        sink.lock().unwrap().push(job);
                    }
                });
            }
            publishes.join_all().await;
        });
        Load { accepted, handle }
    }

    fn ids(&self) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|j| j.id.clone())
            .collect()
    }

    async fn finish(self) -> Vec<JobMessage> {
        self.handle.await.expect("load");
        std::mem::take(&mut *self.accepted.lock().unwrap())
    }
}

/// The fleet's coordinator on the primary the sentinels name, whatever URL the fleet has.
fn on_current_primary(env: &TestEnv, set: &PrivateSentinelSet) -> Coordinator {
    let mut config = env.config.clone();
    config.redis_url = set.url();
    Coordinator::from_config(&config, env.topology.clone()).expect("a coordinator")
}

/// Every accepted job ended once: its results all agree, finished with what its args
/// asked for, and its record on the current primary (and as the master reads it) says
/// the same. Returns how many jobs ran more than once.
async fn assert_each_ended_once(
    (env, set): (&TestEnv, &PrivateSentinelSet),
    master: &str,
    subscriber: &mut ResultSubscriber,
    jobs: &[JobMessage],
) -> usize {
    let primary = on_current_primary(env, set);
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let mut results = collect_results(subscriber, &ids, Duration::from_secs(60)).await;
    for extra in drain_results(subscriber, Duration::from_secs(2)).await {
        results.entry(extra.id.clone()).or_default().push(extra);
    }
    let mut reruns = 0;
    for job in jobs {
        let seen: &Vec<ResultMessage> = &results[&job.id];
        let expected = json!({"slept_ms": job.args["ms"]});
        for result in seen {
            assert_eq!(
                (result.status, result.result.as_ref()),
                (JobStatus::Finished, Some(&expected)),
                "{}: two different results: {seen:?}",
                job.id
            );
        }
        let record = primary.job(&job.id).await.expect("redis").expect("a record");
        assert_eq!(
            (record.status, record.result.as_ref()),
            (JobStatus::Finished, Some(&expected)),
            "{record:?}"
        );
        reruns += usize::from(record.attempts > 1 || seen.len() > 1);
    }
    let sample = &jobs[jobs.len() / 2].id;
    let answer: serde_json::Value = env
        .http_client()
        .get(format!("{master}/v1/jobs/{sample}"))
        .send()
        .await
        .expect("GET /v1/jobs/{id}")
        .json()
        .await
        .expect("a job record");
    assert_eq!(
        answer["status"], "finished",
        "the master reads the new primary: {answer}"
    );
    reruns
}

/// A `SENTINEL FAILOVER` 3 s into a 10 s load on a fleet configured by `toml`; every
/// job must end once. What the probe found.
async fn failover_under_load(name: &str, toml: &str) -> ProbeReport {
    let set = block_in_place(PrivateSentinelSet::start);
    let (mut env, master, mut subscriber) = fleet(name, toml, &set).await;
    let keys = env.coordinator.keys().clone();
    let probe = WriteProbe::start(env.coordinator.clone(), Duration::from_millis(10));
    let load = Load::start(env.producer().await);
    tokio::time::sleep(FAILOVER_AT).await;

    let old = set.primary_port();
    let asked = Instant::now();
    let new = block_in_place(|| set.failover());
    let switched = asked.elapsed();
    // The demoted primary stays writable for seconds: what reached it after the promotion
    // is on it, not on the new primary.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = load.ids();
    let (on_old, on_new) = block_in_place(|| {
        (
            progress(old, &keys, "default", &ids),
            progress(new, &keys, "default", &ids),
        )
    });
    let behind = transitions_missing(&on_old, &on_new);

    let jobs = load.finish().await;
    let reruns = assert_each_ended_once((&env, &set), &master, &mut subscriber, &jobs).await;
    let probe = probe.finish(set.primary_port()).await;
    println!(
        "{name}: SENTINEL FAILOVER switched after {switched:?}; {} jobs accepted; {behind} jobs \
         further on the old primary than on the new, {reruns} ran twice; probe: {probe:?}",
        jobs.len()
    );
    env.stop_workers().await;
    probe
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_follows_a_sentinel_failover_and_every_job_ends_once() {
    failover_under_load("sentinel-failover", FLEET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_min_replicas_a_failover_loses_no_acknowledged_transition() {
    let toml = format!("redis_min_replicas = 1\n{FLEET}");
    let probe = failover_under_load("sentinel-wait", &toml).await;
    assert!(probe.acknowledged > 0);
    assert_eq!(probe.lost, 0, "acknowledged writes lost: {probe:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_survives_a_sigkill_of_the_primary_and_every_job_ends_once() {
    let mut set = block_in_place(PrivateSentinelSet::start);
    let (mut env, master, mut subscriber) = fleet("sentinel-kill", FLEET, &set).await;
    let keys = env.coordinator.keys().clone();
    let probe = WriteProbe::start(env.coordinator.clone(), Duration::from_millis(10));
    let load = Load::start(env.producer().await);
    tokio::time::sleep(FAILOVER_AT).await;

    // The replica falls 500 ms behind (as over a slow link), then the primary dies: what
    // it acknowledged meanwhile is lost.
    let replica = block_in_place(|| set.freeze_replica());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = load.ids();
    let on_primary = block_in_place(|| progress(set.primary_port(), &keys, "default", &ids));
    let killed = Instant::now();
    let old = block_in_place(|| set.kill_primary());
    set.thaw_replica(replica);
    let on_replica = block_in_place(|| progress(replica, &keys, "default", &ids));
    let lost = transitions_missing(&on_primary, &on_replica);
    let new = block_in_place(|| set.wait_for_primary_other_than(old));
    let promoted = killed.elapsed();
    assert_eq!(new, replica);
    block_in_place(|| set.restart_as_replica(old));

    let jobs = load.finish().await;
    let reruns = assert_each_ended_once((&env, &set), &master, &mut subscriber, &jobs).await;
    let probe = probe.finish(set.primary_port()).await;
    println!(
        "SIGKILL of the primary: promoted after {promoted:?}; {} jobs accepted; {lost} jobs with a \
         transition the replica lacked, {reruns} ran twice; probe: {probe:?}",
        jobs.len()
    );
    env.stop_workers().await;
}

/// A claim of `job` by `worker`, a fresh delivery.
async fn claim(c: &Coordinator, job: &JobMessage, worker: &str) -> Claim {
    c.claim(ClaimRequest {
        job,
        worker_id: worker,
        copy: CopyKind::Fresh,
        with_args: true,
        now_ms: now_ms(),
        token: &jobfleet_common::message::new_job_id(),
        max_takeovers: 3,
        max_failures: 5,
        limits: &Default::default(),
    })
    .await
    .expect("claim")
}

#[tokio::test]
async fn the_end_of_an_attempt_whose_record_a_failover_lost_answers_lost() {
    let env = TestEnv::new("sentinel-lost");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "echo", json!({"x": 1}));
    assert!(matches!(
        claim(c, &job, "w").await,
        Claim::Run { attempts: 1, .. }
    ));
    // The promoted replica never had the record: no record, and no tombstone either.
    let client = redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.del(c.keys().job("default", &job.id)).await.unwrap();
    let attempt = AttemptKey {
        job: &job,
        worker_id: "w",
        attempt: 1,
    };
    let outcome = Outcome {
        status: JobStatus::Finished,
        result: Some(json!(1)),
        error: None,
        duration_ms: 1,
    };
    let completed = c
        .complete(CompleteRequest {
            attempt,
            outcome: &outcome,
            max_failures: 5,
            now_ms: now_ms(),
        })
        .await
        .unwrap();
    assert_eq!(completed, Completion::Lost);
    let error = JobError::new(ErrorKind::Timeout, "slow");
    let retried = c
        .retry(RetryRequest {
            attempt,
            error: &error,
            available_at_ms: now_ms(),
            max_failures: 5,
        })
        .await
        .unwrap();
    assert_eq!(retried, Completion::Lost);
    // Handed back, the job's next claim records it again.
    assert!(matches!(
        claim(c, &job, "w2").await,
        Claim::Run { attempts: 1, .. }
    ));
}

#[tokio::test]
async fn a_started_job_its_live_owner_does_not_list_as_running_is_an_orphan() {
    let env = TestEnv::new("sentinel-unlisted");
    let c = &env.coordinator;
    let groups = &["default".to_string()];
    let beat = |running: Vec<&str>| {
        let info = json!({"id": "w1", "running": running});
        async move {
            c.heartbeat("w1", groups, &info, Duration::from_secs(30))
                .await
                .unwrap()
        }
    };
    let job = JobMessage::new("default", "echo", json!({"x": 1}));
    beat(vec![]).await;
    assert!(matches!(
        claim(c, &job, "w1").await,
        Claim::Run { attempts: 1, .. }
    ));
    // Its end was recorded, then lost: the worker lives and no longer lists the job.
    assert_eq!(
        c.orphaned("default").await.unwrap(),
        vec![Orphan::Unlisted {
            id: job.id.clone(),
            worker: "w1".into(),
            attempt: 1
        }]
    );
    beat(vec![job.id.as_str()]).await;
    assert_eq!(c.orphaned("default").await.unwrap(), vec![], "listed: it runs");
    c.deregister("w1", groups).await.unwrap();
    assert_eq!(
        c.orphaned("default").await.unwrap(),
        vec![Orphan::OwnerDead(job.id.clone())]
    );
}

#[tokio::test]
async fn a_rediss_sentinel_url_reaches_a_tls_primary_through_a_tls_sentinel() {
    let pki = TestPki::generate();
    let primary = PrivateRedis::start_tls(&pki);
    let sentinel = PrivateRedis::start_tls_sentinel(&pki, &monitor_config(primary.port(), 1));
    let url = format!("rediss+sentinel://127.0.0.1:{}/{MASTER_NAME}/0", sentinel.port());
    let mut config = Config::from_toml(&pki.tls_toml(&pki.ca())).unwrap();
    config.redis_url = url.clone();
    let topology = Topology::new(format!("t-sentinel-tls-{}", now_ms()));
    let c = Coordinator::from_config(&config, topology.clone()).unwrap();
    // The sentinel knows its primary once it has reached it over TLS.
    eventually(Duration::from_secs(20), || async { c.ping().await.ok() }).await;
    let job = JobMessage::new("default", "echo", json!({"over": "tls"}));
    assert_eq!(c.record_queued(std::slice::from_ref(&job)).await.unwrap(), 1);
    let record = c.job(&job.id).await.unwrap().expect("the record");
    assert_eq!(record.status, JobStatus::Queued);

    // Without the private CA ([tls] left out) the sentinel's certificate is not trusted.
    let untrusted = Coordinator::connect(url.as_str(), topology, Duration::from_secs(60)).unwrap();
    let err = untrusted.ping().await.unwrap_err();
    assert!(err.is_connection_error(), "{err}");
}
