//! The fault-injection suite (Jepsen style): a seeded [`workload`] against a fleet of real
//! processes, a [`faults`] nemesis, and an independent [`checker`]. [`run`] does one run
//! and returns its [`Report`]; `tests/tests/nemesis.rs` runs a short one, the
//! `jobfleet-soak` binary (`scripts/soak`) long ones. See docs/reliability.md.

pub mod api;
pub mod checker;
pub mod faults;
pub mod fleet;
pub mod history;
pub mod report;
pub mod rng;
mod run;
pub mod workload;

pub use report::Report;
pub use run::run;

use std::path::PathBuf;
use std::time::Duration;

/// The groups whose jobs never crash on purpose (checked for being broken by the faults).
pub const STEADY: &str = "steady";
/// The group with crashing functions (`max_failures` high; not checked for breaking).
pub const CRASHY: &str = "crashy";

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names the workload and the fault schedule.
    pub seed: u64,
    /// How long faults are injected (at least until every kind came up once).
    pub duration: Duration,
    /// How long after the faults stop every job must have settled (default 60 s). Keep
    /// it above `corrector_bound` plus the longest job: a job stranded just before the
    /// faults stop is republished by the corrector only after its bound.
    pub bound: Duration,
    /// The fleet's `corrector_bound` (default 20 s): how long the master's run-record
    /// corrector lets a record stay `queued` with no reachable message, or `started` by a
    /// dead worker, before it republishes the job.
    pub corrector_bound: Duration,
    /// Worker processes (each serves both groups).
    pub workers: usize,
    /// Master processes.
    pub masters: usize,
    /// Concurrent workload clients.
    pub clients: usize,
    /// Pause between a client's operations, in ms (low, high).
    pub pace_ms: (u64, u64),
    /// Jobs in flight per worker.
    pub concurrency: usize,
    /// Where the log and process logs go (default: a new temp directory).
    pub dir: Option<PathBuf>,
}

impl Settings {
    /// The short run of the test suite (about a minute of faults).
    pub fn short(seed: u64) -> Settings {
        Settings {
            seed,
            duration: Duration::from_secs(45),
            bound: Duration::from_secs(60),
            corrector_bound: Duration::from_secs(20),
            workers: 3,
            masters: 2,
            clients: 4,
            pace_ms: (100, 500),
            concurrency: 4,
            dir: None,
        }
    }

    /// A soak run of `minutes` minutes of faults.
    pub fn soak(seed: u64, minutes: u64) -> Settings {
        Settings {
            duration: Duration::from_secs(minutes * 60),
            ..Settings::short(seed)
        }
    }
}

/// The fleet's configuration: `steady` (echo, sleep, retried failures, process functions in
/// exclusive and shared mode) and `crashy` (crashes in-process and in a process, retried).
/// Timeouts are far above any fault's hold, so a frozen worker never times a job out.
fn fleet_toml(corrector_bound: Duration) -> String {
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/functions");
    format!(
        r#"
corrector_bound = "{corrector_ms}ms"

[groups.{STEADY}]
max_failures = 10
[groups.{STEADY}.functions.echo]
[groups.{STEADY}.functions.sleep]
timeout = "60s"
[groups.{STEADY}.functions.fail]
max_retries = 2
retry_backoff = "200ms"
[groups.{STEADY}.functions.wc]
sandbox = "process"
command = ["python3", "{exclusive}"]
timeout = "60s"
[groups.{STEADY}.functions.wc_shared]
sandbox = "process"
mode = "shared"
command = ["python3", "{shared}"]
timeout = "60s"

[groups.{CRASHY}]
max_failures = 100000
[groups.{CRASHY}.functions.echo]
[groups.{CRASHY}.functions.crash]
max_retries = 1
retry_backoff = "200ms"
[groups.{CRASHY}.functions.pcrash]
sandbox = "process"
command = ["python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
max_retries = 1
retry_backoff = "200ms"
timeout = "60s"
"#,
        corrector_ms = corrector_bound.as_millis(),
        exclusive = functions.join("wordcount.py").display(),
        shared = functions.join("wordcount_shared.py").display(),
    )
}
