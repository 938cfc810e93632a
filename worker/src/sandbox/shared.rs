//! `shared` process sandboxes (SPEC §6): up to `concurrency` long-lived processes, each serving
//! one job at a time over newline-delimited JSON (request `{"id", "args"}` in, progress lines
//! and then one answer out, see [`super::protocol`]). Answers have no sequence number, so a
//! process whose stdout ever holds a line that no outstanding request asked for is killed
//! (with all it started) and replaced: a line waiting before a request is written, a line
//! that is not part of the protocol, output after an answer, an answer naming another
//! request's id. Such a line can never become another job's answer.

use super::containment::Containment;
use super::process::{
    collect_tail, with_stderr, LogSink, ProcessJob, ProcessSpec, Sandboxed, Tail, MAX_OUTPUT_BYTES,
};
use super::protocol::{classify, excerpt, Line};
use super::workdir::WorkDir;
use crate::activity::JobContext;
use crate::function::HandlerResult;
use jobfleet_common::message::{ErrorKind, JobError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a fresh process's first answer waits for more output before it is accepted, so
/// that a line printed at start-up that raced the first request is caught when the real
/// answer follows it.
const FIRST_ANSWER_SETTLE: Duration = Duration::from_millis(100);
/// How many times (a millisecond apart) an answer waits for unread stderr lines.
const STDERR_SETTLE_TRIES: u32 = 50;

/// One long-lived process of a shared pool. Field order is drop order (see [`Sandboxed`]).
struct SharedProcess {
    containment: Containment,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Tail>>,
    /// The job its stderr lines are logged to: the one it serves, else none.
    logs: LogSink,
    /// A second handle on its stderr pipe, to see whether lines wait to be read.
    stderr_watch: Option<OwnedFd>,
    /// Jobs answered.
    jobs: u32,
    /// Whether it has put the request's id in an answer: from then on every answer must.
    echoes_ids: bool,
    _workdir: WorkDir,
}

/// What a process's stdout holds right now, without waiting.
enum Pending {
    /// Nothing: it is waiting for a request.
    Nothing,
    /// Output nobody asked for (an excerpt).
    Output(String),
    /// End of file: the process is gone (or closed stdout).
    Closed,
}

/// How one request went, before the checks that follow an answer.
enum Exchange {
    /// An answer to this request.
    Answer(HandlerResult),
    /// A line that breaks the protocol: why.
    Broken(String),
    /// stdout ended or stdin broke: the process died.
    Closed,
}

/// What to do with a process after it answered.
enum Verdict {
    /// Serve the next job.
    Keep,
    /// It exited after answering: the answer stands, the process is gone.
    Exited,
    /// It printed more after its answer: the answer cannot be trusted.
    Broken(String),
}

impl SharedProcess {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What waits on stdout now: bytes already buffered, else what the pipe holds.
    fn pending(&self) -> Pending {
        let buffered = self.stdout.buffer();
        if !buffered.is_empty() {
            return Pending::Output(excerpt(buffered));
        }
        let pipe = self.stdout.get_ref().as_fd();
        let mut fds = [PollFd::new(pipe, PollFlags::POLLIN)];
        let revents = match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0].revents().unwrap_or(PollFlags::empty()),
            Err(Errno::EINTR) => return self.pending(),
            Err(_) => return Pending::Closed,
        };
        if revents.contains(PollFlags::POLLIN) {
            // Readable, so this read does not wait.
            let mut bytes = [0u8; 256];
            return match nix::unistd::read(pipe, &mut bytes) {
                Ok(0) => Pending::Closed,
                Ok(n) => Pending::Output(excerpt(&bytes[..n])),
                Err(Errno::EAGAIN) => Pending::Nothing,
                Err(_) => Pending::Closed,
            };
        }
        if revents.is_empty() {
            Pending::Nothing
        } else {
            Pending::Closed
        }
    }

    /// Writes the request and reads lines until its answer (progress lines are reported to
    /// `context`).
    async fn exchange(&mut self, request: &[u8], job_id: &str, context: &JobContext) -> Exchange {
        let written = async {
            self.stdin.write_all(request).await?;
            self.stdin.flush().await
        };
        if written.await.is_err() {
            return Exchange::Closed;
        }
        loop {
            let mut line = Vec::new();
            let mut limited = (&mut self.stdout).take(MAX_OUTPUT_BYTES + 1);
            match limited.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => return Exchange::Closed,
                Ok(_) if line.ends_with(b"\n") => {}
                Ok(n) if n as u64 > MAX_OUTPUT_BYTES => {
                    return Exchange::Broken(format!("a line longer than {MAX_OUTPUT_BYTES} bytes"))
                }
                Ok(_) => return Exchange::Closed,
            }
            match classify(&line) {
                Line::Progress { percent, message } => context.progress(percent, message.as_deref()),
                Line::Broken(reason) => return Exchange::Broken(reason),
                Line::Answer { id, outcome } => return self.match_id(id, job_id, outcome),
            }
        }
    }

    /// An answer naming an id must name this request's; once a process named one, it must
    /// keep doing so.
    fn match_id(&mut self, id: Option<Value>, job_id: &str, outcome: HandlerResult) -> Exchange {
        match id {
            Some(id) if id.as_str() != Some(job_id) => Exchange::Broken(format!(
                "an answer to request {id} while request {job_id:?} was outstanding"
            )),
            Some(_) => {
                self.echoes_ids = true;
                Exchange::Answer(outcome)
            }
            None if self.echoes_ids => Exchange::Broken(format!(
                "an answer without an id (request {job_id:?}) from a process that named ids before"
            )),
            None => Exchange::Answer(outcome),
        }
    }

    /// After an answer nothing else may be waiting; a fresh process's first answer also
    /// waits [`FIRST_ANSWER_SETTLE`] for a line that would show it was a start-up line.
    async fn verdict(&mut self) -> Verdict {
        let first = self.jobs == 1;
        let pending = match self.pending() {
            Pending::Nothing if first => self.settle().await,
            pending => pending,
        };
        match pending {
            Pending::Nothing => Verdict::Keep,
            Pending::Closed => Verdict::Exited,
            Pending::Output(more) => {
                let hint = if first {
                    " (its first: was a line printed at start-up taken for it?)"
                } else {
                    ""
                };
                Verdict::Broken(format!("more output after the answer{hint}: {more}"))
            }
        }
    }

    /// Waits (briefly) until the stderr lines written before the answer have been read, so
    /// they are logged to the job they belong to.
    async fn settle_stderr(&self) {
        let Some(watch) = &self.stderr_watch else { return };
        for _ in 0..STDERR_SETTLE_TRIES {
            let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            let readable = poll(&mut fds, PollTimeout::ZERO)
                .is_ok_and(|_| fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)));
            if !readable {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// What arrives on stdout within [`FIRST_ANSWER_SETTLE`].
    async fn settle(&mut self) -> Pending {
        match tokio::time::timeout(FIRST_ANSWER_SETTLE, self.stdout.fill_buf()).await {
            Err(_) => Pending::Nothing,
            Ok(Ok([])) | Ok(Err(_)) => Pending::Closed,
            Ok(Ok(more)) => Pending::Output(excerpt(more)),
        }
    }

    /// The job's error when the process broke the protocol; the caller drops (kills) it.
    fn broke_protocol(&self, reason: &str) -> JobError {
        JobError::new(
            ErrorKind::Crashed,
            with_stderr(
                format!(
                    "the shared process broke the protocol: {reason}; it was killed and a fresh \
                     one serves the next job"
                ),
                &self.stderr,
            ),
        )
    }

    /// The job's error when stdout ended mid-job.
    async fn died(&mut self, spec: &ProcessSpec) -> JobError {
        let status = tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await;
        // Let the stderr reader catch up with the last lines.
        tokio::task::yield_now().await;
        match status {
            Ok(Ok(status)) => {
                let error = spec.exit_error(status, &self.stderr);
                JobError::new(ErrorKind::Crashed, error.message)
            }
            _ => JobError::new(
                ErrorKind::Crashed,
                with_stderr("the process stopped answering".into(), &self.stderr),
            ),
        }
    }
}

/// Long-lived processes of a `shared` function: at most `size` of them, each serving one
/// job at a time, replaced when one dies or breaks the protocol, recycled after
/// `recycle_after` jobs.
pub struct SharedPool {
    spec: ProcessSpec,
    idle: Mutex<Vec<SharedProcess>>,
    slots: Semaphore,
    recycle_after: u32,
}

impl SharedPool {
    /// A pool of at most `size` processes.
    pub fn new(spec: ProcessSpec, size: usize, recycle_after: u32) -> SharedPool {
        SharedPool {
            spec,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(size.max(1)),
            recycle_after: recycle_after.max(1),
        }
    }

    fn start(&self) -> Result<SharedProcess, JobError> {
        let Sandboxed {
            containment,
            mut child,
            workdir,
        } = self.spec.spawn(&[])?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let logs = LogSink::default();
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr_watch = stderr_pipe.as_fd().try_clone_to_owned().ok();
        let (stderr, _reader) = collect_tail(stderr_pipe, logs.clone());
        Ok(SharedProcess {
            containment,
            child,
            stdin,
            stdout,
            stderr,
            logs,
            stderr_watch,
            jobs: 0,
            echoes_ids: false,
            _workdir: workdir,
        })
    }

    /// An idle process whose stdout is quiet, or a fresh one. An idle process that printed
    /// something is killed (dropped) here, before any request could take its line.
    fn checkout(&self) -> Result<SharedProcess, JobError> {
        loop {
            let Some(process) = self.idle.lock().expect("idle processes").pop() else {
                return self.start();
            };
            match process.pending() {
                Pending::Nothing => return Ok(process),
                Pending::Closed => debug!(pid = process.pid(), "a shared process ended while idle"),
                Pending::Output(line) => warn!(
                    pid = process.pid(),
                    command = ?self.spec.argv,
                    "a shared process broke the protocol: output while no request was outstanding: \
                     {line}; it is killed and replaced"
                ),
            }
        }
    }

    /// Runs one job on a process of the pool.
    pub(super) async fn run(&self, job: &ProcessJob<'_>, stop: &CancellationToken) -> HandlerResult {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| JobError::new(ErrorKind::Crashed, "the pool is closed"))?;
        let mut process = self.checkout()?;
        let mut request =
            serde_json::to_vec(&serde_json::json!({"id": job.id, "args": job.args})).unwrap_or_default();
        request.push(b'\n');
        // Its stderr lines belong to this job while it serves it.
        *process.logs.lock().expect("log sink") = job.context.clone();
        let exchange = process.exchange(&request, job.id, &job.context);
        let answer = match super::bounded(exchange, job.timeout, stop).await {
            Err(error) => {
                // The process is mid-job: stop it; the next job starts a fresh one.
                process
                    .containment
                    .stop(&mut process.child, self.spec.kill_grace)
                    .await;
                return Err(error);
            }
            Ok(Exchange::Closed) => return Err(process.died(&self.spec).await),
            Ok(Exchange::Broken(reason)) => return Err(self.discard(process, &reason)),
            Ok(Exchange::Answer(answer)) => answer,
        };
        process.jobs += 1;
        process.settle_stderr().await;
        *process.logs.lock().expect("log sink") = JobContext::default();
        match process.verdict().await {
            Verdict::Broken(reason) => return Err(self.discard(process, &reason)),
            Verdict::Exited => {}
            Verdict::Keep if process.jobs < self.recycle_after => {
                self.idle.lock().expect("idle processes").push(process)
            }
            Verdict::Keep => {}
        }
        answer
    }

    /// Kills a process that broke the protocol (with all it started, as it drops) and tells why.
    fn discard(&self, process: SharedProcess, reason: &str) -> JobError {
        warn!(
            pid = process.pid(),
            command = ?self.spec.argv,
            "a shared process broke the protocol: {reason}; it is killed and replaced"
        );
        process.broke_protocol(reason)
    }
}
