//! The `process` sandbox (SPEC §6): a command run as argv (never through a shell) with the
//! job's args as JSON on stdin and its result as JSON on stdout. Each process gets its own
//! process group, a cleared environment plus an allow-list, its own temporary working
//! directory, and rlimits; on timeout or cancel the whole group gets TERM, then KILL.
//!
//! `exclusive` mode starts a fresh process per job; `shared` mode keeps processes alive
//! (see [`super::shared`]).

use super::shared::SharedPool;
use crate::function::HandlerResult;
use jobfleet_common::config::{FunctionConfig, ProcessMode};
use jobfleet_common::message::{ErrorKind, JobError};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Largest stdout accepted from a process (a result), bytes.
pub(super) const MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
/// How much of stderr a failure reports, bytes.
const STDERR_TAIL_BYTES: usize = 4096;
/// PATH of a sandboxed process unless the allow-list passes the worker's.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// rlimits applied to every sandboxed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space, bytes (RLIMIT_AS).
    pub memory_bytes: Option<u64>,
    /// CPU time, seconds (RLIMIT_CPU).
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
}

/// How to start a function's processes.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// argv; the first element is the program.
    pub argv: Vec<String>,
    /// The environment: what the allow-list passes from the worker, plus PATH and LANG.
    pub env: Vec<(String, String)>,
    /// rlimits.
    pub limits: Limits,
    /// Between TERM and KILL when a process is stopped.
    pub kill_grace: Duration,
}

impl ProcessSpec {
    /// The spec of a configured process function. Arguments that name an existing
    /// relative path are made absolute, since the process runs in its own directory.
    pub fn from_config(function: &FunctionConfig) -> ProcessSpec {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let argv = function
            .command
            .iter()
            .map(|arg| {
                let path = Path::new(arg);
                if arg.contains('/') && path.is_relative() && cwd.join(path).exists() {
                    cwd.join(path).to_string_lossy().into_owned()
                } else {
                    arg.clone()
                }
            })
            .collect();
        let mut env: Vec<(String, String)> = function
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect();
        if !env.iter().any(|(name, _)| name == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !env.iter().any(|(name, _)| name == "LANG") {
            env.push(("LANG".into(), "C.UTF-8".into()));
        }
        ProcessSpec {
            argv,
            env,
            limits: Limits {
                memory_bytes: function.limits.memory_mb.map(|mb| mb * 1024 * 1024),
                cpu_seconds: function.limits.cpu_seconds,
                open_files: function.limits.open_files,
            },
            kill_grace: function.limits.kill_grace.unwrap_or(Duration::from_secs(2)),
        }
    }

    /// Starts one process in `workdir`, in its own process group.
    pub(super) fn spawn(&self, workdir: &Path, extra_env: &[(&str, String)]) -> Result<Child, JobError> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| JobError::new(ErrorKind::Crashed, "the function has an empty command"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOME", workdir)
            .env("TMPDIR", workdir)
            .current_dir(workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        limits::apply(&mut command, self.limits);
        command
            .spawn()
            .map_err(|e| JobError::new(ErrorKind::Crashed, format!("cannot start {program:?}: {e}")))
    }
}

/// The rlimits, set in the child between fork and exec.
#[allow(unsafe_code)]
mod limits {
    use super::Limits;
    use nix::sys::resource::{setrlimit, Resource};

    pub(super) fn apply(command: &mut tokio::process::Command, limits: Limits) {
        let set = [
            (Resource::RLIMIT_AS, limits.memory_bytes),
            (Resource::RLIMIT_CPU, limits.cpu_seconds),
            (Resource::RLIMIT_NOFILE, limits.open_files),
        ];
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setrlimit, which is async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for (resource, limit) in set {
                    if let Some(limit) = limit {
                        setrlimit(resource, limit, limit).map_err(std::io::Error::from)?;
                    }
                }
                Ok(())
            });
        }
    }
}

/// A process group that is killed when this guard drops, so that nothing a job started
/// outlives it: not the process, not a grandchild it left behind.
pub(super) struct GroupGuard(Pid);

impl GroupGuard {
    pub(super) fn of(child: &Child) -> Option<GroupGuard> {
        child.id().map(|pid| GroupGuard(Pid::from_raw(pid as i32)))
    }

    fn signal(&self, signal: Signal) {
        let _ = killpg(self.0, signal);
    }

    /// TERM, then KILL after `grace` unless the process exited by then.
    pub(super) async fn stop(&self, child: &mut Child, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let status = tokio::time::timeout(grace, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        self.signal(Signal::SIGKILL);
        match status {
            Some(status) => Some(status),
            None => child.wait().await.ok(),
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// A job's (or a shared process's) own working directory, removed when dropped.
pub(super) struct WorkDir(pub(super) PathBuf);

impl WorkDir {
    pub(super) fn create() -> Result<WorkDir, JobError> {
        let path = std::env::temp_dir().join(format!("jobfleet-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).map_err(|e| {
            JobError::new(
                ErrorKind::Crashed,
                format!("cannot create a working directory: {e}"),
            )
        })?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The last bytes of a stream.
#[derive(Default)]
pub(super) struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(STDERR_TAIL_BYTES);
        self.0.drain(..excess);
    }

    fn text(&self) -> String {
        let (a, b) = self.0.as_slices();
        String::from_utf8_lossy(&[a, b].concat()).trim().to_string()
    }
}

/// Drains a stream into a shared tail until it ends.
pub(super) fn collect_tail(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let sink = tail.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock().expect("tail").push(&buffer[..n]);
        }
    });
    tail
}

pub(super) fn with_stderr(message: String, stderr: &Mutex<Tail>) -> String {
    let tail = stderr.lock().expect("tail").text();
    if tail.is_empty() {
        message
    } else {
        format!("{message}; stderr: {tail}")
    }
}

/// The error for a process that ended without a result.
pub(super) fn exit_error(status: ExitStatus, stderr: &Mutex<Tail>) -> JobError {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => JobError::new(
            ErrorKind::FunctionError,
            with_stderr(format!("exited with status {code}"), stderr),
        ),
        (None, Some(signal)) => JobError::new(
            ErrorKind::Crashed,
            with_stderr(format!("killed by signal {signal}"), stderr),
        ),
        _ => JobError::new(ErrorKind::Crashed, with_stderr("ended abnormally".into(), stderr)),
    }
}

/// A function run in `process` sandboxes, in either mode.
pub enum ProcessFunction {
    /// A fresh process per job.
    Exclusive(ProcessSpec),
    /// A pool of long-lived processes.
    Shared(SharedPool),
}

impl ProcessFunction {
    /// The sandbox of a configured process function; a shared pool holds at most
    /// `concurrency` processes.
    pub fn from_config(function: &FunctionConfig, concurrency: usize) -> ProcessFunction {
        let spec = ProcessSpec::from_config(function);
        match function.mode {
            ProcessMode::Exclusive => ProcessFunction::Exclusive(spec),
            ProcessMode::Shared => ProcessFunction::Shared(SharedPool::new(
                spec,
                concurrency,
                function.recycle_after.unwrap_or(1000),
            )),
        }
    }

    /// Runs one job: `Ok` with the result, or the job's error. Stops the process group on
    /// the job's timeout (kind `timeout`) or when `stop` fires (kind `canceled`).
    pub async fn run(&self, job: ProcessJob<'_>, stop: &CancellationToken) -> HandlerResult {
        match self {
            ProcessFunction::Exclusive(spec) => run_exclusive(spec, job, stop).await,
            ProcessFunction::Shared(pool) => pool.run(&job, stop).await,
        }
    }
}

/// One job for a process sandbox.
#[derive(Debug, Clone)]
pub struct ProcessJob<'a> {
    /// The job's id (`JOBFLEET_JOB_ID` of an exclusive process, `id` of a shared request).
    pub id: &'a str,
    /// Which attempt this is (`JOBFLEET_ATTEMPT` of an exclusive process).
    pub attempt: u32,
    /// The args, written as JSON.
    pub args: &'a Value,
    /// How long it may run.
    pub timeout: Duration,
    /// The job's W3C `traceparent`, `TRACEPARENT` of an exclusive process.
    pub traceparent: Option<String>,
}

async fn run_exclusive(spec: &ProcessSpec, job: ProcessJob<'_>, stop: &CancellationToken) -> HandlerResult {
    let workdir = WorkDir::create()?;
    let mut env = vec![
        ("JOBFLEET_JOB_ID", job.id.to_string()),
        ("JOBFLEET_ATTEMPT", job.attempt.to_string()),
    ];
    env.extend(job.traceparent.map(|t| ("TRACEPARENT", t)));
    let mut child = spec.spawn(&workdir.0, &env)?;
    let group = GroupGuard::of(&child)
        .ok_or_else(|| JobError::new(ErrorKind::Crashed, "the process ended before it started"))?;
    let input = serde_json::to_vec(job.args).unwrap_or_else(|_| b"null".to_vec());
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written on its own task: a process that does not read stdin must not block us.
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
    let stderr = collect_tail(child.stderr.take().expect("piped stderr"));
    let mut stdout = child.stdout.take().expect("piped stdout").take(MAX_OUTPUT_BYTES);
    // Read on its own task: a grandchild may hold stdout open after the process exits.
    let reader = tokio::spawn(async move {
        let mut output = Vec::new();
        let _ = stdout.read_to_end(&mut output).await;
        output
    });
    let status = match super::bounded(child.wait(), job.timeout, stop).await {
        Ok(status) => status,
        Err(error) => {
            group.stop(&mut child, spec.kill_grace).await;
            return Err(error);
        }
    };
    // The process is gone; take anything it left in its group with it, which also closes
    // the pipes a grandchild may have held.
    drop(group);
    let output = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let status = status.map_err(|e| JobError::new(ErrorKind::Crashed, format!("lost the process: {e}")))?;
    if !status.success() {
        // Let the stderr reader catch up with the last lines.
        tokio::task::yield_now().await;
        return Err(exit_error(status, &stderr));
    }
    if output.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&output)
        .map_err(|e| JobError::function(with_stderr(format!("stdout is not JSON: {e}"), &stderr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; STDERR_TAIL_BYTES]);
        tail.push(b"the end");
        assert_eq!(tail.0.len(), STDERR_TAIL_BYTES);
        assert!(tail.text().ends_with("the end"));
    }
}
