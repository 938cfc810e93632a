//! `jobfleet logs ID [--follow]` and `jobfleet watch ID`: a job's log lines, and its events
//! live (`GET /v1/jobs/{id}/events`) with a progress bar, resumed after a dropped
//! connection from the last event seen.

use super::Context;
use crate::client::decode;
use crate::error::CliError;
use crate::events::{SseEvent, SseParser};
use crate::output;
use indicatif::{ProgressBar, ProgressStyle};
use jobfleet_api::{JobLogs, JobView, LogLine, ProgressEvent};
use serde_json::Value;
use std::time::Duration;

/// Reconnects in a row before giving up on an events stream.
const RECONNECTS: u32 = 5;

/// Prints a job's log lines (`--follow`: and the ones to come, until it ends).
pub async fn logs(context: &Context, id: &str, follow: bool) -> Result<(), CliError> {
    if follow {
        let ended = follow_events(context, id, |event| {
            if context.json {
                return print_event(event);
            }
            if event.event == "log" {
                let line: LogLine = decode(&parse(event)?, "log event")?;
                output::line(&line.line)?;
            }
            Ok(())
        })
        .await?;
        return outcome(id, ended);
    }
    let raw = context.client.logs(id).await?;
    context
        .print(&raw, "job logs", |logs: &JobLogs| {
            logs.lines
                .iter()
                .map(|l| l.line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(drop)
}

/// Shows a job live until it ends: a progress bar with its message, log lines above it,
/// then its outcome (exit 1 unless it finished).
pub async fn watch(context: &Context, id: &str) -> Result<(), CliError> {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("#>-"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let ended = follow_events(context, id, |event| {
        if context.json {
            return print_event(event);
        }
        match event.event.as_str() {
            "log" => {
                let line: LogLine = decode(&parse(event)?, "log event")?;
                bar.println(line.line);
            }
            "progress" => {
                let progress: ProgressEvent = decode(&parse(event)?, "progress event")?;
                bar.set_position(progress.percent.round() as u64);
                bar.set_message(progress.message.unwrap_or_default());
            }
            "status" => {
                let record: JobView = decode(&parse(event)?, "job record")?;
                bar.set_prefix(record.status);
            }
            _ => {}
        }
        Ok(())
    })
    .await;
    bar.finish_and_clear();
    let ended = ended?;
    if let (false, Some(record)) = (context.json, &ended) {
        output::line(&output::job_details(record))?;
    }
    outcome(id, ended)
}

/// Exit status of a followed job: success only when it finished.
fn outcome(id: &str, ended: Option<JobView>) -> Result<(), CliError> {
    match ended {
        Some(record) if record.status == "finished" => Ok(()),
        Some(record) => {
            let error = record.error.unwrap_or_default();
            Err(CliError::JobEnded {
                id: id.to_string(),
                status: record.status,
                kind: error.kind,
                message: error.message,
            })
        }
        None => Err(CliError::JobEnded {
            id: id.to_string(),
            status: "gone".into(),
            kind: "not_found".into(),
            message: "its record was deleted while it was followed".into(),
        }),
    }
}

/// Follows job `id`'s events until its terminal status, handing each to `on_event`;
/// returns its last record (`None` when it was deleted meanwhile).
async fn follow_events(
    context: &Context,
    id: &str,
    mut on_event: impl FnMut(&SseEvent) -> Result<(), CliError>,
) -> Result<Option<JobView>, CliError> {
    let mut after: Option<String> = None;
    let mut last: Option<JobView> = None;
    let mut failures = 0;
    loop {
        let mut response = match context.client.events(id, after.as_deref()).await {
            Ok(response) => response,
            Err(e) if e.is_transient() && failures < RECONNECTS => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut parser = SseParser::default();
        while let Ok(Some(chunk)) = response.chunk().await {
            failures = 0;
            for event in parser.push(&chunk) {
                if let Some(event_id) = &event.id {
                    after = Some(event_id.clone());
                }
                match event.event.as_str() {
                    "gone" => return Ok(None),
                    "status" => last = Some(decode(&parse(&event)?, "job record")?),
                    _ => {}
                }
                on_event(&event)?;
            }
        }
        let ended = last
            .as_ref()
            .is_some_and(|r| !matches!(r.status.as_str(), "queued" | "started"));
        if ended {
            return Ok(last);
        }
        // The stream broke before the job ended: resume after the last event seen.
        failures += 1;
        if failures > RECONNECTS {
            return Err(CliError::Usage(format!(
                "lost the events of job {id} {RECONNECTS} times in a row"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn parse(event: &SseEvent) -> Result<Value, CliError> {
    serde_json::from_str(&event.data).map_err(|source| CliError::InvalidJson {
        what: format!("a {} event", event.event),
        source,
    })
}

/// `--json`: one object per event, `{event, id?, data}`.
fn print_event(event: &SseEvent) -> Result<(), CliError> {
    let data = parse(event).unwrap_or_else(|_| Value::String(event.data.clone()));
    let mut object = serde_json::json!({"event": event.event, "data": data});
    if let Some(id) = &event.id {
        object["id"] = Value::String(id.clone());
    }
    output::json(&object, false)
}
