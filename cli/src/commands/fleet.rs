//! `jobfleet groups`, `workers`, `reset`, `pause`, `resume` and `limits`: the fleet as the
//! master sees it, and its flow control.

use super::Context;
use crate::args::LimitsArgs;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::{GroupList, GroupView, LimitsPatch, WorkerList};

/// Prints every group with its functions, workers, queue and failure state.
pub async fn groups(context: &Context) -> Result<(), CliError> {
    let raw = context.client.groups().await?;
    context.print(&raw, "group list", groups_table).map(drop)
}

fn groups_table(list: &GroupList) -> String {
    let mut table = Table::new(&[
        "GROUP",
        "WORKERS",
        "QUEUED",
        "RUNNING",
        "FAILURES",
        "BROKEN",
        "FUNCTIONS",
    ]);
    for group in &list.groups {
        table.row(vec![
            group.name.clone(),
            group.workers.to_string(),
            group.queue_depth.to_string(),
            group.running.to_string(),
            group.consecutive_failures.to_string(),
            if group.broken { "yes".into() } else { "no".into() },
            group.functions.join(","),
        ]);
    }
    table.render()
}

/// Prints the live workers.
pub async fn workers(context: &Context) -> Result<(), CliError> {
    let raw = context.client.workers().await?;
    context.print(&raw, "worker list", workers_table).map(drop)
}

fn workers_table(list: &WorkerList) -> String {
    let mut table = Table::new(&["WORKER", "HOST", "PID", "GROUPS", "RUNNING", "HEARTBEAT"]);
    for worker in &list.workers {
        table.row(vec![
            worker.id.clone(),
            worker.host.clone(),
            worker.pid.to_string(),
            worker.groups.join(","),
            format!("{}/{}", worker.running, worker.concurrency),
            output::ago(&worker.last_heartbeat),
        ]);
    }
    table.render()
}

/// Clears a group's broken flag and failure count, and prints the group as it is now.
pub async fn reset(context: &Context, group: &str) -> Result<(), CliError> {
    let raw = context.client.reset(group).await?;
    let text = |view: &GroupView| {
        format!(
            "reset {}: {} consecutive failures, broken: {}",
            view.name,
            view.consecutive_failures,
            if view.broken { "yes" } else { "no" }
        )
    };
    context.print(&raw, "group", text).map(drop)
}

/// Pauses or resumes a group, and prints its flow control as it is now.
pub async fn set_paused(context: &Context, group: &str, paused: bool) -> Result<(), CliError> {
    let raw = context.client.set_paused(group, paused).await?;
    context.print(&raw, "group", flow_text).map(drop)
}

/// Shows a group's flow control, or changes its limits first.
pub async fn limits(context: &Context, args: LimitsArgs) -> Result<(), CliError> {
    let patch = LimitsPatch {
        max_running: args.max_running.as_deref().map(max_running).transpose()?,
        rate_limit: args.rate_limit.map(or_none),
        limit_key: args.limit_key.map(or_none),
    };
    let raw = if args.reset {
        context.client.reset_limits(&args.group).await?
    } else if patch == LimitsPatch::default() {
        context.client.group(&args.group).await?
    } else {
        context.client.change_limits(&args.group, &patch).await?
    };
    context.print(&raw, "group", flow_text).map(drop)
}

/// `none` lifts a limit (JSON `null`); anything else is the limit, checked by the master.
fn or_none(text: String) -> Option<String> {
    (text != "none").then_some(text)
}

fn max_running(text: &str) -> Result<Option<u32>, CliError> {
    if text == "none" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| CliError::Usage(format!("--max-running {text:?}: a whole number, or none")))
}

/// One group's flow control in one line.
fn flow_text(view: &GroupView) -> String {
    let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".into());
    format!(
        "{}: {}, running {} of max_running {}, rate_limit {}, limit_key {}, {} held",
        view.name,
        if view.paused { "paused" } else { "not paused" },
        view.running,
        or_none(view.max_running.map(|cap| cap.to_string())),
        or_none(view.rate_limit.clone()),
        or_none(view.limit_key.clone()),
        view.held,
    )
}
