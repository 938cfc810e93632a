//! `jobfleet status`, `list` and `cancel`: jobs as the master records them.

use super::Context;
use crate::args::ListArgs;
use crate::client::decode;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::{JobPage, JobView, ListQuery};
use jobfleet_common::message::JobStatus;
use std::time::Duration;

/// Prints a job's record (any status is a success: this only asks).
pub async fn status(context: &Context, id: &str) -> Result<(), CliError> {
    let raw = context.client.job(id).await?;
    if context.json {
        return output::json(&raw, true);
    }
    let record: JobView = decode(&raw, "job record")?;
    output::line(&output::job_details(&record))
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
    if context.json {
        return output::json(&raw, true);
    }
    let page: JobPage = decode(&raw, "job page")?;
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
    output::line(&table.render())?;
    if let Some(cursor) = page.next_cursor {
        eprintln!("more jobs: jobfleet list --cursor {cursor}");
    }
    Ok(())
}

/// Cancels a job and prints its record as it is now.
pub async fn cancel(context: &Context, id: &str) -> Result<(), CliError> {
    let raw = context.client.cancel(id).await?;
    if context.json {
        return output::json(&raw, true);
    }
    let record: JobView = decode(&raw, "job record")?;
    output::line(&format!("canceled {}", record.id))
}
