//! The commands: each takes its parsed arguments and a [`Context`], prints its output and
//! returns `Ok` or the [`CliError`] that sets the exit status.

pub mod bulk;
pub mod fleet;
pub mod jobs;
pub mod submit;
pub mod watch;

use crate::args::{Cli, Command};
use crate::client::MasterClient;
use crate::error::CliError;
use jobfleet_common::tls::{self, TlsConfig};
use std::sync::Arc;

/// What every command gets: the master client and the output mode.
#[derive(Debug, Clone)]
pub struct Context {
    /// The master's API.
    pub client: MasterClient,
    /// Print JSON instead of text.
    pub json: bool,
    /// What an `amqps://` broker is trusted with (`--ca-file`).
    pub broker_tls: TlsConfig,
}

/// Runs the command of a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let tls = tls_config(&cli)?;
    let context = Context {
        client: MasterClient::with_tls(cli.master, tls)?,
        json: cli.json,
        broker_tls: TlsConfig::trusting(cli.ca_file),
    };
    match cli.command {
        Command::Submit(args) if args.bulk.is_some() => bulk::run(&context, args).await,
        Command::Submit(args) => submit::run(&context, args).await,
        Command::Status { id } => jobs::status(&context, &id).await,
        Command::List(args) => jobs::list(&context, &args).await,
        Command::Cancel { id } => jobs::cancel(&context, &id).await,
        Command::Watch(args) => watch::run(&context, &args).await,
        Command::Groups => fleet::groups(&context).await,
        Command::Workers => fleet::workers(&context).await,
        Command::Reset { group } => fleet::reset(&context, &group).await,
    }
}

/// The TLS configuration of an `https://` master: the CA of `--ca-file`, or the system roots.
/// A `--ca-file` is read (and checked) whatever the scheme, so a wrong path never goes
/// unnoticed; a plain `http://` master without one needs none.
pub fn tls_config(cli: &Cli) -> Result<Option<Arc<rustls::ClientConfig>>, CliError> {
    if cli.master.scheme() != "https" && cli.ca_file.is_none() {
        return Ok(None);
    }
    Ok(Some(tls::client_config_trusting(
        cli.ca_file.as_deref(),
        "--ca-file",
    )?))
}
