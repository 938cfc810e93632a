//! `jobfleet`: the command-line client of a jobfleet master (see docs/cli.md).

fn main() -> std::process::ExitCode {
    jobfleet_cli::parse_and_run()
}
