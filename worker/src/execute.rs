//! A job's function resolved (in-process handler or process sandbox, with its timeout) and
//! run in its sandbox until it ends, times out or is stopped.

use crate::activity::JobContext;
use crate::consumer::Shared;
use crate::function::{Handler, HandlerResult};
use crate::sandbox::process::{ProcessFunction, ProcessJob};
use crate::sandbox::{self, inprocess};
use jobfleet_common::config::Config;
use jobfleet_common::message::{ErrorKind, JobError, JobMessage};
use jobfleet_common::trace::TraceParent;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a job's function runs.
enum Executable {
    /// A Rust handler in this process.
    InProcess(Handler),
    /// A process sandbox.
    Process(Arc<ProcessFunction>),
}

/// A job's function, resolved: how it runs and its timeout.
pub(crate) struct Resolved {
    executable: Executable,
    timeout: Duration,
}

impl Shared {
    /// How a job's function runs and for how long, or `unknown_function` (or
    /// `invalid_args` when the args break the function's schema).
    pub(crate) fn resolve(&self, job: &JobMessage) -> Result<Resolved, JobError> {
        let unknown = || {
            JobError::new(
                ErrorKind::UnknownFunction,
                format!("group {:?} has no function {:?}", job.group, job.function),
            )
        };
        let configured = match self.config.group(&job.group) {
            Some(group) => Some(group.functions.get(&job.function).ok_or_else(unknown)?),
            None => None,
        };
        let (executable, own_timeout) = match self.processes.get(&(job.group.clone(), job.function.clone())) {
            Some(process) => (Executable::Process(process.clone()), None),
            None => {
                let function = self.registry.get(&job.function).ok_or_else(unknown)?;
                (Executable::InProcess(function.handler.clone()), function.timeout)
            }
        };
        let timeout = job
            .timeout_ms
            .map(Duration::from_millis)
            .or_else(|| configured.and_then(|c| c.timeout))
            .or(own_timeout)
            .unwrap_or(Config::DEFAULT_TIMEOUT);
        // Checked again here: producers may publish straight to AMQP.
        self.schemas
            .check(&job.group, &job.function, &job.args)
            .map_err(JobError::invalid_args)?;
        Ok(Resolved { executable, timeout })
    }
}

impl Resolved {
    /// Runs `attempt` of `job` in its sandbox until it ends, times out or `stop` fires; its
    /// progress and log lines go to `context`.
    pub(crate) async fn run(
        &self,
        job: &JobMessage,
        attempt: u32,
        stop: &CancellationToken,
        trace: Option<&TraceParent>,
        context: &JobContext,
    ) -> HandlerResult {
        match &self.executable {
            Executable::InProcess(handler) => tokio::select! {
                result = inprocess::run(handler, job.args.clone(), self.timeout, context.clone()) => result,
                _ = stop.cancelled() => Err(sandbox::canceled()),
            },
            Executable::Process(process) => {
                let job = ProcessJob {
                    id: &job.id,
                    attempt,
                    args: &job.args,
                    timeout: self.timeout,
                    traceparent: trace.map(TraceParent::header),
                    context: context.clone(),
                };
                process.run(job, stop).await
            }
        }
    }
}
