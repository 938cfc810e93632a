//! The `jobfleet` command-line client: submit jobs to a master over its HTTP API and follow
//! them (`watch` reads the result topic from RabbitMQ directly). It reads the API's
//! documents as `jobfleet_api` defines them, the same types the master serves. The binary
//! `src/main.rs` only calls [`parse_and_run`]; docs/cli.md describes every command.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod events;
pub mod output;

pub use args::Cli;
pub use error::{exit, CliError};

use std::process::ExitCode;

/// Parses the process's command line and runs it. Help and version print as usual; a
/// usage error is one line on stderr and exit status 2.
pub fn parse_and_run() -> ExitCode {
    use clap::error::ErrorKind;
    use clap::Parser;
    match Cli::try_parse() {
        Ok(cli) => main(cli),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("jobfleet: {}", args::usage_line(&e));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Runs a parsed command line to its exit status, printing a failure as one line on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("jobfleet: cannot start the async runtime: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_silent() {
                eprintln!("jobfleet: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
