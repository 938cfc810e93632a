//! A running job's progress and log lines (SPEC §10): what its function reports through a
//! [`JobContext`], bounded, batched and written to the coordinator on a task of its own, so
//! that reporting never slows the job nor holds up its outcome.

use jobfleet_common::coordinator::activity::{ActivityEntry, ActivityKind};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::now_ms;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest log line kept, characters; a longer one is cut and marked with `…`.
pub const MAX_LINE_CHARS: usize = 2_000;
/// Most log text one attempt may write, bytes; past it one last line says so and the rest
/// is dropped.
pub const MAX_LOG_BYTES_PER_ATTEMPT: usize = 256 * 1024;
/// Log lines waiting to be written; a job logging faster than Redis takes them loses some
/// (and a line says how many). Progress never waits in line: the latest report is kept.
const QUEUED_LINES: usize = 4_096;
/// How long events gather before they are written together.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events written in one call.
const BATCH_SIZE: usize = 200;
/// How long the end of an attempt waits for its last events to be written.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

tokio::task_local! {
    static CURRENT: JobContext;
}

/// The running job's handle for reporting progress and log lines (SPEC §10). Inside an
/// in-process function, [`JobContext::current`] gives it; outside a job every call is a
/// no-op.
#[derive(Clone, Default)]
pub struct JobContext {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    lines: mpsc::Sender<ActivityEntry>,
    /// The latest progress report not written yet.
    progress: Mutex<Option<ActivityEntry>>,
    /// Wakes the writer for a progress report.
    reported: Notify,
    attempt: u32,
    log_bytes: AtomicUsize,
    /// Lines dropped because the queue was full, not said yet.
    dropped: AtomicUsize,
    truncated: AtomicBool,
    ended: AtomicBool,
}

impl Inner {
    fn new(lines: mpsc::Sender<ActivityEntry>, attempt: u32) -> Inner {
        Inner {
            lines,
            progress: Mutex::new(None),
            reported: Notify::new(),
            attempt,
            log_bytes: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        }
    }

    /// The events to write next: queued lines (at most [`BATCH_SIZE`]), a line counting
    /// the dropped ones, then the latest progress once no line waits.
    fn take_batch(&self, lines: &mut mpsc::Receiver<ActivityEntry>) -> Vec<ActivityEntry> {
        let mut batch = Vec::new();
        while batch.len() < BATCH_SIZE {
            match lines.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push(self.entry(ActivityKind::Log {
                line: format!("[{dropped} log lines dropped: logged faster than they could be stored]"),
            }));
        }
        // After the lines logged before it: only once the queue is drained.
        if batch.len() < BATCH_SIZE {
            batch.extend(self.progress.lock().expect("progress").take());
        }
        batch
    }

    fn entry(&self, kind: ActivityKind) -> ActivityEntry {
        ActivityEntry {
            at_ms: now_ms(),
            attempt: self.attempt,
            kind,
        }
    }
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("attempt", &self.inner.as_ref().map(|i| i.attempt))
            .finish()
    }
}

impl JobContext {
    /// The context of the job running on this task (a no-op one outside a job).
    pub fn current() -> JobContext {
        CURRENT.try_with(JobContext::clone).unwrap_or_default()
    }

    /// Reports how far the job is: `percent` from 0 to 100 (clamped; NaN is ignored) and
    /// optionally what it is doing. The record shows the latest.
    pub fn progress(&self, percent: f64, message: Option<&str>) {
        if percent.is_nan() {
            return;
        }
        self.send(ActivityKind::Progress {
            percent: percent.clamp(0.0, 100.0),
            message: message.map(|m| truncate(m.trim_end()).into_owned()),
        });
    }

    /// Logs `text`, one entry per line (bounded: [`MAX_LINE_CHARS`] per line,
    /// [`MAX_LOG_BYTES_PER_ATTEMPT`] per attempt).
    pub fn log(&self, text: &str) {
        for line in text.lines() {
            self.log_line(line);
        }
    }

    fn log_line(&self, line: &str) {
        let Some(inner) = &self.inner else { return };
        let line = truncate(line);
        let used = inner.log_bytes.fetch_add(line.len(), Ordering::Relaxed) + line.len();
        if used > MAX_LOG_BYTES_PER_ATTEMPT {
            if !inner.truncated.swap(true, Ordering::Relaxed) {
                self.send(ActivityKind::Log {
                    line: format!(
                        "[log truncated: this attempt logged more than {MAX_LOG_BYTES_PER_ATTEMPT} bytes]"
                    ),
                });
            }
            return;
        }
        self.send(ActivityKind::Log {
            line: line.into_owned(),
        });
    }

    fn send(&self, kind: ActivityKind) {
        let Some(inner) = &self.inner else { return };
        if inner.ended.load(Ordering::Relaxed) {
            return;
        }
        let entry = inner.entry(kind);
        if matches!(entry.kind, ActivityKind::Progress { .. }) {
            *inner.progress.lock().expect("progress") = Some(entry);
            inner.reported.notify_one();
        } else if inner.lines.try_send(entry).is_err() {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `work` with this context as [`JobContext::current`].
    pub(crate) fn scope<F: Future>(self, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, work)
    }
}

/// `line` cut to [`MAX_LINE_CHARS`] characters, marked with `…` when cut.
fn truncate(line: &str) -> std::borrow::Cow<'_, str> {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        None => line.into(),
        Some((cut, _)) => format!("{}…", &line[..cut]).into(),
    }
}

/// Writes one attempt's events to the coordinator until the attempt ends.
pub(crate) struct ActivityRecorder {
    context: JobContext,
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl ActivityRecorder {
    /// Starts recording the events of `attempt` of job `id` of `group`.
    pub(crate) fn start(coordinator: Coordinator, group: &str, id: &str, attempt: u32) -> ActivityRecorder {
        let (lines, receiver) = mpsc::channel(QUEUED_LINES);
        let done = CancellationToken::new();
        let inner = Arc::new(Inner::new(lines, attempt));
        let writer = Writer {
            coordinator,
            group: group.to_string(),
            id: id.to_string(),
            inner: inner.clone(),
        };
        let task = tokio::spawn(writer.run(receiver, done.clone()));
        ActivityRecorder {
            context: JobContext { inner: Some(inner) },
            done,
            task,
        }
    }

    /// The context the attempt's function reports through.
    pub(crate) fn context(&self) -> JobContext {
        self.context.clone()
    }

    /// Ends the attempt's reporting: later calls are dropped, what is queued is written
    /// (waiting at most [`FINAL_FLUSH`]), so the events precede the job's outcome.
    pub(crate) async fn finish(self) {
        if let Some(inner) = &self.context.inner {
            inner.ended.store(true, Ordering::Relaxed);
        }
        self.done.cancel();
        let mut task = self.task;
        if tokio::time::timeout(FINAL_FLUSH, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The task that writes an attempt's events.
struct Writer {
    coordinator: Coordinator,
    group: String,
    id: String,
    inner: Arc<Inner>,
}

impl Writer {
    async fn run(self, mut lines: mpsc::Receiver<ActivityEntry>, done: CancellationToken) {
        loop {
            let woken = tokio::select! {
                line = lines.recv() => line.map(Some),
                _ = self.inner.reported.notified() => Some(None),
                _ = done.cancelled() => None,
            };
            let mut batch: Vec<ActivityEntry> = Vec::new();
            if let Some(first) = woken {
                batch.extend(first);
                if !done.is_cancelled() {
                    // Let a burst gather into one call.
                    tokio::select! {
                        _ = tokio::time::sleep(BATCH_WINDOW) => {}
                        _ = done.cancelled() => {}
                    }
                }
            }
            batch.extend(self.inner.take_batch(&mut lines));
            if batch.is_empty() {
                if done.is_cancelled() {
                    return;
                }
                continue;
            }
            self.write(&batch).await;
        }
    }

    /// Writes a batch; a failure drops it (events are best effort, never worth a stall).
    async fn write(&self, batch: &[ActivityEntry]) {
        let written = self
            .coordinator
            .append_activity(&self.group, &self.id, self.inner.attempt, batch)
            .await;
        if let Err(e) = written {
            tracing::debug!(error = %e, dropped = batch.len(), "could not store a job's log lines");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (JobContext, mpsc::Receiver<ActivityEntry>) {
        let (lines, receiver) = mpsc::channel(QUEUED_LINES);
        let context = JobContext {
            inner: Some(Arc::new(Inner::new(lines, 1))),
        };
        (context, receiver)
    }

    fn lines(receiver: &mut mpsc::Receiver<ActivityEntry>) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(entry) = receiver.try_recv() {
            if let ActivityKind::Log { line } = entry.kind {
                lines.push(line);
            }
        }
        lines
    }

    #[test]
    fn text_is_logged_line_by_line_and_long_lines_are_cut() {
        let (context, mut receiver) = recording();
        context.log("one\ntwo\r\n");
        context.log(&"é".repeat(MAX_LINE_CHARS + 5));
        let lines = lines(&mut receiver);
        assert_eq!(&lines[..2], ["one", "two"]);
        assert_eq!(lines[2].chars().count(), MAX_LINE_CHARS + 1);
        assert!(lines[2].ends_with('…'));
    }

    #[test]
    fn an_attempt_logs_a_bounded_amount_then_says_it_was_cut() {
        let (context, mut receiver) = recording();
        let line = "x".repeat(1_000);
        for _ in 0..300 {
            context.log(&line);
        }
        let lines = lines(&mut receiver);
        let kept = MAX_LOG_BYTES_PER_ATTEMPT / 1_000;
        assert_eq!(lines.len(), kept + 1);
        assert!(lines[kept].starts_with("[log truncated"), "{}", lines[kept]);
    }

    #[test]
    fn progress_is_clamped_nan_ignored_and_only_the_latest_kept() {
        let (context, mut receiver) = recording();
        context.progress(10.0, None);
        context.progress(150.0, Some("done"));
        context.progress(f64::NAN, None);
        let inner = context.inner.as_ref().unwrap();
        let batch = inner.take_batch(&mut receiver);
        let kinds: Vec<ActivityKind> = batch.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [ActivityKind::Progress {
                percent: 100.0,
                message: Some("done".into())
            }]
        );
    }

    #[test]
    fn lines_past_the_queue_are_dropped_and_counted() {
        let (context, mut receiver) = recording();
        for i in 0..QUEUED_LINES + 7 {
            context.log(&i.to_string());
        }
        let inner = context.inner.as_ref().unwrap();
        let mut all = Vec::new();
        loop {
            let batch = inner.take_batch(&mut receiver);
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        assert_eq!(all.len(), QUEUED_LINES + 1);
        let said = all
            .iter()
            .filter(
                |e| matches!(&e.kind, ActivityKind::Log { line } if line.starts_with("[7 log lines dropped")),
            )
            .count();
        assert_eq!(said, 1);
    }

    #[tokio::test]
    async fn outside_a_job_the_context_does_nothing_and_inside_it_is_current() {
        JobContext::current().log("nowhere");
        let (context, mut receiver) = recording();
        context
            .scope(async {
                JobContext::current().log("here");
            })
            .await;
        assert_eq!(lines(&mut receiver), ["here"]);
    }
}
