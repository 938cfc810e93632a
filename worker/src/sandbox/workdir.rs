//! Working directories of sandboxed processes: one per job (or per shared process), inside
//! the worker's own temp root `$TMPDIR/jobfleet-worker-<pid>-<random>/`. The roots of workers
//! that died without cleaning up (a SIGKILL) are removed when the next worker starts.

use super::identity::Credentials;
use super::instance::{self, LockedDir};
use jobfleet_common::message::{ErrorKind, JobError};
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use tracing::info;

/// The worker's temp root: traversable by every job user (mode 0711) but listable only by
/// the worker, so a job cannot find the others' directories.
#[derive(Debug)]
pub(super) struct TempRoot(LockedDir);

impl TempRoot {
    /// Removes the roots of dead workers, then creates this worker's.
    pub(super) fn create() -> io::Result<TempRoot> {
        let parent = std::env::temp_dir();
        for dead in instance::abandoned(&parent) {
            info!(dir = %dead.path().display(), "removing the temp dirs of a worker that is gone");
            let _ = std::fs::remove_dir_all(dead.path());
        }
        LockedDir::create(&parent, 0o711).map(TempRoot)
    }

    /// A fresh working directory owned by the user the process runs as.
    pub(super) fn workdir(&self, owner: Option<Credentials>) -> Result<WorkDir, JobError> {
        let path = self
            .0
            .path()
            .join(format!("job-{}", uuid::Uuid::new_v4().simple()));
        let created = DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .and_then(|()| match owner {
                Some(owner) => {
                    std::os::unix::fs::chown(&path, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                }
                None => Ok(()),
            });
        let workdir = WorkDir(path);
        created.map_err(|e| {
            JobError::new(
                ErrorKind::Crashed,
                format!("cannot create a working directory: {e}"),
            )
        })?;
        Ok(workdir)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.path());
    }
}

/// A job's (or a shared process's) own working directory, removed when dropped.
#[derive(Debug)]
pub(super) struct WorkDir(PathBuf);

impl WorkDir {
    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
