//! Directories a worker owns while it lives (its temp root, its cgroup), named
//! `jobfleet-worker-<pid>-<random>` and locked (`flock`) for the worker's lifetime. A lock
//! nobody holds marks a directory of a worker that is gone (a SIGKILL, a crash): the next
//! worker that starts next to it cleans it up. A lock works across PID namespaces and never
//! mistakes a reused pid for the dead worker.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The name prefix of every instance directory.
const PREFIX: &str = "jobfleet-worker-";

/// Attempts at creating an instance directory (a sweeper may take one for a dead worker's
/// in the moment between its mkdir and its lock).
const CREATE_ATTEMPTS: usize = 5;

/// A fresh instance name: `jobfleet-worker-<pid>-<random>`.
fn fresh_name() -> String {
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A directory this worker holds the lock of.
#[derive(Debug)]
pub(super) struct LockedDir {
    path: PathBuf,
    /// Holds the lock until dropped (and the kernel drops it when the worker dies).
    _lock: File,
}

impl LockedDir {
    /// Creates a fresh instance directory in `parent` with `mode`, and locks it.
    pub(super) fn create(parent: &Path, mode: u32) -> io::Result<LockedDir> {
        let mut attempt = 1;
        loop {
            match LockedDir::create_named(parent, &fresh_name(), mode) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < CREATE_ATTEMPTS => attempt += 1,
                created => return created,
            }
        }
    }

    fn create_named(parent: &Path, name: &str, mode: u32) -> io::Result<LockedDir> {
        let path = parent.join(name);
        DirBuilder::new().mode(mode).create(&path)?;
        let lock = File::open(&path)?;
        lock.lock()?;
        // A sweeper may have taken the unlocked directory for a dead worker's in the moment
        // between mkdir and lock: then it is gone, or another directory took its name.
        if std::fs::metadata(&path)?.ino() != lock.metadata()?.ino() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} was removed while being created", path.display()),
            ));
        }
        Ok(LockedDir { path, _lock: lock })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// The instance directories under `parent` whose worker is gone, each returned locked so
/// that no other sweeper removes it at the same time.
pub(super) fn abandoned(parent: &Path) -> Vec<LockedDir> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(PREFIX))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            // A directory of another user's worker may not even open: not ours to judge.
            let lock = File::open(entry.path()).ok()?;
            lock.try_lock().ok()?;
            Some(LockedDir {
                path: entry.path(),
                _lock: lock,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_not_abandoned_and_a_released_one_is() {
        let parent = std::env::temp_dir().join(format!("jobfleet-instance-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let held = LockedDir::create(&parent, 0o700).unwrap();
        let released = LockedDir::create(&parent, 0o700).unwrap();
        let released_path = released.path().to_path_buf();
        drop(released);
        std::fs::create_dir(parent.join("something-else")).unwrap();
        let found: Vec<PathBuf> = abandoned(&parent)
            .iter()
            .map(|d| d.path().to_path_buf())
            .collect();
        assert_eq!(found, vec![released_path]);
        assert!(held.path().exists());
        std::fs::remove_dir_all(parent).unwrap();
    }
}
