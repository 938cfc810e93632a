//! `jobfleet-bench`: the benchmark of docs/benchmark.md. `run` measures, in one invocation
//! and namespace, the bare-lapin ceiling, jobfleet end to end (client library and HTTP),
//! the process sandboxes, latency at a fixed rate and peak RSS, and prints one table;
//! `ceiling-consumer` is the ceiling's consumer process, started by `run`.

mod ceiling;
mod cpu;
mod delayed;
mod fleet;
mod links;
mod logs;
mod long_row;
mod measure;
mod memory;
mod peers;
mod report;
mod steps;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use cpu::{Meter, Tracked};
use fleet::{Fleet, ECHO_GROUP, EXCLUSIVE_FUNCTION, PROCESS_GROUP, SHARED_FUNCTION};
use jobfleet_common::binary::{self, Exit};
use jobfleet_common::client::{Producer, ResultSubscriber};
use jobfleet_common::config::QueueType;
use jobfleet_common::limits::{Change, LimitsChange};
use jobfleet_common::message::JobMessage;
use jobfleet_common::topology::Topology;
use measure::Throughput;
use report::Report;
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// jobfleet benchmark.
#[derive(Parser, Debug)]
#[command(name = "jobfleet-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the benchmark and prints the table (what scripts/bench runs).
    Run(RunArgs),
    /// The ceiling's consumer (started by `run` as a separate process).
    CeilingConsumer {
        /// RabbitMQ.
        #[arg(long)]
        amqp_url: String,
        /// The ceiling's namespace (`NS.ceiling`): its queue and result exchange.
        #[arg(long)]
        namespace: String,
        /// Prefetch = deliveries in flight.
        #[arg(long)]
        concurrency: u16,
    },
}

/// The rows `run` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Row {
    /// Bare lapin, same flow and guarantees.
    Ceiling,
    /// jobfleet through the client library.
    E2e,
    /// jobfleet through POST /v1/jobs.
    Http,
    /// jobfleet through POST /v1/jobs/batch, 1,000 jobs a request.
    Batch,
    /// The process sandbox, exclusive and shared.
    Process,
    /// Latency at a fixed rate, ceiling and jobfleet.
    Latency,
    /// Delayed jobs: start lateness under load, and immediate throughput with 100,000
    /// delayed jobs waiting.
    Delayed,
    /// Flow control: e2e throughput without limits, at max_running = 64, and under a
    /// rate limit far above the rate reached (the gate's cost, not its pacing).
    Flow,
    /// Redis bytes per queued and per ended small job (a wordcount of one sentence).
    Memory,
    /// Job logs' cost: e2e throughput of a function logging 10 lines per job against the
    /// same function logging none.
    Logs,
    /// Workflows: the time from a step's end to its dependents' start, p50/p99, and steps/s.
    Steps,
}

/// `--queue-type`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum BenchQueueType {
    Classic,
    Quorum,
}

impl From<BenchQueueType> for QueueType {
    fn from(queue_type: BenchQueueType) -> QueueType {
        match queue_type {
            BenchQueueType::Classic => QueueType::Classic,
            BenchQueueType::Quorum => QueueType::Quorum,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Jobs per throughput row.
    #[arg(default_value_t = 10_000)]
    jobs: usize,
    /// Jobs in flight per worker (= prefetch), the same for the ceiling's consumer.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Jobs in flight of the process-sandbox worker (= shared processes kept alive).
    #[arg(long, default_value_t = 8)]
    process_concurrency: usize,
    /// Jobs of the exclusive process row (a python3 start per job); default min(JOBS, 500).
    #[arg(long)]
    exclusive_jobs: Option<usize>,
    /// Publish rate of the latency rows, jobs/s.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Samples per latency row; default 2000 (10 s at 200/s).
    #[arg(long)]
    latency_jobs: Option<usize>,
    /// Alternating rounds of the ceiling and e2e rows; the best of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent HTTP clients of the POST /v1/jobs row.
    #[arg(long, default_value_t = 32)]
    http_clients: usize,
    /// Requests in flight of the POST /v1/jobs/batch row (1,000 jobs each).
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    /// Quick run: 500 jobs, 1 round, 200 latency samples, 50 exclusive jobs, no scaling.
    #[arg(long)]
    smoke: bool,
    /// Also the scaling table: 1, 2, 4 workers; concurrency 1, 8, 64.
    #[arg(long)]
    scaling: bool,
    /// Only these rows (comma list); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    rows: Vec<Row>,
    /// Where jobfleet-worker and jobfleet-master are; default: next to this binary.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Replicas that must acknowledge each transition (`redis_min_replicas` in the fleet
    /// file; 0: none). Point `JOBFLEET_REDIS_URL` at a primary that has replicas.
    #[arg(long, default_value_t = 0)]
    redis_min_replicas: u32,
    /// The queue type of the echo group and the ceiling's queue: `classic`, or `quorum`
    /// (replicated; what a RabbitMQ cluster runs, here measured on one node).
    #[arg(long, value_enum, default_value_t = BenchQueueType::Classic)]
    queue_type: BenchQueueType,
    /// Only the long row: this many echo jobs (e.g. 1000000) through one group in segments
    /// of 100,000, submitted with POST /v1/jobs/batch; each segment's throughput and the
    /// worker's and master's RSS after it.
    #[arg(long, value_name = "JOBS")]
    long: Option<usize>,
    /// Also run the peers over the same jobs (Celery, no-loss configuration); needs the
    /// virtualenv `scripts/bench --peers` installs.
    #[arg(long)]
    peers: bool,
    /// The Python with Celery installed, for `--peers`.
    #[arg(long, default_value = "target/peers/venv/bin/python")]
    peers_python: PathBuf,
    /// Reach the broker and Redis through loopback proxies that hold every chunk this many
    /// milliseconds each way (0: direct), as a network between machines would.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    link_delay: u64,
    /// Where wordcount.py and wordcount_shared.py are.
    #[arg(long, default_value = "examples/python/functions")]
    functions_dir: PathBuf,
}

impl RunArgs {
    fn resolved(mut self) -> RunArgs {
        if self.smoke {
            self.jobs = 500;
            self.rounds = 1;
            self.latency_jobs = Some(self.latency_jobs.unwrap_or(200));
            self.exclusive_jobs = Some(self.exclusive_jobs.unwrap_or(50));
            self.scaling = false;
        }
        if self.rows.is_empty() {
            self.rows = vec![
                Row::Ceiling,
                Row::E2e,
                Row::Http,
                Row::Batch,
                Row::Process,
                Row::Latency,
                Row::Delayed,
                Row::Flow,
                Row::Logs,
                Row::Steps,
                Row::Memory,
            ];
        }
        self
    }

    fn wants(&self, row: Row) -> bool {
        self.rows.contains(&row)
    }

    /// Steps of the steps row's chain: JOBS / 50 (200 by default), 20 to 5,000.
    fn workflow_steps(&self) -> usize {
        (self.jobs / 50).clamp(20, 5_000)
    }

    fn warmup(&self) -> usize {
        self.jobs.clamp(1, 200)
    }

    /// Long enough for a slow, loaded machine; short enough that a hang ends.
    fn timeout(&self, jobs: usize) -> Duration {
        Duration::from_secs(60) + Duration::from_millis(jobs as u64 * 20)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = binary::block_on(async move {
        let outcome = match cli.command {
            Command::CeilingConsumer {
                amqp_url,
                namespace,
                concurrency,
            } => ceiling::consume(&amqp_url, Topology::new(namespace), concurrency).await,
            Command::Run(args) => run(args.resolved()).await,
        };
        // `{:#}`: the error with its causes.
        outcome.map_err(|e| Exit::failure(format_args!("{e:#}")))
    });
    binary::exit_code("jobfleet-bench", outcome)
}

async fn run(args: RunArgs) -> Result<()> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let functions_dir = std::fs::canonicalize(&args.functions_dir)
        .with_context(|| format!("--functions-dir {}", args.functions_dir.display()))?;
    let links = match args.link_delay {
        0 => None,
        ms => {
            let env = jobfleet_common::config::Config::load(None, jobfleet_common::config::process_env)?;
            let delay = Duration::from_millis(ms);
            Some(links::Links::start(&env.amqp_url, &env.redis_url, delay).await?)
        }
    };
    let proxied = links
        .as_ref()
        .map(|l| (l.proxied_broker_url(), l.proxied_redis_url()));
    let mut fleet = Fleet::new(
        bin_dir,
        &functions_dir,
        args.redis_min_replicas,
        args.queue_type.into(),
        proxied,
    )?;
    let mut report = Report::new(
        args.jobs,
        args.concurrency,
        args.process_concurrency,
        args.rate,
        fleet.namespace(),
    );
    report.redis_min_replicas = args.redis_min_replicas;
    report.link_delay_ms = args.link_delay;
    report.queue_type = QueueType::from(args.queue_type).as_str();
    eprintln!(
        "jobfleet-bench: namespace {}, logs in {}",
        fleet.namespace(),
        fleet.log_dir().display()
    );
    let rows = async {
        match args.long {
            Some(total) => {
                report.long = long_row::measure(&mut fleet, total, args.concurrency).await?;
                Ok(())
            }
            None => measure_all(&mut fleet, &args, &mut report).await,
        }
    };
    let measured = tokio::select! {
        measured = rows => measured,
        _ = stop_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    // Children are killed by now (dropped); take their queues, exchanges and keys along.
    fleet.cleanup().await;
    report.finish();
    // What was measured before a failure is still worth seeing.
    print!("{report}");
    measured
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn echo_jobs(count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|i| JobMessage::new(ECHO_GROUP, "echo", json!({"i": i})))
        .collect()
}

fn ceiling_jobs(count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|i| ceiling::Client::job(json!({"i": i})))
        .collect()
}

fn wordcount_jobs(function: &str, count: usize) -> Vec<JobMessage> {
    (0..count)
        .map(|i| {
            JobMessage::new(
                PROCESS_GROUP,
                function,
                json!({"text": format!("the quick brown fox {i} jumps over the lazy dog")}),
            )
        })
        .collect()
}

/// Throughput of `jobs` jobs made by `make` after a warm-up of `args.warmup()` more, all
/// published with `publish` and received through `results`; also the measured jobs' ids.
async fn warm_throughput<P, Fut>(
    results: ResultSubscriber,
    args: &RunArgs,
    make: fn(usize) -> Vec<JobMessage>,
    jobs: usize,
    publish: P,
) -> Result<(Throughput, Vec<String>)>
where
    P: Fn(Vec<JobMessage>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let warmup = args.warmup();
    let (_, results) = measure::throughput(results, make(warmup), args.timeout(warmup), &publish).await?;
    let batch = make(jobs);
    let ids = batch.iter().map(|j| j.id.clone()).collect();
    let (row, _) = measure::throughput(results, batch, args.timeout(jobs), publish).await?;
    Ok((row, ids))
}

/// Ceiling throughput: warm-up, then `jobs` jobs through `consumers` consumer processes.
async fn ceiling_row(
    fleet: &mut Fleet,
    args: &RunArgs,
    jobs: usize,
    consumers: usize,
    concurrency: usize,
) -> Result<Throughput> {
    let client =
        ceiling::Client::connect(&fleet.config.amqp_url, fleet.ceiling.clone(), fleet.queue_type).await?;
    let mut procs = Vec::new();
    for _ in 0..consumers {
        procs.push(fleet.ceiling_consumer(concurrency).await?);
    }
    let results = ResultSubscriber::connect(&fleet.config.amqp_url, fleet.ceiling.clone(), &["#"]).await?;
    let (row, _) = warm_throughput(results, args, ceiling_jobs, jobs, |jobs| {
        measure::publish_ceiling(&client, jobs)
    })
    .await?;
    for proc in procs {
        proc.stop(Duration::from_secs(5)).await;
    }
    Ok(row)
}

/// jobfleet end to end through the client library: warm-up, then `jobs` echo jobs run by
/// `workers` worker processes; every record must be `finished`.
async fn e2e_row(
    fleet: &mut Fleet,
    args: &RunArgs,
    jobs: usize,
    workers: usize,
    concurrency: usize,
) -> Result<Throughput> {
    let mut procs = Vec::new();
    for _ in 0..workers {
        procs.push(fleet.worker(ECHO_GROUP, concurrency).await?);
    }
    let producer = Producer::connect(&fleet.config).await?;
    let results = ResultSubscriber::connect(
        &fleet.config.amqp_url,
        fleet.topology.clone(),
        &["default.echo.#"],
    )
    .await?;
    let (row, ids) = warm_throughput(results, args, echo_jobs, jobs, |jobs| {
        measure::publish_client(&producer, jobs)
    })
    .await?;
    measure::check_recorded(&fleet.coordinator, &ids).await?;
    for proc in procs {
        proc.stop(Duration::from_secs(10)).await;
    }
    Ok(row)
}

async fn measure_all(fleet: &mut Fleet, args: &RunArgs, report: &mut Report) -> Result<()> {
    let jobs = args.jobs;
    let timeout = args.timeout(jobs);
    let amqp_url = fleet.config.amqp_url.clone();
    let services = fleet.services();

    // 1 and 2. The ceiling (its consumer in its own process) and jobfleet end to end (a
    // worker process, the client library's producer and result subscriber), in alternating
    // rounds so that both see the same machine; the best round of each counts.
    let ceiling_client =
        Arc::new(ceiling::Client::connect(&amqp_url, fleet.ceiling.clone(), fleet.queue_type).await?);
    let ceiling_consumer = fleet.ceiling_consumer(args.concurrency).await?;
    let mut ceiling_results = ResultSubscriber::connect(&amqp_url, fleet.ceiling.clone(), &["#"]).await?;
    let mut worker = fleet.worker(ECHO_GROUP, args.concurrency).await?;
    let producer = Arc::new(Producer::connect(&fleet.config).await?);
    let mut results =
        ResultSubscriber::connect(&amqp_url, fleet.topology.clone(), &["default.echo.#"]).await?;
    if args.wants(Row::Ceiling) {
        (_, ceiling_results) =
            measure::throughput(ceiling_results, ceiling_jobs(args.warmup()), timeout, |jobs| {
                measure::publish_ceiling(&ceiling_client, jobs)
            })
            .await?;
    }
    if args.wants(Row::E2e) {
        (_, results) = measure::throughput(results, echo_jobs(args.warmup()), timeout, |jobs| {
            measure::publish_client(&producer, jobs)
        })
        .await?;
    }
    for round in 1..=args.rounds.max(1) {
        if args.wants(Row::Ceiling) {
            let meter = Meter::start(&services, &[Tracked::new("consumer", ceiling_consumer.pid)]);
            let (row, warm) = measure::throughput(ceiling_results, ceiling_jobs(jobs), timeout, |jobs| {
                measure::publish_ceiling(&ceiling_client, jobs)
            })
            .await?;
            ceiling_results = warm;
            report.add_ceiling(row, meter.per_job(jobs));
            eprintln!("jobfleet-bench: round {round}: ceiling {:.0} jobs/s", row.rate());
        }
        if args.wants(Row::E2e) {
            let batch = echo_jobs(jobs);
            let ids: Vec<String> = batch.iter().map(|j| j.id.clone()).collect();
            let meter = Meter::start(&services, &[Tracked::new("worker", worker.pid)]);
            let (row, warm) = measure::throughput(results, batch, timeout, |jobs| {
                measure::publish_client(&producer, jobs)
            })
            .await?;
            results = warm;
            report.add_e2e(row, meter.per_job(jobs));
            measure::check_recorded(&fleet.coordinator, &ids).await?;
            eprintln!("jobfleet-bench: round {round}: e2e {:.0} jobs/s", row.rate());
        }
    }

    // 3. The same through POST /v1/jobs on a release master process, and on one with API
    // tokens on (every request sends one), in alternating rounds: the cost of auth.
    if args.wants(Row::Http) {
        let (master, url) = fleet.master(false).await?;
        let (auth_master, auth_url) = fleet.master(true).await?;
        let token = Some(fleet::BENCH_TOKEN);
        for (url, token) in [(&url, None), (&auth_url, token)] {
            let warmup = echo_jobs(args.warmup());
            (_, results) = measure::throughput(results, warmup, timeout, |jobs| {
                measure::submit_http(url, jobs, args.http_clients, token)
            })
            .await?;
        }
        for round in 1..=args.rounds.max(1) {
            for (url, token, pid) in [(&url, None, master.pid), (&auth_url, token, auth_master.pid)] {
                let batch = echo_jobs(jobs);
                let ids: Vec<String> = batch.iter().map(|j| j.id.clone()).collect();
                let tracked = [Tracked::new("worker", worker.pid), Tracked::new("master", pid)];
                let meter = Meter::start(&services, &tracked);
                let (row, warm) = measure::throughput(results, batch, timeout, |jobs| {
                    measure::submit_http(url, jobs, args.http_clients, token)
                })
                .await?;
                results = warm;
                measure::check_recorded(&fleet.coordinator, &ids).await?;
                report.add_http(row, token.is_some(), meter.per_job(jobs));
                let which = if token.is_some() {
                    "http with token"
                } else {
                    "http"
                };
                eprintln!("jobfleet-bench: round {round}: {which} {:.0} jobs/s", row.rate());
            }
        }
        report.master_rss = master.stop(Duration::from_secs(10)).await;
        auth_master.stop(Duration::from_secs(10)).await;
    }

    // 3b. The same through POST /v1/jobs/batch, 1,000 jobs a request.
    if args.wants(Row::Batch) {
        results = measure_batch(fleet, args, results, worker.pid, report).await?;
    }

    // 4. The process sandbox, exclusive and shared, on its own worker.
    if args.wants(Row::Process) {
        let process_worker = fleet.worker(PROCESS_GROUP, args.process_concurrency).await?;
        let warmup = args.process_concurrency * 2;
        let mut py = ResultSubscriber::connect(&amqp_url, fleet.topology.clone(), &["py.#"]).await?;
        for (function, count) in [
            (EXCLUSIVE_FUNCTION, args.exclusive_jobs.unwrap_or(jobs.min(500))),
            (SHARED_FUNCTION, jobs),
        ] {
            let (_, warm) = measure::throughput(py, wordcount_jobs(function, warmup), timeout, |jobs| {
                measure::publish_client(&producer, jobs)
            })
            .await?;
            let batch = wordcount_jobs(function, count);
            let ids: Vec<String> = batch.iter().map(|j| j.id.clone()).collect();
            let meter = Meter::start(&services, &[Tracked::new("worker", process_worker.pid)]);
            let (row, warm) = measure::throughput(warm, batch, args.timeout(count * 10), |jobs| {
                measure::publish_client(&producer, jobs)
            })
            .await?;
            report.cpu.push((
                if function == EXCLUSIVE_FUNCTION {
                    "process exclusive"
                } else {
                    "process shared"
                },
                meter.per_job(count),
            ));
            measure::check_recorded(&fleet.coordinator, &ids).await?;
            py = warm;
            eprintln!("jobfleet-bench: {function} {:.0} jobs/s", row.rate());
            if function == EXCLUSIVE_FUNCTION {
                report.exclusive = Some(row);
            } else {
                report.shared = Some(row);
            }
        }
        report.process_worker_rss = process_worker.stop(Duration::from_secs(10)).await;
    }

    // 5. Latency at a fixed low rate: publish → result received, ceiling then jobfleet.
    if args.wants(Row::Latency) {
        let count = args.latency_jobs.unwrap_or(2000);
        let client = ceiling_client.clone();
        let (row, _) = measure::latency(
            ceiling_results,
            count,
            args.rate,
            ceiling::Client::job,
            move |job| {
                let client = client.clone();
                async move { client.publish_many(std::slice::from_ref(&job)).await }
            },
        )
        .await?;
        report.ceiling_latency = Some(row);
        let make = |args: Value| JobMessage::new(ECHO_GROUP, "echo", args);
        let producer = producer.clone();
        let (row, _) = measure::latency(results, count, args.rate, make, move |job| {
            let producer = producer.clone();
            async move { Ok(producer.publish(&job).await?) }
        })
        .await?;
        report.e2e_latency = Some(row);
    }

    // 6. Delayed jobs, published by a release master's scheduler (SPEC §9).
    if args.wants(Row::Delayed) {
        let rows = LeaderRows::start(fleet, args, &producer).await?;
        measure_delayed(fleet, rows, report).await?;
    }

    // 7. Flow control's cost (SPEC §9), limits set at run time on the echo group.
    if args.wants(Row::Flow) {
        let rows = LeaderRows::start(fleet, args, &producer).await?;
        measure_flow(fleet, rows, report).await?;
    }

    // 7b. What job logs cost the e2e row (SPEC §10).
    if args.wants(Row::Logs) {
        let plan = logs::Plan {
            jobs,
            rounds: args.rounds,
            warmup: args.warmup(),
            timeout,
            services: services.clone(),
            worker_pid: worker.pid,
        };
        report.logs = Some(logs::measure(fleet, &producer, plan).await?);
    }

    // 7c. Workflow steps: a step's end to its dependents' start (SPEC §10).
    if args.wants(Row::Steps) {
        report.steps = steps::measure(fleet, args.workflow_steps(), timeout).await?;
    }

    // 8. Redis memory per queued and per ended small job.
    if args.wants(Row::Memory) {
        let per_job = memory::measure(fleet, &producer, jobs, args.concurrency, timeout).await?;
        report.memory = Some(per_job);
    }

    // 9. Peers over the same jobs.
    if args.peers {
        let celery = peers::celery(
            &args.peers_python,
            &amqp_url,
            &fleet.config.redis_url,
            jobs,
            args.concurrency,
        )
        .await?;
        eprintln!("jobfleet-bench: Celery {:.0} jobs/s", celery.rate());
        report.celery = Some(celery);
    }

    // 10. Peak RSS of the worker that ran every echo row.
    worker.check_alive()?;
    report.worker_rss = worker.stop(Duration::from_secs(10)).await;
    ceiling_consumer.stop(Duration::from_secs(5)).await;

    if args.scaling {
        measure_scaling(fleet, args, report).await?;
    }
    Ok(())
}

/// The POST /v1/jobs/batch row on a release master process: warm-up, then best of
/// `rounds`; every record must be `finished`. The subscriber comes back for the next rows.
async fn measure_batch(
    fleet: &mut Fleet,
    args: &RunArgs,
    mut results: ResultSubscriber,
    worker_pid: u32,
    report: &mut Report,
) -> Result<ResultSubscriber> {
    let timeout = args.timeout(args.jobs);
    let (master, url) = fleet.master(false).await?;
    (_, results) = measure::throughput(results, echo_jobs(args.warmup()), timeout, |jobs| {
        measure::submit_batches(&url, jobs, args.batch_clients)
    })
    .await?;
    let services = fleet.services();
    for round in 1..=args.rounds.max(1) {
        let batch = echo_jobs(args.jobs);
        let ids: Vec<String> = batch.iter().map(|j| j.id.clone()).collect();
        let tracked = [
            Tracked::new("worker", worker_pid),
            Tracked::new("master", master.pid),
        ];
        let meter = Meter::start(&services, &tracked);
        let (row, warm) = measure::throughput(results, batch, timeout, |jobs| {
            measure::submit_batches(&url, jobs, args.batch_clients)
        })
        .await?;
        results = warm;
        measure::check_recorded(&fleet.coordinator, &ids).await?;
        report.add_batch(row, meter.per_job(args.jobs));
        eprintln!(
            "jobfleet-bench: round {round}: http batch {:.0} jobs/s",
            row.rate()
        );
    }
    master.stop(Duration::from_secs(10)).await;
    Ok(results)
}

/// The delayed rows: immediate throughput (client library) without, then with
/// [`delayed::WAITING`] delayed jobs due in an hour, best of `rounds` each; then the start
/// lateness of delayed jobs due while immediate jobs keep the worker busy.
async fn measure_delayed(fleet: &mut Fleet, mut rows: LeaderRows<'_>, report: &mut Report) -> Result<()> {
    let warmup = rows.args.warmup();
    (_, rows) = rows.round(warmup).await?;
    for waiting in [false, true] {
        if waiting {
            let started = std::time::Instant::now();
            let in_an_hour = jobfleet_common::now_ms() + 3_600_000;
            delayed::schedule(&fleet.coordinator, ECHO_GROUP, delayed::WAITING, |_| in_an_hour).await?;
            report.delayed_scheduling = Some(started.elapsed());
            eprintln!("jobfleet-bench: {} delayed jobs scheduled", delayed::WAITING);
        }
        rows = rows
            .rounds(|round, row| {
                report.add_delayed(row, waiting);
                eprintln!(
                    "jobfleet-bench: round {round}: e2e {} delayed waiting {:.0} jobs/s",
                    if waiting { delayed::WAITING } else { 0 },
                    row.rate()
                );
            })
            .await?;
    }
    let LeaderRows {
        master,
        args,
        producer,
        timeout,
        results,
    } = rows;
    let jobs = echo_jobs(args.jobs);
    let (late, _, _) =
        delayed::lateness(&fleet.coordinator, ECHO_GROUP, producer, results, jobs, timeout).await?;
    report.lateness = Some(late);
    master.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// What the rows that need a leader share: a master started for them, their timeout, and a
/// subscriber to the results of the echo jobs `producer` publishes through the client library.
struct LeaderRows<'a> {
    master: fleet::Proc,
    args: &'a RunArgs,
    producer: &'a Producer,
    timeout: Duration,
    results: ResultSubscriber,
}

impl<'a> LeaderRows<'a> {
    /// Starts the master and subscribes to the echo group's results.
    async fn start(fleet: &mut Fleet, args: &'a RunArgs, producer: &'a Producer) -> Result<Self> {
        let (master, _) = fleet.master(false).await?;
        let patterns = ["default.echo.#"];
        let results =
            ResultSubscriber::connect(&fleet.config.amqp_url, fleet.topology.clone(), &patterns).await?;
        Ok(LeaderRows {
            master,
            args,
            producer,
            timeout: args.timeout(args.jobs),
            results,
        })
    }

    /// One throughput round of `jobs` echo jobs; the rows come back for the next round.
    async fn round(self, jobs: usize) -> Result<(Throughput, Self)> {
        let producer = self.producer;
        let (row, results) = measure::throughput(self.results, echo_jobs(jobs), self.timeout, |jobs| {
            measure::publish_client(producer, jobs)
        })
        .await?;
        Ok((row, LeaderRows { results, ..self }))
    }

    /// `rounds` rounds of `jobs` echo jobs, each row handed to `add` with its round number.
    async fn rounds(mut self, mut add: impl FnMut(usize, Throughput)) -> Result<Self> {
        let (rounds, jobs) = (self.args.rounds.max(1), self.args.jobs);
        for round in 1..=rounds {
            let row;
            (row, self) = self.round(jobs).await?;
            add(round, row);
        }
        Ok(self)
    }
}

/// The flow-control rows: e2e throughput (client library) without limits, then with each
/// limit set at run time on the echo group, best of `rounds` each, with a master releasing
/// held jobs.
async fn measure_flow(fleet: &mut Fleet, mut rows: LeaderRows<'_>, report: &mut Report) -> Result<()> {
    let set = |max_running, rate_limit| LimitsChange {
        max_running,
        rate_limit,
        limit_key: Change::Keep,
    };
    let settings = [
        ("no limit", set(Change::Lift, Change::Lift)),
        ("max_running = 64", set(Change::Set(64), Change::Lift)),
        (
            "rate_limit = 100000/s",
            set(Change::Lift, Change::Set("100000/s".parse()?)),
        ),
    ];
    for (label, change) in settings {
        fleet.coordinator.change_limits(ECHO_GROUP, &change).await?;
        rows = rows
            .rounds(|round, row| {
                report.add_flow(label, row);
                eprintln!(
                    "jobfleet-bench: round {round}: e2e {label} {:.0} jobs/s",
                    row.rate()
                );
            })
            .await?;
    }
    fleet.coordinator.reset_limits(ECHO_GROUP).await?;
    rows.master.stop(Duration::from_secs(10)).await;
    Ok(())
}

async fn measure_scaling(fleet: &mut Fleet, args: &RunArgs, report: &mut Report) -> Result<()> {
    let jobs = args.jobs;
    for workers in [1, 2, 4] {
        let ceiling = ceiling_row(fleet, args, jobs, workers, args.concurrency).await?;
        let e2e = e2e_row(fleet, args, jobs, workers, args.concurrency).await?;
        eprintln!(
            "jobfleet-bench: {workers} workers: ceiling {:.0}, e2e {:.0} jobs/s",
            ceiling.rate(),
            e2e.rate()
        );
        report.scaling.push((workers, args.concurrency, ceiling, e2e));
    }
    for concurrency in [1, 8, 64] {
        let ceiling = ceiling_row(fleet, args, jobs, 1, concurrency).await?;
        let e2e = e2e_row(fleet, args, jobs, 1, concurrency).await?;
        eprintln!(
            "jobfleet-bench: concurrency {concurrency}: ceiling {:.0}, e2e {:.0} jobs/s",
            ceiling.rate(),
            e2e.rate()
        );
        report.scaling.push((1, concurrency, ceiling, e2e));
    }
    Ok(())
}
