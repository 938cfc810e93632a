//! `jobfleet-soak`: a long seeded run of the fault-injection suite (see
//! docs/reliability.md); prints the figures and every violation, exits 1 if any.

use clap::Parser;
use jobfleet_tests::nemesis::{self, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the workload, the nemesis and the checker against a fleet of real processes on a
/// private RabbitMQ and Redis.
#[derive(Parser, Debug)]
#[command(name = "jobfleet-soak")]
struct Args {
    /// Minutes of faults.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seed of the workload and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds after the faults stop within which every job must have settled.
    #[arg(long, default_value_t = 60)]
    bound: u64,
    /// The fleet's `corrector_bound` in seconds (keep it below `--bound`).
    #[arg(long, default_value_t = 20)]
    corrector_bound: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Master processes.
    #[arg(long, default_value_t = 2)]
    masters: usize,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Directory for the log and the process logs (default: a new temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings {
        bound: Duration::from_secs(args.bound),
        corrector_bound: Duration::from_secs(args.corrector_bound),
        workers: args.workers,
        masters: args.masters,
        clients: args.clients,
        dir: args.dir,
        ..Settings::soak(args.seed, args.minutes)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(nemesis::run(&settings));
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
