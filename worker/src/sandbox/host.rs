//! The worker's side of its process sandboxes (SPEC §8): one per worker, made when the worker
//! is built. It makes the worker non-dumpable (so that job code running as the worker's own
//! user cannot read its `/proc/<pid>/environ` or memory), owns the temp root of the jobs'
//! working directories and, where cgroup v2 is usable, the cgroup of their cgroups. Both are
//! cleaned up when the worker stops, and at the next start after a SIGKILL.

use super::cgroup::{CgroupRoot, JobCgroup};
use super::identity::Credentials;
use super::workdir::{TempRoot, WorkDir};
use jobfleet_common::message::{ErrorKind, JobError};
use nix::errno::Errno;
use std::sync::Arc;
use tracing::{info, warn};

/// Why the process sandboxes cannot be set up as configured. The worker refuses to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// `user` names no user of this host.
    #[error("function {function}: user {user:?} does not exist on this host")]
    UnknownUser {
        /// `group.function`.
        function: String,
        /// The user.
        user: String,
    },
    /// The user database could not be read.
    #[error("function {function}: cannot look up user {user:?}: {source}")]
    UserLookup {
        /// `group.function`.
        function: String,
        /// The user.
        user: String,
        /// Why.
        source: Errno,
    },
    /// `user` names another user, and the worker is not root.
    #[error("function {function}: user = {user:?} needs a worker that runs as root")]
    UserNeedsRoot {
        /// `group.function`.
        function: String,
        /// The user.
        user: String,
    },
    /// `limits.processes` for processes that run as root, which RLIMIT_NPROC does not bind.
    #[error("function {function}: limits.processes cannot bind processes that run as root; set `user`")]
    ProcessesAsRoot {
        /// `group.function`.
        function: String,
    },
    /// `isolation = "namespace"` without bubblewrap.
    #[error(
        "function {function}: isolation = \"namespace\" needs bubblewrap, and `bwrap` is not on \
         PATH (install the Debian package `bubblewrap`)"
    )]
    NoBubblewrap {
        /// `group.function`.
        function: String,
    },
    /// bubblewrap is there but cannot build the sandbox (no user namespaces, say).
    #[error("function {function}: bubblewrap cannot build the sandbox: {reason}")]
    Bubblewrap {
        /// `group.function`.
        function: String,
        /// What bwrap said, or how its trial run failed.
        reason: String,
    },
    /// The temp root of the working directories could not be made.
    #[error("cannot create the sandboxes' temp dir: {0}")]
    TempRoot(#[source] std::io::Error),
}

/// The worker's side of its process sandboxes; see the module doc.
#[derive(Debug)]
pub struct SandboxHost {
    // Field order is drop order: the cgroups are emptied before the directories go.
    cgroups: Option<CgroupRoot>,
    temp: TempRoot,
}

impl SandboxHost {
    /// Sets the sandboxes up: cleans what dead workers left, makes the worker non-dumpable,
    /// creates the temp root and, where possible, the worker's cgroup.
    pub fn start() -> Result<Arc<SandboxHost>, SandboxError> {
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            warn!(error = %e, "cannot make the worker non-dumpable; job code running as its user can read its /proc files");
        }
        let temp = TempRoot::create().map_err(SandboxError::TempRoot)?;
        let cgroups = match CgroupRoot::create() {
            Ok(cgroups) => {
                info!(cgroup = %cgroups.path().display(), "each sandboxed process gets a cgroup of its own");
                Some(cgroups)
            }
            Err(e) => {
                warn!(
                    reason = %e,
                    "cgroup v2 is not usable: cancel and timeout find a job's processes through its \
                     process group and parent links, and what a job leaves behind after it exits \
                     or after a worker crash in a new session of its own may survive"
                );
                None
            }
        };
        Ok(Arc::new(SandboxHost { cgroups, temp }))
    }

    /// A fresh working directory owned by `owner` (none: the worker's user).
    pub(super) fn workdir(&self, owner: Option<Credentials>) -> Result<WorkDir, JobError> {
        self.temp.workdir(owner)
    }

    /// A fresh cgroup for one process, when cgroups are in use.
    pub(super) fn cgroup(&self) -> Result<Option<JobCgroup>, JobError> {
        self.cgroups
            .as_ref()
            .map(|root| {
                root.job().map_err(|e| {
                    JobError::new(
                        ErrorKind::Crashed,
                        format!("cannot create the process's cgroup: {e}"),
                    )
                })
            })
            .transpose()
    }
}
