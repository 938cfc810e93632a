//! `jobfleet-master`: the HTTP API, the fleet monitor and the master metrics.

use clap::Parser;
use jobfleet_common::config::{self, Config};
use jobfleet_common::telemetry::{self, LogFormat};
use jobfleet_master::MonitorTimings;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    let args = Args::parse();
    telemetry::init(args.log_format);
    let mut config = match Config::load(args.config.as_deref(), config::process_env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jobfleet-master: {e}");
            return ExitCode::from(64);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Err(e) = jobfleet_common::schema::ArgSchemas::compile(&config) {
        eprintln!("jobfleet-master: {e}");
        return ExitCode::from(64);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("jobfleet-master: cannot listen on {}: {e}", config.listen);
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(telemetry::shutdown_on_signals(shutdown.clone()));
        match jobfleet_master::run(config, listener, MonitorTimings::default(), shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jobfleet-master: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
