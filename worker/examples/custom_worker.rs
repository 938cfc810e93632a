//! A custom jobfleet worker: the worker library with in-process functions of its own,
//! `reverse` (`{text}` → the text reversed) and `add` (`{a, b}` → their sum), instead of
//! the built-ins of the `jobfleet-worker` binary.
//!
//! ```text
//! cargo run -p jobfleet-worker --example custom_worker -- --config fleet.toml --group text
//! ```
//!
//! with a fleet config that declares the group and its functions (the master validates
//! submits against it):
//!
//! ```toml
//! [groups.text.functions.reverse]
//! [groups.text.functions.add]
//! timeout = "5s"
//! ```
//!
//! Environment as for `jobfleet-worker`: JOBFLEET_CONFIG, JOBFLEET_NAMESPACE,
//! JOBFLEET_AMQP_URL, JOBFLEET_REDIS_URL, JOBFLEET_GROUPS. Stops cleanly on SIGINT/SIGTERM.

use clap::Parser;
use jobfleet_common::binary::{self, Exit};
use jobfleet_common::config::{self, Config};
use jobfleet_common::telemetry::{self, LogFormat};
use jobfleet_worker::{JobError, Worker};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// A worker with the `reverse` and `add` functions.
#[derive(Parser, Debug)]
struct Args {
    /// Fleet configuration file (TOML).
    #[arg(long, env = "JOBFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// A group to consume (repeatable); default `text`.
    #[arg(long = "group", env = "JOBFLEET_GROUPS", value_delimiter = ',')]
    groups: Vec<String>,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// `reverse`'s args.
#[derive(Debug, Deserialize)]
struct ReverseArgs {
    text: String,
}

/// `add`'s args.
#[derive(Debug, Deserialize)]
struct AddArgs {
    a: f64,
    b: f64,
}

/// The text with its characters in reverse order.
fn reverse(args: ReverseArgs) -> String {
    args.text.chars().rev().collect()
}

/// The sum, or a function error (not an infrastructure failure) when it overflows.
fn add(args: AddArgs) -> Result<f64, JobError> {
    let sum = args.a + args.b;
    if !sum.is_finite() {
        return Err(JobError::function(format!(
            "{} + {} is not a finite number",
            args.a, args.b
        )));
    }
    Ok(sum)
}

fn main() -> ExitCode {
    binary::exit_code("custom_worker", run(Args::parse()))
}

/// Loads the configuration, then runs the worker until a shutdown signal.
fn run(args: Args) -> Result<(), Exit> {
    telemetry::init(LogFormat::Text);
    let config = Config::load(args.config.as_deref(), config::process_env).map_err(Exit::usage)?;
    let groups = if args.groups.is_empty() {
        vec!["text".to_string()]
    } else {
        args.groups
    };
    binary::block_on(async move {
        let mut builder = Worker::builder()
            .config(config)
            .concurrency(args.concurrency)
            // Wrong args (say `{"text": 1}`) fail the job with `invalid_args` before these run.
            .function("reverse", |args: ReverseArgs| async move {
                Ok::<_, JobError>(reverse(args))
            })
            .function("add", |args: AddArgs| async move { add(args) });
        for group in groups {
            builder = builder.group(group.trim());
        }
        let worker = builder.build().map_err(Exit::usage)?;
        worker
            .run(binary::shutdown_on_signals())
            .await
            .map_err(Exit::failure)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_functions_compute() {
        assert_eq!(
            reverse(ReverseArgs {
                text: "jobfleet".into()
            }),
            "teelfboj"
        );
        assert_eq!(add(AddArgs { a: 2.0, b: 3.5 }).unwrap(), 5.5);
        assert!(add(AddArgs {
            a: f64::MAX,
            b: f64::MAX
        })
        .is_err());
    }
}
