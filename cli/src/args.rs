//! The command line of `jobfleet` (clap derive): global options and one subcommand per
//! task.

use crate::error::EXIT_STATUS_HELP;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jobfleet_api::{ScheduleRequest, DEFAULT_AUDIT_LIMIT, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use jobfleet_common::auth::Role;
use jobfleet_common::config::{DEFAULT_AMQP_URL, DEFAULT_NAMESPACE};
use jobfleet_common::message::JobStatus;
use reqwest::Url;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The master's default address.
pub const DEFAULT_MASTER: &str = "http://127.0.0.1:8080";
/// Environment variable naming the master.
pub const MASTER_ENV: &str = "JOBFLEET_MASTER";
/// Environment variable holding the API token.
pub const TOKEN_ENV: &str = "JOBFLEET_TOKEN";

/// jobfleet: submit jobs to a jobfleet master and follow them.
#[derive(Debug, Parser)]
#[command(name = "jobfleet", version, after_help = EXIT_STATUS_HELP, propagate_version = true)]
pub struct Cli {
    /// Base URL of the master's HTTP API.
    #[arg(long, global = true, env = MASTER_ENV, default_value = DEFAULT_MASTER, value_parser = parse_master_url, value_name = "URL")]
    pub master: Url,
    /// Print JSON for scripts instead of text (one document, or one object per line for `watch`).
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of the CA to trust (instead of the system roots) for an https:// master and
    /// an amqps:// broker (`watch`).
    #[arg(long, global = true, env = "JOBFLEET_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// API token, sent as `Authorization: Bearer <TOKEN>` (masters with `[auth]`).
    #[arg(long, global = true, env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job (prints its id), wait for its result (--wait), or submit one job per
    /// line of a JSONL file (--bulk).
    #[command(after_help = EXIT_STATUS_HELP)]
    Submit(SubmitArgs),
    /// Show a job's record.
    #[command(after_help = EXIT_STATUS_HELP)]
    Status {
        /// The job's id.
        id: String,
    },
    /// List jobs, newest first.
    #[command(after_help = EXIT_STATUS_HELP)]
    List(ListArgs),
    /// Cancel a queued or running job, or every one a filter matches (--filter, admin).
    #[command(after_help = EXIT_STATUS_HELP)]
    Cancel {
        /// The job's id.
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        id: Option<String>,
        /// Cancel the queued and started jobs matching KEY=VALUE pairs (comma separated or
        /// repeated): group, function, status, id (repeatable), e.g.
        /// `--filter group=etl,status=queued`.
        #[arg(long, value_parser = parse_filter, value_name = "KEY=VALUE,...")]
        filter: Vec<Vec<(String, String)>>,
    },
    /// Resubmit the failed and canceled jobs a filter matches as new jobs, each naming its
    /// original in `retry_of` (admin).
    #[command(after_help = EXIT_STATUS_HELP)]
    Retry {
        /// KEY=VALUE pairs (comma separated or repeated): group, function, status, id
        /// (repeatable), e.g. `--filter group=etl,status=failed`.
        #[arg(long, required = true, value_parser = parse_filter, value_name = "KEY=VALUE,...")]
        filter: Vec<Vec<(String, String)>>,
    },
    /// Print results live from the result topic (straight from RabbitMQ) until Ctrl-C; or,
    /// given a job id, follow that job with a progress bar until it ends.
    #[command(after_help = EXIT_STATUS_HELP)]
    Watch(WatchArgs),
    /// Print a job's log lines (--follow: and the ones to come, until it ends).
    #[command(after_help = EXIT_STATUS_HELP)]
    Logs {
        /// The job's id.
        id: String,
        /// Keep printing lines as the job logs them, until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Show the groups: functions, workers, queue depth, failures, broken.
    #[command(after_help = EXIT_STATUS_HELP)]
    Groups,
    /// Show the live workers.
    #[command(after_help = EXIT_STATUS_HELP)]
    Workers,
    /// Clear a broken group and its failure count.
    #[command(after_help = EXIT_STATUS_HELP)]
    Reset {
        /// The group.
        group: String,
    },
    /// Pause a group: it starts nothing, its queued jobs wait (admin token).
    #[command(after_help = EXIT_STATUS_HELP)]
    Pause {
        /// The group.
        group: String,
    },
    /// Resume a paused group: its waiting jobs start as its limits allow (admin token).
    #[command(after_help = EXIT_STATUS_HELP)]
    Resume {
        /// The group.
        group: String,
    },
    /// Show a group's flow control, or change its limits at run time (admin token).
    #[command(after_help = EXIT_STATUS_HELP)]
    Limits(LimitsArgs),
    /// Show the audit trail: cancels and admin actions, newest first (admin token).
    #[command(after_help = EXIT_STATUS_HELP)]
    Audit {
        /// At most this many entries (1..=1000).
        #[arg(long, default_value_t = DEFAULT_AUDIT_LIMIT, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// API tokens (works offline: nothing is sent to a master).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Cron schedules: each firing is a job `<name>:<fire time>` (admin to change).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Workflows: DAGs of steps, each a job that starts when the steps it waits for finished.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
}

/// `jobfleet workflow`.
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Submit the workflow of a JSON file (`{"steps": [...], "id"?}`, as
    /// `POST /v1/workflows` takes it; `-` reads stdin); prints its id.
    #[command(after_help = EXIT_STATUS_HELP)]
    Submit {
        /// The file.
        file: std::path::PathBuf,
    },
    /// Show a workflow and every step.
    #[command(after_help = EXIT_STATUS_HELP)]
    Status {
        /// Its id.
        id: String,
    },
    /// Cancel a workflow: its queued and started steps are canceled, the others never start.
    #[command(after_help = EXIT_STATUS_HELP)]
    Cancel {
        /// Its id.
        id: String,
    },
}

/// `jobfleet schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule.
    #[command(after_help = EXIT_STATUS_HELP)]
    Add(AddSchedule),
    /// List the schedules (the config file's and the API's).
    #[command(after_help = EXIT_STATUS_HELP)]
    List,
    /// Delete a schedule created through the API.
    #[command(after_help = EXIT_STATUS_HELP)]
    Rm {
        /// Its name.
        name: String,
    },
}

/// `jobfleet schedule add`: the fields of the API's [`ScheduleRequest`].
#[derive(Debug, Args)]
pub struct AddSchedule {
    /// Its name (1..64 chars of [A-Za-z0-9_-]).
    pub name: String,
    /// 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first,
    /// e.g. `"0 2 * * *"`.
    #[arg(long)]
    pub cron: String,
    /// The group of its jobs.
    #[arg(long)]
    pub group: String,
    /// The function they run.
    #[arg(long)]
    pub function: String,
    /// Their args as JSON (default: null).
    #[arg(long, value_parser = parse_json, value_name = "JSON")]
    pub args: Option<Value>,
    /// An IANA time zone such as Europe/Paris (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
}

impl From<AddSchedule> for ScheduleRequest {
    fn from(add: AddSchedule) -> ScheduleRequest {
        ScheduleRequest {
            name: add.name,
            cron: add.cron,
            group: add.group,
            function: add.function,
            args: add.args,
            timezone: add.timezone,
        }
    }
}

/// `jobfleet token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a random token; print it once, with the `[auth]` entry to add to the fleet file.
    New {
        /// Who will hold the token (shown in the audit trail).
        #[arg(long)]
        name: String,
        /// What it may do: read, submit or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

/// `--role`: read, submit or admin.
pub fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

/// `jobfleet submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The consumer group.
    pub group: String,
    /// The function to run.
    pub function: String,
    /// The job's args as JSON (default: null).
    #[arg(long, value_parser = parse_json, value_name = "JSON", conflicts_with_all = ["args_file", "bulk"])]
    pub args: Option<Value>,
    /// Read the args (one JSON document) from FILE; `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "bulk")]
    pub args_file: Option<PathBuf>,
    /// The job's id (1..128 chars of [A-Za-z0-9._:-]); a repeated id returns the original
    /// job instead of running it again.
    #[arg(long, conflicts_with = "bulk")]
    pub id: Option<String>,
    /// Wait for the job to end and print its result (or its error, exiting 1).
    #[arg(long)]
    pub wait: bool,
    /// Overrides the function's timeout for this job, e.g. `30s`, `5m`.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// A delayed job: start no earlier than this RFC 3339 time, e.g.
    /// `2030-01-01T09:00:00Z` (a past time runs it now; at most 30 days ahead).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["delay", "bulk"])]
    pub run_at: Option<String>,
    /// A delayed job: start no earlier than this long from now, e.g. `90s`, `2h` (at most
    /// 30 days).
    #[arg(long, value_parser = parse_delay, value_name = "DURATION", conflicts_with = "bulk")]
    pub delay: Option<Duration>,
    /// The job's priority, 0..9 (higher runs first; default 0); above 0 only for a group
    /// with `max_priority`. With --bulk: every job's.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=9), value_name = "N")]
    pub priority: Option<u8>,
    /// Submit one job per line of FILE (each line one JSON args value; blank lines are
    /// skipped), wait for all of them and print a summary; exits 1 if any did not finish.
    #[arg(long, value_name = "FILE.jsonl")]
    pub bulk: Option<PathBuf>,
    /// With --bulk: requests in flight at once (batches of up to 1,000 jobs, then waits).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024), requires = "bulk")]
    pub in_flight: u16,
}

/// A job status, for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Started,
    /// Ended with a result.
    Finished,
    /// Ended with an error.
    Failed,
    /// Canceled.
    Canceled,
}

impl From<StatusFilter> for JobStatus {
    fn from(filter: StatusFilter) -> JobStatus {
        match filter {
            StatusFilter::Queued => JobStatus::Queued,
            StatusFilter::Started => JobStatus::Started,
            StatusFilter::Finished => JobStatus::Finished,
            StatusFilter::Failed => JobStatus::Failed,
            StatusFilter::Canceled => JobStatus::Canceled,
        }
    }
}

/// `jobfleet list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this function.
    #[arg(long)]
    pub function: Option<String>,
    /// Only jobs with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// At most this many jobs (1..=1000).
    #[arg(long, default_value_t = DEFAULT_LIST_LIMIT, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIST_LIMIT)))]
    pub limit: u32,
    /// Continue after a previous page (the cursor `list` printed).
    #[arg(long)]
    pub cursor: Option<String>,
}

/// `jobfleet watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Routing-key pattern on `NS.results`, `<group>.<function>.<status>`: `#` (all),
    /// `etl.#`, `*.*.failed`. A word with no `.`, `*` or `#` (which no result matches) is
    /// taken as a job id to follow, as `--job` is.
    #[arg(default_value = "#")]
    pub pattern: String,
    /// Follow this job (its progress, log lines and status, through the master) until it
    /// ends, instead of the result topic.
    #[arg(long, value_name = "ID", conflicts_with = "count")]
    pub job: Option<String>,
    /// Exit after this many results.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// The fleet's namespace.
    #[arg(long, env = "JOBFLEET_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The broker (watch reads the result topic directly, not through the master); the
    /// nodes of a cluster as a comma-separated list, tried in turn.
    #[arg(long, env = "JOBFLEET_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true, hide_default_value = true, value_name = "URL")]
    pub amqp_url: String,
}

impl WatchArgs {
    /// The job to follow: `--job`, or a pattern that can only be a job id.
    pub fn job_id(&self) -> Option<&str> {
        self.job.as_deref().or_else(|| {
            let is_pattern = self.pattern.contains(['.', '*', '#']);
            (!is_pattern).then_some(self.pattern.as_str())
        })
    }
}

/// A clap error as one line for stderr: the message, its details and the usage, without
/// the "For more information" hint.
pub fn usage_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let mut parts = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
    {
        let line = line.strip_prefix("error: ").unwrap_or(line);
        match line.strip_prefix("Usage: ") {
            Some(usage) => parts.push(format!("(usage: {usage})")),
            None => parts.push(line.to_string()),
        }
    }
    parts.join(" ")
}

/// `--master`: an absolute `http://` URL.
pub fn parse_master_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("{text:?} has no host")),
        other => Err(format!(
            "scheme {other:?}: use http://HOST:PORT or https://HOST:PORT"
        )),
    }
}

/// `--args`: any JSON value.
pub fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

/// `--filter`: comma-separated `KEY=VALUE` pairs with keys group, function, status, id.
pub fn parse_filter(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: write KEY=VALUE"))?;
            let key = key.trim();
            if !["group", "function", "status", "id"].contains(&key) {
                return Err(format!(
                    "unknown filter key {key:?}: use group, function, status or id"
                ));
            }
            Ok((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// `--delay`: a duration such as `90s` or `2h` (zero runs the job now).
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    jobfleet_common::config::parse_duration(text)
}

/// `--timeout`: a duration such as `30s` or `250ms`, at least 1 ms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = jobfleet_common::config::parse_duration(text)?;
    if duration.as_millis() == 0 {
        return Err("the timeout must be at least 1ms".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn master_urls_must_be_http_or_https() {
        assert!(parse_master_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_master_url("https://example.org").is_ok());
        assert!(parse_master_url("127.0.0.1:8080").is_err());
        assert!(parse_master_url("ftp://x").is_err());
    }

    #[test]
    fn submit_options_conflict_where_they_must() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["jobfleet"], args].concat());
        assert!(parse(&["submit", "g", "f", "--args", "{\"a\":1}", "--wait"]).is_ok());
        assert!(parse(&["submit", "g", "f", "--args", "{nope"]).is_err());
        assert!(parse(&["submit", "g", "f", "--args", "1", "--args-file", "x"]).is_err());
        assert!(parse(&["submit", "g", "f", "--bulk", "x", "--id", "i"]).is_err());
        assert!(parse(&["submit", "g", "f", "--in-flight", "4"]).is_err());
        assert!(parse(&["submit", "g", "f", "--delay", "90s"]).is_ok());
        assert!(parse(&["submit", "g", "f", "--run-at", "2030-01-01T00:00:00Z"]).is_ok());
        assert!(parse(&["submit", "g", "f", "--delay", "1s", "--run-at", "x"]).is_err());
        assert!(parse(&["submit", "g", "f", "--delay", "soon"]).is_err());
        assert!(parse(&["cancel", "j1"]).is_ok());
        assert!(parse(&[
            "schedule",
            "add",
            "n",
            "--cron",
            "* * * * *",
            "--group",
            "g",
            "--function",
            "f"
        ])
        .is_ok());
        assert!(parse(&["schedule", "add", "n", "--cron", "* * * * *"]).is_err());
        assert!(parse(&["schedule", "rm", "n"]).is_ok());
        assert!(parse(&["schedule", "list"]).is_ok());
        assert!(parse(&["cancel", "--filter", "group=etl,status=queued"]).is_ok());
        assert!(parse(&["cancel", "j1", "--filter", "group=etl"]).is_err());
        assert!(parse(&["cancel"]).is_err());
        assert!(parse(&["retry", "--filter", "status=failed", "--filter", "id=a,id=b"]).is_ok());
        assert!(parse(&["retry"]).is_err());
        assert!(parse(&["retry", "--filter", "colour=red"]).is_err());
        assert!(parse(&["retry", "--filter", "group"]).is_err());
        assert!(parse(&["list", "--status", "nope"]).is_err());
        assert!(parse(&["list", "--limit", "0"]).is_err());
        assert!(parse(&["--json", "groups"]).is_ok());
        assert!(parse(&["groups", "--json"]).is_ok());
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        let error = Cli::try_parse_from(["jobfleet", "list", "--status", "bogus"]).unwrap_err();
        let line = usage_line(&error);
        assert!(
            !line.contains('\n') && line.starts_with("invalid value 'bogus' for '--status <STATUS>'"),
            "{line}"
        );
        let error = Cli::try_parse_from(["jobfleet", "submit", "g"]).unwrap_err();
        let line = usage_line(&error);
        assert!(
            line.contains("<FUNCTION>") && line.contains("(usage: jobfleet submit"),
            "{line}"
        );
    }
}

/// `jobfleet limits GROUP [...]`: without a change, shows the limits in force.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsArgs {
    /// The group.
    pub group: String,
    /// Fleet-wide cap on started jobs (at least 1), or `none`.
    #[arg(long, value_name = "N|none")]
    pub max_running: Option<String>,
    /// Fleet-wide start rate (`N/s`, `N/m`, `N/h`), or `none`.
    #[arg(long, value_name = "RATE|none")]
    pub rate_limit: Option<String>,
    /// A top-level field of args whose every value gets the rate limit of its own, or `none`.
    #[arg(long, value_name = "FIELD|none")]
    pub limit_key: Option<String>,
    /// Go back to the config file's limits.
    #[arg(long, conflicts_with_all = ["max_running", "rate_limit", "limit_key"])]
    pub reset: bool,
}
