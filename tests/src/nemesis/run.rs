//! One run: private RabbitMQ and Redis behind proxies, the fleet's processes under a
//! supervisor, the workload and the nemesis side by side until the faults stop, then the
//! checker.

use super::api::Api;
use super::checker::{self, ResultLog, Rules, Sources};
use super::faults::{Nemesis, Plan, Services};
use super::fleet::{Fleet, Launch};
use super::history::{self, Event, History};
use super::workload::Workload;
use super::{fleet_toml, Report, Settings, CRASHY, STEADY};
use crate::private::{PrivateRabbit, PrivateRedis};
use crate::proxy::Proxy;
use crate::{eventually, TestEnv, WORKER_PROCESS_FLAGS};
use jobfleet_common::client::{amqp_pool, open_channel};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::now_ms;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs the suite once with `settings` and judges it.
pub async fn run(settings: &Settings) -> Report {
    let started = Instant::now();
    let started_at = now_ms();
    let services = Arc::new(start_services().await);
    // The fleet (and the workload's producer) reach the services through the proxies.
    let amqp_url = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        services.rabbit_proxy.port()
    );
    let redis_url = format!("redis://127.0.0.1:{}/0", services.redis_proxy.port());
    let env = TestEnv::with_services(
        "nemesis",
        &fleet_toml(settings.corrector_bound),
        &amqp_url,
        &redis_url,
    );
    let dir = settings
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("jobfleet-{}", env.namespace())));
    std::fs::create_dir_all(&dir).expect("run directory");
    let history = Arc::new(History::create(&dir.join("history.jsonl")));
    let groups = vec![STEADY.to_string(), CRASHY.to_string()];
    let direct_redis = services.redis.lock().expect("redis lock").url();
    let direct = Coordinator::connect(&direct_redis, env.topology.clone(), env.config.retention)
        .expect("coordinator")
        .with_groups(groups.clone());
    let results = ResultLog::start(&services.rabbit.url(), env.topology.clone()).await;

    let fleet = start_fleet(settings, &env, &dir, &direct).await;
    let api = Arc::new(Api::new(fleet.master_urls()));
    let fleet = Arc::new(Mutex::new(fleet));
    let producer = env.producer().await.with_retry_for(Duration::from_secs(5));
    let workload = Workload::new(api, producer, history.clone());
    let supervising = CancellationToken::new();
    let supervisor = tokio::spawn(supervise(fleet.clone(), history.clone(), supervising.clone()));

    let stop_load = CancellationToken::new();
    let load = {
        let (workload, stop) = (workload.clone(), stop_load.clone());
        let (seed, clients, pace) = (settings.seed, settings.clients, settings.pace_ms);
        tokio::spawn(async move { workload.run(seed, clients, pace, stop).await })
    };
    let nemesis = Nemesis {
        fleet: fleet.clone(),
        services: services.clone(),
        history: history.clone(),
        workload,
    };
    let until = Instant::now() + settings.duration;
    let limit = until + settings.duration / 2;
    nemesis.run(Plan::new(settings.seed), until, limit).await;
    let quiet_at = Instant::now();
    history.record(&Event::Quiet { at: now_ms() });
    stop_load.cancel();
    load.await.expect("workload");

    let sources = Sources {
        coordinator: &direct,
        redis_url: &direct_redis,
        history: history.path(),
        results: &results,
        groups: &groups,
    };
    let (evidence, settled_after) = checker::gather(&sources, quiet_at, settings.bound).await;
    supervising.cancel();
    supervisor.await.expect("supervisor");
    fleet.lock().expect("fleet lock").stop_all();
    let rules = Rules {
        steady_groups: vec![STEADY.to_string()],
        groups,
    };
    let findings = checker::judge(&evidence, &rules);
    let mut report = Report::new(
        settings.seed,
        dir,
        &history::read(history.path()),
        findings,
        started_at,
    );
    report.settled_after = settled_after;
    report.bound = settings.bound;
    drop(env);
    drop(nemesis);
    report.wall = started.elapsed();
    report
}

async fn start_services() -> Services {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
        .await
        .expect("private rabbitmq");
    let redis = PrivateRedis::start();
    // The AMQP port can open a moment before the broker accepts connections.
    let pool = amqp_pool(rabbit.url(), 1, "jobfleet-nemesis").expect("amqp pool");
    eventually(Duration::from_secs(60), || async {
        open_channel(&pool, false).await.ok().map(drop)
    })
    .await;
    pool.close();
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    Services {
        rabbit_proxy: Proxy::start(local(rabbit.port())).await,
        redis_proxy: Proxy::start(local(redis.port())).await,
        rabbit: Arc::new(rabbit),
        redis: Arc::new(Mutex::new(redis)),
    }
}

/// Starts the processes and waits until every master is ready and every worker registered.
async fn start_fleet(
    settings: &Settings,
    env: &TestEnv,
    dir: &std::path::Path,
    direct: &Coordinator,
) -> Fleet {
    let concurrency = settings.concurrency.to_string();
    let groups = [
        "--group",
        STEADY,
        "--group",
        CRASHY,
        "--concurrency",
        &concurrency,
    ];
    let worker_args = WORKER_PROCESS_FLAGS.iter().chain(&groups);
    let launch = Launch {
        config: env.config_path(),
        amqp_url: env.config.amqp_url.clone(),
        redis_url: env.config.redis_url.clone(),
        dir: PathBuf::from(dir),
        worker_args: worker_args.map(|a| a.to_string()).collect(),
    };
    let fleet = Fleet::start(launch, settings.workers, settings.masters);
    let client = reqwest::Client::new();
    for url in fleet.master_urls() {
        eventually(Duration::from_secs(30), || async {
            let response = client.get(format!("{url}/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }
    eventually(Duration::from_secs(30), || async {
        let live = direct.live_workers().await.ok()?;
        (live.len() >= settings.workers).then_some(())
    })
    .await;
    fleet
}

/// Restarts processes that exit on their own, logging each, until `stop`.
async fn supervise(fleet: Arc<Mutex<Fleet>>, history: Arc<History>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let exited = fleet.lock().expect("fleet lock").supervise();
        for (process, code) in exited {
            history.record(&Event::Exit {
                process,
                at: now_ms(),
                code,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
