//! `/v1/jobs/{id}/logs` and `/v1/jobs/{id}/events` (SPEC §10): a job's log lines, and a
//! live Server-Sent Events stream of its status, progress and log lines that ends with its
//! terminal status and resumes after `Last-Event-ID`.

use super::backend;
use super::error::ApiError;
use super::openapi::{RedisDown, UnknownJob};
use super::views::job_view;
use crate::state::SharedState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use jobfleet_api::{rfc3339, JobId, JobLogs, LogLine, LogsQuery, ProgressEvent, MAX_LOG_LIMIT};
use jobfleet_common::coordinator::activity::{ActivityKind, StoredActivity};
use jobfleet_common::message::JobStatus;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// How often an events stream looks for news.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Most events read per look.
const EVENTS_PER_POLL: usize = 200;

/// A job's log lines, oldest first.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(JobId, LogsQuery),
    responses((status = 200, description = "The job's log lines", body = JobLogs), UnknownJob, RedisDown)
)]
pub async fn logs(
    State(state): State<SharedState>,
    Path(JobId { id }): Path<JobId>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<JobLogs>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = match query.limit {
        None => MAX_LOG_LIMIT,
        Some(limit @ 1..=MAX_LOG_LIMIT) => limit,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1..={MAX_LOG_LIMIT}, not {other}"
            )))
        }
    };
    let after = query.after.as_deref().map(event_id).transpose()?;
    let page = backend::redis(state.coordinator.activity(&id, after, limit as usize))
        .await?
        .ok_or_else(|| ApiError::unknown_job(&id))?;
    let full = page.events.len() == limit as usize;
    let next = page.events.last().filter(|_| full).map(|e| e.id.clone());
    let lines = page.events.into_iter().filter_map(log_line).collect();
    Ok(Json(JobLogs { id, lines, next }))
}

/// A job's events as they happen (Server-Sent Events): `status` (the job record), `progress`
/// and `log`, ending after the terminal `status`. Resumes after the `Last-Event-ID` header
/// (or `?after=`).
#[utoipa::path(
    get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(JobId, LogsQuery),
    responses(
        (status = 200, description = "text/event-stream: events `status` (data: the job record), \
            `progress` (data: ProgressEvent) and `log` (data: LogLine), until the job has ended",
            content_type = "text/event-stream", body = serde_json::Value),
        UnknownJob,
        RedisDown,
    )
)]
pub async fn events(
    State(state): State<SharedState>,
    Path(JobId { id }): Path<JobId>,
    headers: HeaderMap,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .or(query.after);
    let after = resume.as_deref().map(event_id).transpose()?.map(String::from);
    let group = backend::redis(state.coordinator.group_of(&id))
        .await?
        .ok_or_else(|| ApiError::unknown_job(&id))?;
    let follow = Follow {
        state,
        group,
        id,
        after,
        shown: None,
        pending: VecDeque::new(),
        ended: false,
        first: true,
    };
    let stream = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One events stream's position.
struct Follow {
    state: SharedState,
    group: String,
    id: String,
    /// The last event sent, to read after.
    after: Option<String>,
    /// The status last sent.
    shown: Option<JobStatus>,
    pending: VecDeque<Event>,
    ended: bool,
    first: bool,
}

impl Follow {
    /// The next event to send, waiting for one; `None` once the job has ended (or gone).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if !std::mem::take(&mut self.first) {
                tokio::time::sleep(POLL_EVERY).await;
            }
            self.poll().await;
        }
    }

    /// Reads the events after the last one sent and the record; queues what is new. A
    /// Redis failure is passed over (the next look tries again).
    async fn poll(&mut self) {
        let read =
            self.state
                .coordinator
                .activity_of(&self.group, &self.id, self.after.as_deref(), EVENTS_PER_POLL);
        let Ok(page) = backend::redis(read).await else {
            return;
        };
        let more = page.events.len() == EVENTS_PER_POLL;
        for stored in page.events {
            self.after = Some(stored.id.clone());
            self.pending.extend(sse_event(stored));
        }
        let Some(record) = page.record else {
            // Deleted (or expired) while followed.
            let data = serde_json::json!({ "id": self.id }).to_string();
            self.pending.push_back(Event::default().event("gone").data(data));
            self.ended = true;
            return;
        };
        if self.shown != Some(record.status) {
            self.shown = Some(record.status);
            let data = serde_json::to_string(&job_view(&record)).unwrap_or_default();
            // No id: a resumed stream replays from the last progress or log event.
            self.pending
                .push_back(Event::default().event("status").data(data));
        }
        // The worker stores a job's events before its outcome: once the record is
        // terminal, what is read with it is all there is.
        self.ended = record.status.is_terminal() && !more;
    }
}

/// The SSE event of a stored event.
fn sse_event(stored: StoredActivity) -> Option<Event> {
    let entry = &stored.entry;
    let at = rfc3339(entry.at_ms).unwrap_or_default();
    let (name, data) = match &entry.kind {
        ActivityKind::Log { .. } => ("log", serde_json::to_string(&log_line(stored.clone())?)),
        ActivityKind::Progress { percent, message } => (
            "progress",
            serde_json::to_string(&ProgressEvent {
                at,
                attempt: entry.attempt,
                percent: *percent,
                message: message.clone(),
            }),
        ),
    };
    Some(Event::default().id(stored.id).event(name).data(data.ok()?))
}

/// The log line of a stored event; `None` for other kinds.
fn log_line(stored: StoredActivity) -> Option<LogLine> {
    let ActivityKind::Log { line } = stored.entry.kind else {
        return None;
    };
    Some(LogLine {
        event_id: stored.id,
        at: rfc3339(stored.entry.at_ms).unwrap_or_default(),
        attempt: stored.entry.attempt,
        line,
    })
}

/// Checks an event id as Redis streams write them (`<ms>-<seq>`, or `<ms>`).
fn event_id(text: &str) -> Result<&str, ApiError> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    let valid = match text.split_once('-') {
        Some((ms, seq)) => digits(ms) && digits(seq),
        None => digits(text),
    };
    if valid {
        Ok(text)
    } else {
        Err(ApiError::bad_request(format!(
            "{text:?} is not an event id (`<ms>-<seq>`, as events carry them)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_checked() {
        for good in ["1796135991427-0", "5"] {
            assert!(event_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "1-2-3",
            "+",
            "(5",
            "99999999999999999999999-0",
        ] {
            assert!(event_id(bad).is_err(), "{bad}");
        }
    }
}
