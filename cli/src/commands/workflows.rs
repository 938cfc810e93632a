//! `jobfleet workflow submit|status|cancel` (SPEC §10).

use super::submit::read_input;
use super::Context;
use crate::args::WorkflowCommand;
use crate::error::CliError;
use crate::output::Table;
use jobfleet_api::{FlowAccepted, WorkflowView};
use serde_json::Value;

/// Runs a `workflow` subcommand.
pub async fn run(context: &Context, command: WorkflowCommand) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Submit { file } => {
            let text = read_input(&file, "the workflow", "workflow file")?;
            let request: Value = serde_json::from_str(&text).map_err(|source| CliError::InvalidJson {
                what: file.display().to_string(),
                source,
            })?;
            let raw = context.client.create_workflow(&request).await?;
            context
                .print(&raw, "workflow", |a: &FlowAccepted| a.id.clone())
                .map(drop)
        }
        WorkflowCommand::Status { id } => {
            let raw = context.client.workflow(&id).await?;
            context.print(&raw, "workflow", table).map(drop)
        }
        WorkflowCommand::Cancel { id } => {
            let raw = context.client.cancel_workflow(&id).await?;
            context.print(&raw, "workflow", table).map(drop)
        }
    }
}

/// The workflow's status, then a row per step.
fn table(workflow: &WorkflowView) -> String {
    let mut table = Table::new(&["STEP", "STATUS", "JOB", "AFTER", "ERROR"]);
    for step in &workflow.steps {
        table.row(vec![
            step.name.clone(),
            step.status.clone(),
            step.job_id.clone(),
            if step.after.is_empty() {
                "-".into()
            } else {
                step.after.join(",")
            },
            step.error
                .as_ref()
                .map_or_else(|| "-".into(), |e| format!("{}: {}", e.kind, e.message)),
        ]);
    }
    format!("workflow {} {}\n{}", workflow.id, workflow.status, table.render())
}
