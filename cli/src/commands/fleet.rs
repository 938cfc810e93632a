//! `jobfleet groups`, `workers` and `reset`: the fleet as the master sees it.

use super::Context;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::{GroupList, GroupView, WorkerList};

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
