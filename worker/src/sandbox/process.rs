//! The `process` sandbox (SPEC §6, §8): a command run as argv (never through a shell) with
//! the job's args as JSON on stdin and its result as JSON on stdout. Each process leads a
//! session of its own, in a cgroup of its own where cgroup v2 is usable, with a cleared
//! environment plus an allow-list, its own temporary working directory, rlimits, the job
//! user's credentials and a parent-death signal; optionally under bubblewrap. On timeout or
//! cancel all it started gets TERM, then KILL.
//!
//! `exclusive` mode starts a fresh process per job; `shared` mode keeps processes alive
//! (see [`super::shared`]).

use super::bubblewrap::Bubblewrap;
use super::containment::Containment;
use super::host::{SandboxError, SandboxHost};
use super::identity::RunAs;
pub use super::launch::Limits;
use super::launch::{self, ChildSetup};
use super::protocol::{classify, Line};
use super::shared::SharedPool;
use super::workdir::WorkDir;
use crate::activity::JobContext;
use crate::function::HandlerResult;
use jobfleet_common::config::{FunctionConfig, Isolation, ProcessMode};
use jobfleet_common::message::{ErrorKind, JobError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Largest stdout accepted from a process (a result), bytes.
pub(super) const MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
/// How much of stderr a failure reports, bytes.
const STDERR_TAIL_BYTES: usize = 4096;
/// PATH of a sandboxed process unless the allow-list passes the worker's.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How to start a function's processes.
#[derive(Debug)]
pub struct ProcessSpec {
    /// argv; the first element is the program.
    pub argv: Vec<String>,
    /// The environment: what the allow-list passes from the worker, plus PATH and LANG.
    pub env: Vec<(String, String)>,
    /// rlimits.
    pub limits: Limits,
    /// Between TERM and KILL when a process is stopped.
    pub kill_grace: Duration,
    run_as: RunAs,
    namespace: Option<Bubblewrap>,
    host: Arc<SandboxHost>,
}

/// A running sandboxed process. Field order is drop order: what contains the process is
/// killed while the process is still there to find its descendants by.
pub(super) struct Sandboxed {
    pub(super) containment: Containment,
    pub(super) child: Child,
    pub(super) workdir: WorkDir,
}

impl ProcessSpec {
    /// The spec of the configured process function `name` (`group.function`). Arguments that
    /// name an existing relative path are made absolute, since the process runs in its own
    /// directory. Checks the hardening settings, and that bubblewrap works for a
    /// `namespace` function.
    pub fn from_config(
        name: &str,
        function: &FunctionConfig,
        host: Arc<SandboxHost>,
    ) -> Result<ProcessSpec, SandboxError> {
        let run_as = RunAs::resolve(name, function.user.as_deref(), nix::unistd::geteuid())?;
        if run_as.root && function.limits.processes.is_some() {
            return Err(SandboxError::ProcessesAsRoot {
                function: name.to_string(),
            });
        }
        let namespace = match function.isolation {
            Isolation::None => None,
            Isolation::Namespace => Some(Bubblewrap::find(
                name,
                function.network.unwrap_or(false),
                run_as.root,
            )?),
        };
        let limits = &function.limits;
        let spec = ProcessSpec {
            argv: absolute_paths(&function.command),
            env: environment(&function.env),
            limits: Limits {
                memory_bytes: limits.memory_mb.map(mebibytes),
                cpu_seconds: limits.cpu_seconds,
                open_files: limits.open_files,
                processes: limits.processes,
                file_size_bytes: limits.file_size_mb.map(mebibytes),
            },
            kill_grace: limits.kill_grace.unwrap_or(Duration::from_secs(2)),
            run_as,
            namespace,
            host,
        };
        if spec.namespace.is_some() {
            spec.try_namespace(name)?;
        }
        Ok(spec)
    }

    /// Runs `true` in the function's namespace sandbox, so that a host where bubblewrap
    /// cannot work (no user namespaces) fails at start rather than at each job.
    fn try_namespace(&self, name: &str) -> Result<(), SandboxError> {
        let failed = |reason: String| SandboxError::Bubblewrap {
            function: name.to_string(),
            reason,
        };
        let workdir = self
            .host
            .workdir(self.run_as.switch)
            .map_err(|e| failed(e.message))?;
        let output = self
            .command(&["true".to_string()], workdir.path(), &[], None)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| failed(format!("cannot run it: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(failed(if said.is_empty() {
            format!("a trial run ended with {}", output.status)
        } else {
            said
        }))
    }

    /// The command that runs `argv` in `workdir` (under bubblewrap for a `namespace`
    /// function), set up to enter the cgroup whose `cgroup.procs` is given.
    fn command(
        &self,
        argv: &[String],
        workdir: &Path,
        extra_env: &[(&str, String)],
        cgroup_procs: Option<CString>,
    ) -> std::process::Command {
        let (program, args): (OsString, Vec<OsString>) = match &self.namespace {
            Some(bwrap) => (bwrap.program().into(), bwrap.args(workdir, argv)),
            None => (
                argv.first().map(OsString::from).unwrap_or_default(),
                argv.iter().skip(1).map(OsString::from).collect(),
            ),
        };
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOME", workdir)
            .env("TMPDIR", workdir)
            .current_dir(workdir);
        // Without a cgroup the process adopts its orphans, so that a stop finds them; under
        // bubblewrap its PID namespace holds them.
        let subreaper = cgroup_procs.is_none() && self.namespace.is_none();
        launch::configure(
            &mut command,
            ChildSetup {
                cgroup_procs,
                limits: self.limits,
                subreaper,
                credentials: self.run_as.switch,
                parent: Pid::this(),
            },
        );
        command
    }

    /// Starts one process in a fresh working directory and cgroup.
    pub(super) fn spawn(&self, extra_env: &[(&str, String)]) -> Result<Sandboxed, JobError> {
        let program = self
            .argv
            .first()
            .ok_or_else(|| JobError::new(ErrorKind::Crashed, "the function has an empty command"))?;
        let workdir = self.host.workdir(self.run_as.switch)?;
        let cgroup = self.host.cgroup()?;
        let procs = cgroup
            .as_ref()
            .map(|cgroup| cgroup.procs_file())
            .transpose()
            .map_err(|e| {
                JobError::new(
                    ErrorKind::Crashed,
                    format!("cannot use the process's cgroup: {e}"),
                )
            })?;
        let mut command = Command::from(self.command(&self.argv, workdir.path(), extra_env, procs));
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| JobError::new(ErrorKind::Crashed, format!("cannot start {program:?}: {e}")))?;
        let leader = child
            .id()
            .ok_or_else(|| JobError::new(ErrorKind::Crashed, "the process ended before it started"))?;
        Ok(Sandboxed {
            containment: Containment::new(leader, cgroup),
            child,
            workdir,
        })
    }

    /// The error for a process that ended without a result. bubblewrap reports its
    /// command's death by signal N as exit status 128 + N.
    pub(super) fn exit_error(&self, status: ExitStatus, stderr: &Mutex<Tail>) -> JobError {
        use std::os::unix::process::ExitStatusExt;
        let signal = match (status.code(), status.signal()) {
            (Some(code), _) if self.namespace.is_some() && (129..=192).contains(&code) => Some(code - 128),
            (_, signal) => signal,
        };
        match (status.code(), signal) {
            (_, Some(signal)) => JobError::new(
                ErrorKind::Crashed,
                with_stderr(
                    format!("killed by signal {signal}{}", signal_name(signal)),
                    stderr,
                ),
            ),
            (Some(code), None) => JobError::new(
                ErrorKind::FunctionError,
                with_stderr(format!("exited with status {code}"), stderr),
            ),
            _ => JobError::new(ErrorKind::Crashed, with_stderr("ended abnormally".into(), stderr)),
        }
    }
}

/// Bytes in `mb` MiB (a limit too large for u64 is no limit).
fn mebibytes(mb: u64) -> u64 {
    mb.saturating_mul(1024 * 1024)
}

/// ` (SIGXFSZ)` for 25.
fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|signal| format!(" ({})", signal.as_str()))
        .unwrap_or_default()
}

/// The command with its arguments that name existing relative paths made absolute.
fn absolute_paths(command: &[String]) -> Vec<String> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    command
        .iter()
        .map(|arg| {
            let path = Path::new(arg);
            if arg.contains('/') && path.is_relative() && cwd.join(path).exists() {
                cwd.join(path).to_string_lossy().into_owned()
            } else {
                arg.clone()
            }
        })
        .collect()
}

/// The allow-listed variables of the worker's environment, plus PATH and LANG.
fn environment(allowed: &[String]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = allowed
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
        .collect();
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(name, _)| name == "LANG") {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env
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

/// Where a process's stderr lines go as log lines: the context of the job it serves now.
pub(super) type LogSink = Arc<Mutex<JobContext>>;

/// Longest stderr stretch without a line break taken as one line, bytes.
const MAX_STDERR_LINE_BYTES: usize = 16 * 1024;

/// Drains a stream into a shared tail until it ends, and logs each of its lines to the job
/// `logs` names at the time. The task ends with the stream.
pub(super) fn collect_tail(
    stream: impl AsyncRead + Unpin + Send + 'static,
    logs: LogSink,
) -> (Arc<Mutex<Tail>>, tokio::task::JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let sink = tail.clone();
    let reader = tokio::spawn(async move {
        let mut stream = stream;
        let mut buffer = [0u8; 4096];
        let mut partial = Vec::new();
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock().expect("tail").push(&buffer[..n]);
            partial.extend_from_slice(&buffer[..n]);
            log_lines(&mut partial, &logs);
        }
        if !partial.is_empty() {
            partial.push(b'\n');
            log_lines(&mut partial, &logs);
        }
    });
    (tail, reader)
}

/// Logs the complete lines at the front of `partial` (and an overlong unbroken stretch),
/// leaving the rest.
fn log_lines(partial: &mut Vec<u8>, logs: &LogSink) {
    let cut = match partial.iter().rposition(|&b| b == b'\n') {
        Some(last) => last + 1,
        None if partial.len() > MAX_STDERR_LINE_BYTES => partial.len(),
        None => return,
    };
    let text: Vec<u8> = partial.drain(..cut).collect();
    let context = logs.lock().expect("log sink").clone();
    context.log(&String::from_utf8_lossy(&text));
}

pub(super) fn with_stderr(message: String, stderr: &Mutex<Tail>) -> String {
    let tail = stderr.lock().expect("tail").text();
    if tail.is_empty() {
        message
    } else {
        format!("{message}; stderr: {tail}")
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
    /// The sandbox of the configured process function `name` (`group.function`); a shared
    /// pool holds at most `concurrency` processes.
    pub fn from_config(
        name: &str,
        function: &FunctionConfig,
        concurrency: usize,
        host: Arc<SandboxHost>,
    ) -> Result<ProcessFunction, SandboxError> {
        let spec = ProcessSpec::from_config(name, function, host)?;
        Ok(match function.mode {
            ProcessMode::Exclusive => ProcessFunction::Exclusive(spec),
            ProcessMode::Shared => ProcessFunction::Shared(SharedPool::new(
                spec,
                concurrency,
                function.recycle_after.unwrap_or(1000),
            )),
        })
    }

    /// Runs one job: `Ok` with the result, or the job's error. Stops the process and all it
    /// started on the job's timeout (kind `timeout`) or when `stop` fires (kind `canceled`).
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
    /// Where its progress lines and stderr lines go.
    pub context: JobContext,
}

async fn run_exclusive(spec: &ProcessSpec, job: ProcessJob<'_>, stop: &CancellationToken) -> HandlerResult {
    let mut env = vec![
        ("JOBFLEET_JOB_ID", job.id.to_string()),
        ("JOBFLEET_ATTEMPT", job.attempt.to_string()),
    ];
    env.extend(job.traceparent.map(|t| ("TRACEPARENT", t)));
    let Sandboxed {
        containment,
        mut child,
        workdir,
    } = spec.spawn(&env)?;
    let input = serde_json::to_vec(job.args).unwrap_or_else(|_| b"null".to_vec());
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written on its own task: a process that does not read stdin must not block us.
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
    let logs = Arc::new(Mutex::new(job.context.clone()));
    let (stderr, stderr_reader) = collect_tail(child.stderr.take().expect("piped stderr"), logs);
    let stdout = child.stdout.take().expect("piped stdout");
    // Read on its own task: a grandchild may hold stdout open after the process exits.
    let reader = tokio::spawn(read_answer(stdout, job.context.clone()));
    let status = match super::bounded(child.wait(), job.timeout, stop).await {
        Ok(status) => status,
        Err(error) => {
            containment.stop(&mut child, spec.kill_grace).await;
            containment.release().await;
            return Err(error);
        }
    };
    // The process is gone; take anything it left behind with it, which also closes the
    // pipes a descendant may have held.
    containment.release().await;
    drop(workdir);
    let output = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // The pipes are closed now: the last stderr lines are logged before the outcome.
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_reader).await;
    let status = status.map_err(|e| JobError::new(ErrorKind::Crashed, format!("lost the process: {e}")))?;
    if !status.success() {
        return Err(spec.exit_error(status, &stderr));
    }
    if output.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&output)
        .map_err(|e| JobError::function(with_stderr(format!("stdout is not JSON: {e}"), &stderr)))
}

/// Reads an exclusive process's stdout: progress lines before anything else are reported
/// (SPEC §10), the rest is the answer (at most [`MAX_OUTPUT_BYTES`]).
async fn read_answer(stdout: impl AsyncRead + Unpin, context: JobContext) -> Vec<u8> {
    let mut stdout = BufReader::new(stdout.take(MAX_OUTPUT_BYTES));
    let mut output = Vec::new();
    loop {
        let mut line = Vec::new();
        match stdout.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return output,
            Ok(_) => {}
        }
        match classify(&line) {
            Line::Progress { percent, message } => context.progress(percent, message.as_deref()),
            _ => {
                output = line;
                break;
            }
        }
    }
    let _ = stdout.read_to_end(&mut output).await;
    output
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
