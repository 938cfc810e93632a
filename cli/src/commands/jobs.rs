//! `jobfleet status`, `list` and `cancel`: jobs as the master records them.

use super::Context;
use crate::args::ListArgs;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::{JobPage, JobView, ListQuery};
use jobfleet_common::message::JobStatus;
use std::time::Duration;

/// Prints a job's record (any status is a success: this only asks).
pub async fn status(context: &Context, id: &str) -> Result<(), CliError> {
    let raw = context.client.job(id).await?;
    context.print(&raw, "job record", output::job_details).map(drop)
}

/// Prints a page of jobs as a table; the cursor of the next page goes to stderr.
pub async fn list(context: &Context, args: &ListArgs) -> Result<(), CliError> {
    let query = ListQuery {
        group: args.group.clone(),
        function: args.function.clone(),
        status: args.status.map(|s| JobStatus::from(s).as_str().to_string()),
        limit: Some(args.limit),
        cursor: args.cursor.clone(),
    };
    let raw = context.client.jobs(&query).await?;
    let page = context.print(&raw, "job page", jobs_table)?;
    if let Some(cursor) = page.and_then(|page| page.next_cursor) {
        eprintln!("more jobs: jobfleet list --cursor {cursor}");
    }
    Ok(())
}

fn jobs_table(page: &JobPage) -> String {
    let mut table = Table::new(&[
        "ID",
        "GROUP",
        "FUNCTION",
        "STATUS",
        "ATTEMPTS",
        "SUBMITTED (UTC)",
        "DURATION",
        "OUTCOME",
    ]);
    for job in &page.jobs {
        table.row(vec![
            job.id.clone(),
            job.group.clone(),
            job.function.clone(),
            job.status.clone(),
            job.attempts.to_string(),
            output::short_time(&job.submitted_at),
            job.duration_ms
                .map(|ms| output::human_duration(Duration::from_millis(ms)))
                .unwrap_or_default(),
            output::truncate(&output::outcome(job), 60),
        ]);
    }
    table.render()
}

/// Cancels a job and prints its record as it is now.
pub async fn cancel(context: &Context, id: &str) -> Result<(), CliError> {
    let raw = context.client.cancel(id).await?;
    let text = |record: &JobView| format!("canceled {}", record.id);
    context.print(&raw, "job record", text).map(drop)
}
