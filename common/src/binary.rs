//! What the `main` of every long-running jobfleet binary shares: its exit statuses, its
//! tokio runtime and its shutdown signal, so that each `main` only parses and wires.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The exit status of an unusable configuration or command line (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Why a binary stops before its work is done: the line it prints and its exit status.
#[derive(Debug)]
pub struct Exit {
    /// Only ever printed, as the process's last word: no caller branches on it.
    message: String,
    code: u8,
}

impl Exit {
    /// An unusable configuration or command line: exit status 64, before anything starts.
    pub fn usage(error: impl Display) -> Exit {
        Exit {
            message: error.to_string(),
            code: EXIT_USAGE,
        }
    }

    /// A failure while starting or running: exit status 1.
    pub fn failure(error: impl Display) -> Exit {
        Exit {
            message: error.to_string(),
            code: 1,
        }
    }
}

/// The exit status of `outcome`; an [`Exit`] is first printed as `program: message` on stderr.
pub fn exit_code(program: &str, outcome: Result<(), Exit>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            eprintln!("{program}: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}

/// Runs `work` to its end on a new multi-threaded tokio runtime.
pub fn block_on(work: impl Future<Output = Result<(), Exit>>) -> Result<(), Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit::failure(format_args!("cannot start the runtime: {e}")))?;
    runtime.block_on(work)
}

/// A token that the first SIGTERM or SIGINT cancels (a second one exits at once, see
/// [`crate::telemetry::shutdown_on_signals`]). Call it inside the runtime.
pub fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::telemetry::shutdown_on_signals(shutdown.clone()));
    shutdown
}
