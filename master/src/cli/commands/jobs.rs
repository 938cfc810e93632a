//! `jobfleet status`, `list` and `cancel`: jobs as the master records them.

use super::Context;
use crate::cli::args::ListArgs;
use crate::cli::error::CliError;
use crate::cli::model::{decode, JobPage, JobRecord};
use crate::cli::output::{self, Table};
use std::time::Duration;

/// Prints a job's record (any status is a success: this only asks).
pub async fn status(context: &Context, id: &str) -> Result<(), CliError> {
    let raw = context.client.job(id).await?;
    if context.json {
        return output::json(&raw, true);
    }
    let record: JobRecord = decode(&raw, "job record")?;
    output::line(&output::job_details(&record))
}

/// Prints a page of jobs as a table; the cursor of the next page goes to stderr.
pub async fn list(context: &Context, args: &ListArgs) -> Result<(), CliError> {
    let mut query = vec![("limit", args.limit.to_string())];
    let filters = [
        ("group", args.group.clone()),
        ("function", args.function.clone()),
        ("status", args.status.map(|s| s.as_str().to_string())),
        ("cursor", args.cursor.clone()),
    ];
    query.extend(
        filters
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v))),
    );
    let raw = context.client.get(&["v1", "jobs"], &query).await?;
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
            job.submitted_at
                .as_deref()
                .map(output::short_time)
                .unwrap_or_default(),
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
    let record: JobRecord = decode(&raw, "job record")?;
    output::line(&format!("canceled {}", record.id))
}
