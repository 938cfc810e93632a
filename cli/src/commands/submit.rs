//! `jobfleet submit GROUP FUNCTION`: one job, printing its id, or with `--wait` its result.

use super::Context;
use crate::args::SubmitArgs;
use crate::client::{decode, is_terminal, Submitted, WAIT_SECONDS};
use crate::error::CliError;
use crate::output;
use jobfleet_api::{JobView, SubmitRequest};
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

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
        args: Some(job_args),
        id: args.id,
        idempotency_key: None,
        timeout_ms: timeout_ms(args.timeout),
        run_at: args.run_at,
        delay_ms: args
            .delay
            .map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        priority: args.priority,
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
    let record: JobView = decode(raw, "job record")?;
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

/// `--timeout` as the API's `timeout_ms`.
pub fn timeout_ms(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
}

/// The text of an input file, or of stdin for `-`; `what` names it in the error
/// (`the args` for stdin, `--args-file` with the path for a file).
pub fn read_input(path: &Path, what: &str, flag: &str) -> Result<String, CliError> {
    let read = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|source| CliError::Input {
        what: if path.as_os_str() == "-" {
            format!("cannot read {what} from stdin")
        } else {
            format!("cannot read {flag} {}", path.display())
        },
        source,
    })
}

/// Reads one JSON document from a file, or from stdin for `-`.
pub fn read_args_file(path: &Path) -> Result<Value, CliError> {
    let text = read_input(path, "the args", "--args-file")?;
    serde_json::from_str(&text).map_err(|source| CliError::InvalidJson {
        what: format!("--args-file {}", path.display()),
        source,
    })
}
