//! `jobfleet schedule add|list|rm`: the cron schedules (SPEC §9).

use super::Context;
use crate::args::ScheduleCommand;
use crate::error::CliError;
use crate::output::{self, Table};
use jobfleet_api::{ScheduleList, ScheduleRequest, ScheduleView};

/// Runs a `schedule` subcommand.
pub async fn run(context: &Context, command: ScheduleCommand) -> Result<(), CliError> {
    match command {
        ScheduleCommand::Add(add) => {
            let raw = context
                .client
                .create_schedule(&ScheduleRequest::from(add))
                .await?;
            let text = |view: &ScheduleView| {
                let next = view.next_fire.as_deref().unwrap_or("never");
                format!("created {}; next firing {next}", view.name)
            };
            context.print(&raw, "schedule", text).map(drop)
        }
        ScheduleCommand::List => {
            let raw = context.client.schedules().await?;
            context.print(&raw, "schedule list", table).map(drop)
        }
        ScheduleCommand::Rm { name } => {
            context.client.delete_schedule(&name).await?;
            if context.json {
                output::json(&serde_json::json!({"deleted": name}), false)
            } else {
                output::line(&format!("deleted {name}"))
            }
        }
    }
}

fn table(list: &ScheduleList) -> String {
    let mut table = Table::new(&[
        "NAME", "CRON", "TIMEZONE", "GROUP", "FUNCTION", "SOURCE", "NEXT", "LAST",
    ]);
    for schedule in &list.schedules {
        let time = |t: &Option<String>| t.as_deref().map(output::short_time).unwrap_or_else(|| "-".into());
        table.row(vec![
            schedule.name.clone(),
            schedule.cron.clone(),
            schedule.timezone.clone(),
            schedule.group.clone(),
            schedule.function.clone(),
            schedule.source.clone(),
            time(&schedule.next_fire),
            time(&schedule.last_fire),
        ]);
    }
    table.render()
}
