//! `jobfleet submit GROUP FUNCTION`: one job, printing its id, or with `--wait` its result.

use super::Context;
use crate::cli::args::SubmitArgs;
use crate::cli::client::{Submitted, WAIT_SECONDS};
use crate::cli::error::CliError;
use crate::cli::model::{decode, is_terminal, JobRecord, SubmitRequest};
use crate::cli::output;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// Submits the job and prints its id (`--json`: `{id, status}`), or with `--wait` waits
/// and prints its result (`--json`: the job record); a failed or canceled job is exit 1.
pub async fn run(context: &Context, args: SubmitArgs) -> Result<(), CliError> {
    let job_args = match (&args.args, &args.args_file) {
        (Some(value), _) => value.clone(),
        (None, Some(path)) => read_args_file(path)?,
        (None, None) => Value::Null,
    };
    let mut request = SubmitRequest {
        group: args.group,
        function: args.function,
        args: job_args,
        id: args.id,
        timeout_ms: args
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    };
    if !args.wait {
        let (id, status) = match context.client.submit(&request, None).await? {
            Submitted::Accepted { id, status } => (id, status),
            // A repeated id: the original job.
            Submitted::Record(record) => (
                record["id"].as_str().unwrap_or_default().to_string(),
                record["status"].as_str().unwrap_or_default().to_string(),
            ),
        };
        return if context.json {
            output::json(&json!({"id": id, "status": status}), false)
        } else {
            output::line(&id)
        };
    }
    let record = match context.client.submit(&request, Some(WAIT_SECONDS)).await? {
        Submitted::Record(record) if is_terminal(&record) => record,
        Submitted::Record(record) => {
            request.id = record["id"].as_str().map(String::from).or(request.id);
            context.client.wait_for_end(&request).await?
        }
        Submitted::Accepted { id, .. } => {
            request.id = Some(id);
            context.client.wait_for_end(&request).await?
        }
    };
    report_end(context, &record)
}

/// Prints an ended job: its result, or its error as the command's failure.
fn report_end(context: &Context, raw: &Value) -> Result<(), CliError> {
    let record: JobRecord = decode(raw, "job record")?;
    if context.json {
        output::json(raw, true)?;
    }
    if record.status == "finished" {
        if !context.json {
            output::json(record.result.as_ref().unwrap_or(&Value::Null), true)?;
        }
        return Ok(());
    }
    let error = record.error.unwrap_or_default();
    Err(CliError::JobEnded {
        id: record.id,
        status: record.status,
        kind: error.kind,
        message: error.message,
    })
}

/// Reads one JSON document from a file, or from stdin for `-`.
pub fn read_args_file(path: &Path) -> Result<Value, CliError> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("cannot read the args from stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read --args-file {}: {e}", path.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--args-file {}: not valid JSON: {e}", path.display())))
}
