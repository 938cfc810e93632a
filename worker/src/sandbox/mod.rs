//! Sandboxes run one job of a function and turn whatever happens into an outcome.

mod bubblewrap;
mod cgroup;
mod containment;
mod host;
mod identity;
pub mod inprocess;
mod instance;
mod keeper;
mod launch;
pub mod process;
mod protocol;
pub mod shared;
mod workdir;

pub use host::{SandboxError, SandboxHost};

use jobfleet_common::message::{ErrorKind, JobError};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `work` until it ends, or fails it when `timeout` passes (kind `timeout`) or `stop`
/// fires (kind `canceled`); the caller then stops what `work` started.
pub(crate) async fn bounded<T>(
    work: impl Future<Output = T>,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<T, JobError> {
    tokio::select! {
        done = work => Ok(done),
        _ = tokio::time::sleep(timeout) => Err(timed_out(timeout)),
        _ = stop.cancelled() => Err(canceled()),
    }
}

/// The error of a job that ran past its `timeout`.
pub(crate) fn timed_out(timeout: Duration) -> JobError {
    JobError::new(
        ErrorKind::Timeout,
        format!("ran past its timeout of {} ms", timeout.as_millis()),
    )
}

/// The error of a job stopped by a cancel while it ran.
pub(crate) fn canceled() -> JobError {
    JobError::new(ErrorKind::Canceled, "canceled while running")
}
