//! `jobfleet-worker`: consumes the configured groups and runs their jobs, with the
//! built-in functions registered.

use clap::Parser;
use jobfleet_common::binary::{self, Exit};
use jobfleet_common::config::{self, Config};
use jobfleet_common::telemetry::{self, LogFormat};
use jobfleet_worker::{Worker, WorkerBuilder};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// jobfleet worker: runs the jobs of one or more consumer groups.
#[derive(Parser, Debug)]
#[command(name = "jobfleet-worker", version)]
struct Args {
    /// Fleet configuration file (TOML).
    #[arg(long, env = "JOBFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// A group to consume (repeatable); default `default`.
    #[arg(long = "group", env = "JOBFLEET_GROUPS", value_delimiter = ',')]
    groups: Vec<String>,
    /// Jobs in flight at once (= prefetch); default: number of CPUs.
    #[arg(long, env = "JOBFLEET_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Address of the worker's /metrics endpoint, or `off`.
    #[arg(long, env = "JOBFLEET_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// How long a stopping worker lets running jobs finish before handing them back.
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    drain_timeout: Duration,
    /// How often the worker refreshes its record in Redis.
    #[arg(long, default_value = "2s", value_parser = humantime_duration)]
    heartbeat_interval: Duration,
    /// How long the record lives without a refresh; after that, the worker's started jobs
    /// may be taken over by other workers.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    heartbeat_ttl: Duration,
    /// How long a copy of a job that another live worker runs is parked before a new look.
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    hold_delay: Duration,
    /// How long a running job holds its delivery before a parked copy replaces it (keep it
    /// below RabbitMQ's consumer_timeout).
    #[arg(long, default_value = "15m", value_parser = humantime_duration)]
    long_job_handoff: Duration,
    /// How often an idle worker checks that its queues hold no job it is not given (two
    /// such checks in a row end the broker session; three stalled sessions stop the worker).
    #[arg(long, default_value = "15s", value_parser = humantime_duration)]
    stall_check: Duration,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    jobfleet_common::config::parse_duration(text)
}

/// The metrics address: `off` (no server), `IP:PORT`, or `HOST:PORT` resolved once.
fn metrics_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if let Ok(addr) = text.parse() {
        return Ok(Some(addr));
    }
    let invalid = || format!("--metrics-listen {text:?}: expected IP:PORT, HOST:PORT or off");
    text.to_socket_addrs()
        .map_err(|_| invalid())?
        .next()
        .map(Some)
        .ok_or_else(invalid)
}

fn main() -> ExitCode {
    binary::exit_code("jobfleet-worker", run(Args::parse()))
}

/// Loads the configuration, then runs the worker until a shutdown signal.
fn run(args: Args) -> Result<(), Exit> {
    telemetry::init(args.log_format);
    let config = Config::load(args.config.as_deref(), config::process_env).map_err(Exit::usage)?;
    let metrics_listen = metrics_address(&args.metrics_listen).map_err(Exit::usage)?;
    binary::block_on(async move {
        let worker = builder(&args, config, metrics_listen)
            .build()
            .map_err(Exit::usage)?;
        let shutdown = binary::shutdown_on_signals();
        worker.run(shutdown).await.map_err(Exit::failure)
    })
}

/// The worker as the command line asks for it, with the built-in functions.
fn builder(args: &Args, config: Config, metrics_listen: Option<SocketAddr>) -> WorkerBuilder {
    let mut builder = Worker::builder()
        .config(config)
        .builtins()
        .drain_timeout(args.drain_timeout)
        .heartbeat(args.heartbeat_interval, args.heartbeat_ttl)
        .hold_delay(args.hold_delay)
        .long_job_handoff(args.long_job_handoff)
        .stall_check(args.stall_check);
    for group in &args.groups {
        builder = builder.group(group.trim());
    }
    if let Some(concurrency) = args.concurrency {
        builder = builder.concurrency(concurrency);
    }
    if let Some(addr) = metrics_listen {
        builder = builder.metrics_listen(addr);
    }
    builder
}
