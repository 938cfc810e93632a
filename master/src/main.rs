//! `jobfleet-master`: the HTTP API, the fleet monitor and the master metrics.

use clap::Parser;
use jobfleet_common::binary::{self, Exit};
use jobfleet_common::config::{self, Config};
use jobfleet_common::schema::ArgSchemas;
use jobfleet_common::telemetry::{self, LogFormat};
use jobfleet_master::MonitorTimings;
use std::path::PathBuf;
use std::process::ExitCode;

/// jobfleet master: serves the HTTP API and watches the fleet.
#[derive(Parser, Debug)]
#[command(name = "jobfleet-master", version)]
struct Args {
    /// Fleet configuration file (TOML).
    #[arg(long, env = "JOBFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP address to serve on.
    #[arg(long, env = "JOBFLEET_LISTEN")]
    listen: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    binary::exit_code("jobfleet-master", run(Args::parse()))
}

/// Loads and checks the configuration, then serves until a shutdown signal.
fn run(args: Args) -> Result<(), Exit> {
    telemetry::init(args.log_format);
    let mut config = Config::load(args.config.as_deref(), config::process_env).map_err(Exit::usage)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    ArgSchemas::compile(&config).map_err(Exit::usage)?;
    jobfleet_master::exposure::check(&config).map_err(Exit::usage)?;
    if let Some(https) = &config.https {
        https.validate().map_err(Exit::usage)?;
    }
    binary::block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| Exit::failure(format_args!("cannot listen on {}: {e}", config.listen)))?;
        let shutdown = binary::shutdown_on_signals();
        jobfleet_master::run(config, listener, MonitorTimings::default(), shutdown)
            .await
            .map_err(Exit::failure)
    })
}
