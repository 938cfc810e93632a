//! SPEC §12 on a three-node RabbitMQ cluster: a fleet whose group is a quorum queue, every
//! client (producer, HTTP submits through the master, workers, the master itself, the
//! result subscriber) given the URLs of all three nodes. A steady load keeps going while
//! the node leading the group queue is SIGKILLed and restarted, or stopped for 30 s: every
//! accepted job ends in exactly one terminal status with a result on the topic, nothing is
//! lost, and no job needed the run-record corrector. Clients give up after [`GIVE_UP`],
//! shorter than either outage, so only failing over to another node keeps them going.
//!
//! Also: a job a quorum queue dead-letters at its delivery limit still ends exactly once.

use jobfleet_common::client::{amqp_pool, open_channel, Producer, ResultSubscriber};
use jobfleet_common::config::{QueueType, DEFAULT_REDIS_URL};
use jobfleet_common::coordinator::ListFilter;
use jobfleet_common::lapin::options::{BasicGetOptions, BasicNackOptions};
use jobfleet_common::message::{JobMessage, JobStatus, ResultMessage};
use jobfleet_common::publish::queue_depth;
use jobfleet_tests::cluster::PrivateCluster;
use jobfleet_tests::private::{free_port, PrivateRabbit};
use jobfleet_tests::{collect_results, drain_results, eventually, TestEnv};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "rq";

const FLEET: &str = r#"
[groups.rq]
queue_type = "quorum"
max_failures = 1000
[groups.rq.functions.sleep]
"#;

/// One job submitted every `INTERVAL`, each running `JOB_MS`: jobs are queued, running and
/// being acknowledged whenever the fault strikes.
const INTERVAL: Duration = Duration::from_millis(100);
const JOB_MS: u64 = 150;
/// Every `HTTP_EVERY`th job is submitted through the master's API, the others through the
/// client library.
const HTTP_EVERY: usize = 5;
/// How long the producer, and an HTTP submit, keep retrying before the job counts as not
/// accepted: shorter than the outages, so a client stuck on the faulted node fails.
const GIVE_UP: Duration = Duration::from_secs(15);
/// The load starts this long before the fault and goes on this long after it is over.
const STEADY: Duration = Duration::from_secs(5);

/// Three nodes and a fleet are what this machine runs at once: the cluster tests take turns.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What happens to the node leading the group queue.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL, down for the duration, then started again.
    Kill(Duration),
    /// `rabbitmqctl stop`, down for the duration, then started again.
    Stop(Duration),
}

impl Fault {
    /// Takes `node` down; returns how long it is to stay down.
    fn strike(self, node: &PrivateRabbit) -> Duration {
        match self {
            Fault::Kill(down_for) => {
                node.kill();
                down_for
            }
            Fault::Stop(down_for) => {
                node.stop();
                down_for
            }
        }
    }
}

/// A job the fleet accepted, and how long accepting it took.
struct Accepted {
    id: String,
    took: Duration,
    /// An HTTP submit the master answered with an error first (its publish may have
    /// been left unconfirmed: the record stays, and the run-record corrector republishes
    /// the job if no message of it exists — docs/design.md).
    unsettled: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_ends_once_while_the_group_queue_leader_is_killed_and_restarted() {
    steady_load_through(Fault::Kill(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_ends_once_while_a_node_is_stopped_for_30_seconds() {
    steady_load_through(Fault::Stop(Duration::from_secs(30))).await;
}

async fn steady_load_through(fault: Fault) {
    let _turn = ONE_CLUSTER.lock().await;
    let cluster = Arc::new(blocking(|| PrivateCluster::start(3)).await);
    let redis = std::env::var("JOBFLEET_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into());
    let mut env = TestEnv::with_services("cluster", FLEET, &cluster.urls(), &redis);
    let master = env.start_master().await;
    for _ in 0..3 {
        env.start_worker(env.worker().group(GROUP).concurrency(4)).await;
    }
    // A quorum queue of its own: it keeps results published while any one node is down.
    let results_queue = format!("{}.results", env.namespace());
    let subscriber = ResultSubscriber::durable_quorum(
        env.config.amqp_endpoint(),
        env.topology.clone(),
        &results_queue,
        &["#"],
    )
    .await
    .expect("subscriber");
    let (received, collector) = collect_in_background(subscriber);

    let group_queue = env.topology.group_queue(GROUP);
    let target = {
        let cluster = cluster.clone();
        blocking(move || cluster.wait_for_leader(&group_queue, Duration::from_secs(20))).await
    };
    let stop_load = CancellationToken::new();
    let target_of_load = LoadTarget {
        producer: env.producer().await.with_retry_for(GIVE_UP),
        http: env.http_client(),
        master: master.clone(),
    };
    let load = tokio::spawn(submit_until(target_of_load, stop_load.clone()));

    tokio::time::sleep(STEADY).await;
    let clients = {
        let cluster = cluster.clone();
        blocking(move || cluster.connections(target)).await
    };
    assert!(
        clients > 0,
        "no client of the fleet is connected to the node to fault"
    );
    let fault_started = Instant::now();
    let (outage, late_worker) = {
        let down = cluster.clone();
        let down_for = blocking(move || fault.strike(down.node(target))).await;
        let down_since = jobfleet_common::now_ms();
        // A worker started now must find a node that runs and everything its session needs.
        let late_worker = env.start_worker(env.worker().group(GROUP).concurrency(4)).await;
        tokio::time::sleep(down_for).await;
        // On a loaded machine its session may take longer than the outage to start: the
        // node stays down until it has run a job (within GIVE_UP, so clients still fail
        // over rather than wait).
        let late_has_run = async {
            loop {
                if ran_a_job(&env, &late_worker).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let _ = tokio::time::timeout(GIVE_UP, late_has_run).await;
        let up = cluster.clone();
        let back_at = jobfleet_common::now_ms();
        blocking(move || up.start_again(target)).await;
        (down_since..back_at, late_worker)
    };
    let fault_took = fault_started.elapsed();
    tokio::time::sleep(STEADY).await;
    stop_load.cancel();
    let accepted = load.await.expect("the load task");

    let ids: Vec<String> = accepted.iter().map(|a| a.id.clone()).collect();
    let (results, arrivals) = gather(received, &ids).await;
    collector.abort();
    let records = env.coordinator.jobs(&ids).await.expect("records");
    let mut rerun = 0;
    let mut late_jobs = 0;
    for (id, record) in ids.iter().zip(records) {
        let record = record.unwrap_or_else(|| panic!("{id} was accepted but has no record"));
        assert_eq!(record.status, JobStatus::Finished, "{id}: {:?}", record.error);
        let during_outage = record.started_at.is_some_and(|at| outage.contains(&at));
        late_jobs += usize::from(during_outage && record.worker.as_ref() == Some(&late_worker));
        for result in &results[id] {
            assert_eq!(
                (result.status, &result.result),
                (record.status, &record.result),
                "{id} has two outcomes"
            );
        }
        rerun += usize::from(record.attempts > 1);
    }
    assert!(
        late_jobs > 0,
        "the worker started while node {target} was down ran no job before it came back"
    );
    // Only a job whose HTTP submit failed first may have been left for the corrector (an
    // unconfirmed publish keeps its record); anything more, the cluster lost.
    let unsettled = accepted.iter().filter(|a| a.unsettled).count() as u64;
    let corrected = corrected_jobs(&env, &master).await;
    assert!(
        corrected <= unsettled,
        "the corrector had to repair {corrected} jobs, {unsettled} of them left unconfirmed by a failed submit"
    );

    let duplicates: usize = results.values().map(|r| r.len() - 1).sum();
    let slowest = accepted.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "cluster {fault:?} of node {target} ({clients} client connections on it; down and back in {fault_took:.1?}): \
         {} jobs accepted, 0 lost, {rerun} ran more than once, {duplicates} duplicate result messages, \
         0 doubled outcomes; {late_jobs} run during the outage by a worker started then; \
         longest gap between results {:.1?}, slowest accept {slowest:.1?}",
        ids.len(),
        longest_gap(&arrivals),
    );
    drop(env);
    drop(cluster);
}

/// What the load needs of the fleet, owned, so it runs in a task of its own.
struct LoadTarget {
    producer: Producer,
    http: reqwest::Client,
    master: String,
}

/// Whether `worker` has started any of the group's newest jobs.
async fn ran_a_job(env: &TestEnv, worker: &str) -> bool {
    let filter = ListFilter {
        group: Some(GROUP.to_string()),
        ..ListFilter::default()
    };
    match env.coordinator.list(&filter, 200, None).await {
        Ok((records, _)) => records.iter().any(|r| r.worker.as_deref() == Some(worker)),
        Err(_) => false,
    }
}

/// Submits a job every [`INTERVAL`] until `stop`, every [`HTTP_EVERY`]th through the
/// master's API; panics when one is not accepted within [`GIVE_UP`].
async fn submit_until(target: LoadTarget, stop: CancellationToken) -> Vec<Accepted> {
    let mut accepted = Vec::new();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.is_cancelled() {
        tick.tick().await;
        let job = JobMessage::new(GROUP, "sleep", json!({"ms": JOB_MS}));
        let started = Instant::now();
        let unsettled = if accepted.len() % HTTP_EVERY == 0 {
            submit_http(&target, &job).await
        } else {
            target
                .producer
                .publish(&job)
                .await
                .unwrap_or_else(|e| panic!("job {} not accepted: {e}", job.id));
            false
        };
        accepted.push(Accepted {
            id: job.id,
            took: started.elapsed(),
            unsettled,
        });
    }
    accepted
}

/// `POST /v1/jobs` with the job's id, repeated (safe: the id makes it one job) until the
/// master accepts it; whether it answered an error first.
async fn submit_http(target: &LoadTarget, job: &JobMessage) -> bool {
    let body = json!({"group": job.group, "function": job.function, "args": job.args, "id": job.id});
    let deadline = Instant::now() + GIVE_UP;
    let mut failed_first = false;
    loop {
        let sent = target
            .http
            .post(format!("{}/v1/jobs", target.master))
            .json(&body)
            .send()
            .await;
        let status = match sent {
            Ok(response) if response.status().is_success() => return failed_first,
            Ok(response) => response.status().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "job {} not accepted by the master within {GIVE_UP:?}: {status}",
            job.id
        );
        failed_first = true;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads results into a channel, each with the time it arrived, until the task is aborted.
fn collect_in_background(
    mut subscriber: ResultSubscriber,
) -> (
    mpsc::UnboundedReceiver<(Instant, ResultMessage)>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let result = subscriber.next().await.expect("a decodable result");
            if sender.send((Instant::now(), result)).is_err() {
                return;
            }
        }
    });
    (receiver, task)
}

/// Every result received until each of `ids` has one and nothing more came for 3 s:
/// the results by id, and their arrival times in order.
async fn gather(
    mut received: mpsc::UnboundedReceiver<(Instant, ResultMessage)>,
    ids: &[String],
) -> (HashMap<String, Vec<ResultMessage>>, Vec<Instant>) {
    let mut results: HashMap<String, Vec<ResultMessage>> = HashMap::new();
    let mut arrivals = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: std::collections::HashSet<&String> = ids.iter().collect();
    loop {
        let wait = if missing.is_empty() {
            Duration::from_secs(3)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let Ok(Some((at, result))) = tokio::time::timeout(wait, received.recv()).await else {
            break;
        };
        missing.remove(&result.id);
        arrivals.push(at);
        results.entry(result.id.clone()).or_default().push(result);
    }
    assert!(
        missing.is_empty(),
        "{} of {} accepted jobs have no result, e.g. {:?}",
        missing.len(),
        ids.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    (results, arrivals)
}

/// The longest time between two consecutive results.
fn longest_gap(arrivals: &[Instant]) -> Duration {
    arrivals
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .unwrap_or_default()
}

/// `jobfleet_jobs_corrected_total`, summed over its series, from the master's metrics.
async fn corrected_jobs(env: &TestEnv, master: &str) -> u64 {
    let text = env
        .http_client()
        .get(format!("{master}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("jobfleet_jobs_corrected_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs a blocking cluster operation (it sleeps and waits on `rabbitmqctl`) off the
/// runtime's threads, which the in-process workers and master need meanwhile.
async fn blocking<T: Send + 'static>(operation: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(operation)
        .await
        .expect("a cluster operation")
}

/// `amqp_url` as a list: a client connects through whichever node answers, wherever in the
/// list it starts (each new pool of a process starts one node further).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_through_whichever_node_of_its_list_answers() {
    let env = TestEnv::new("urls");
    let refusing = || format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let list = format!("{}, {} ,{}", refusing(), env.config.amqp_url, refusing());
    for _ in 0..6 {
        let pool = amqp_pool(list.as_str(), 1, "urls-test").unwrap();
        let channel = open_channel(&pool, false)
            .await
            .expect("a channel through the node that answers");
        env.topology.declare_exchanges(&channel).await.unwrap();
        pool.close();
    }
}

/// A quorum queue's delivery limit dead-letters a job its workers returned too often
/// (here a policy sets it to 1; RabbitMQ 4.0 and later default to 20). The job's record
/// stays `queued`, and the run-record corrector republishes it: it still ends, once, with
/// one outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dead_lettered_at_the_delivery_limit_still_ends_exactly_once() {
    let rabbit = blocking(PrivateRabbit::start).await;
    let redis = std::env::var("JOBFLEET_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.into());
    let fleet = format!("corrector_bound = \"1s\"\n{FLEET}");
    let mut env = TestEnv::with_services("limit", &fleet, &rabbit.url(), &redis);
    let policy = r#"{"delivery-limit": 1}"#;
    let pattern = format!("^{}\\.group\\.", env.namespace());
    rabbit.ctl_output(&["set_policy", "limit", &pattern, policy, "--apply-to", "queues"]);

    let pool = amqp_pool(rabbit.url(), 1, "limit-test").unwrap();
    let channel = open_channel(&pool, false).await.unwrap();
    env.topology
        .declare_base(&channel, QueueType::Quorum)
        .await
        .unwrap();
    env.topology
        .declare_group(&channel, GROUP, QueueType::Quorum, None)
        .await
        .unwrap();
    let mut subscriber = env.subscriber(&["#"]).await;
    let job = JobMessage::new(GROUP, "sleep", json!({"ms": 1}));
    env.producer().await.publish(&job).await.unwrap();

    // Returned twice (a worker dying with it, a drain handing it back): past the limit of 1.
    let group_queue = env.topology.group_queue(GROUP);
    for _ in 0..2 {
        let delivery = eventually(Duration::from_secs(10), || async {
            channel
                .basic_get(group_queue.as_str().into(), BasicGetOptions::default())
                .await
                .unwrap()
        })
        .await;
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let dead = env.topology.dead_letters();
    eventually(Duration::from_secs(10), || async {
        (queue_depth(&channel, &dead).await.unwrap() == 1).then_some(())
    })
    .await;
    assert_eq!(queue_depth(&channel, &group_queue).await.unwrap(), 0);
    let record = env.coordinator.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        JobStatus::Queued,
        "dead-lettered, the job is still queued"
    );

    env.start_master().await;
    env.start_worker(env.worker().group(GROUP)).await;
    let ids = [job.id.clone()];
    let mut results = collect_results(&mut subscriber, &ids, Duration::from_secs(30)).await;
    results
        .entry(job.id.clone())
        .or_default()
        .extend(drain_results(&mut subscriber, Duration::from_secs(2)).await);
    let record = env.coordinator.job(&job.id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Finished, 1));
    for result in &results[&job.id] {
        assert_eq!((result.status, &result.result), (record.status, &record.result));
    }
    drop(env);
    drop(rabbit);
}
