//! The commands: each takes its parsed arguments and a [`Context`], prints its output and
//! returns `Ok` or the [`CliError`] that sets the exit status.

pub mod access;
pub mod bulk;
pub mod filtered;
pub mod fleet;
pub mod follow;
pub mod jobs;
pub mod schedules;
pub mod submit;
pub mod watch;
pub mod workflows;

use crate::args::{Cli, Command, TokenCommand};
use crate::client::{decode, MasterClient};
use crate::error::CliError;
use crate::output;
use jobfleet_common::tls::{self, TlsConfig};
use serde::de::DeserializeOwned;
use serde_json::Value;
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

impl Context {
    /// Prints an answer of the master: as it came under `--json`, else decoded as a `T`
    /// (`what` names it in a decode error) and rendered by `text`. Returns the decoded
    /// answer in text mode, for what a command prints after it.
    pub fn print<T: DeserializeOwned>(
        &self,
        raw: &Value,
        what: &str,
        text: impl FnOnce(&T) -> String,
    ) -> Result<Option<T>, CliError> {
        if self.json {
            output::json(raw, true)?;
            return Ok(None);
        }
        let answer: T = decode(raw, what)?;
        output::line(&text(&answer))?;
        Ok(Some(answer))
    }
}

/// Runs the command of a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let tls = tls_config(&cli)?;
    let context = Context {
        client: MasterClient::with_tls(cli.master, cli.token.as_deref(), tls)?,
        json: cli.json,
        broker_tls: TlsConfig::trusting(cli.ca_file),
    };
    match cli.command {
        Command::Submit(args) if args.bulk.is_some() => bulk::run(&context, args).await,
        Command::Submit(args) => submit::run(&context, args).await,
        Command::Status { id } => jobs::status(&context, &id).await,
        Command::List(args) => jobs::list(&context, &args).await,
        Command::Cancel { id: Some(id), .. } => jobs::cancel(&context, &id).await,
        Command::Cancel { id: None, filter } => filtered::run(&context, "cancel", &filter).await,
        Command::Retry { filter } => filtered::run(&context, "retry", &filter).await,
        Command::Watch(args) => match args.job_id() {
            Some(id) => follow::watch(&context, id).await,
            None => watch::run(&context, &args).await,
        },
        Command::Logs { id, follow } => follow::logs(&context, &id, follow).await,
        Command::Groups => fleet::groups(&context).await,
        Command::Workers => fleet::workers(&context).await,
        Command::Reset { group } => fleet::reset(&context, &group).await,
        Command::Pause { group } => fleet::set_paused(&context, &group, true).await,
        Command::Resume { group } => fleet::set_paused(&context, &group, false).await,
        Command::Limits(args) => fleet::limits(&context, args).await,
        Command::Audit { limit } => access::audit(&context, limit).await,
        Command::Token(TokenCommand::New { name, role }) => access::new_token(&context, &name, role),
        Command::Schedule(command) => schedules::run(&context, command).await,
        Command::Workflow(command) => workflows::run(&context, command).await,
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
