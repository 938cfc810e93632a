//! cgroup v2 containment: every sandboxed process gets a cgroup of its own under the
//! worker's `jobfleet-worker-<pid>-<random>` cgroup, created next to the worker in its own v2
//! cgroup. Nothing a job starts can leave a cgroup (`setsid` and double forks included), and
//! `cgroup.kill` (Linux ≥ 5.14) kills all of it at once. Plain file operations on cgroupfs;
//! no crate is needed for mkdir, a write and rmdir.
//!
//! Where no v2 hierarchy is mounted, or the worker may not create cgroups in its own (a
//! non-root worker without delegation, a read-only `/sys/fs/cgroup` in a container), the
//! sandbox falls back to process groups and parent links (see [`super::containment`]).

use super::instance::{self, LockedDir};
use super::keeper::Keeper;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::info;

/// How long a killed cgroup may take to empty before its removal is given up.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an emptying cgroup is looked at.
const EMPTY_POLL: Duration = Duration::from_millis(10);

/// The worker's cgroup of job cgroups, and the keeper that kills them if the worker dies.
#[derive(Debug)]
pub(super) struct CgroupRoot {
    dir: LockedDir,
    _keeper: Keeper,
}

impl CgroupRoot {
    /// Kills and removes the cgroups of dead workers next to this one, then creates this
    /// worker's cgroup and its keeper. An error says why cgroups are not usable here.
    pub(super) fn create() -> io::Result<CgroupRoot> {
        let parent = own_v2_cgroup()?;
        if !parent.join("cgroup.procs").exists() {
            return Err(io::Error::other(format!(
                "{} is not a cgroup v2 directory",
                parent.display()
            )));
        }
        for dead in instance::abandoned(&parent) {
            info!(cgroup = %dead.path().display(), "killing what a worker that is gone left running");
            remove_tree(dead.path());
        }
        let dir = LockedDir::create(&parent, 0o755)?;
        if !dir.path().join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(dir.path());
            return Err(io::Error::other("no cgroup.kill (Linux 5.14 or later)"));
        }
        let keeper = Keeper::start(&dir.path().join("cgroup.kill"))?;
        Ok(CgroupRoot { dir, _keeper: keeper })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh cgroup for one sandboxed process.
    pub(super) fn job(&self) -> io::Result<JobCgroup> {
        let path = self
            .dir
            .path()
            .join(format!("job-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path)?;
        Ok(JobCgroup(path))
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        remove_tree(self.dir.path());
    }
}

/// The cgroup of one sandboxed process and all it starts.
#[derive(Debug)]
pub(super) struct JobCgroup(PathBuf);

impl JobCgroup {
    /// `cgroup.procs`, for the child to move itself in.
    pub(super) fn procs_file(&self) -> io::Result<CString> {
        CString::new(self.0.join("cgroup.procs").as_os_str().as_bytes()).map_err(io::Error::other)
    }

    /// The processes in it now.
    pub(super) fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.0.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|pid| pid.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process in it, new ones forked meanwhile included.
    pub(super) fn kill(&self) {
        kill(&self.0);
    }

    /// Whether no process is left in it.
    pub(super) fn is_empty(&self) -> bool {
        is_empty(&self.0)
    }

    /// Waits until it is empty (it should have been killed); false if it did not empty in time.
    pub(super) fn wait_empty(&self) -> bool {
        wait_empty(&self.0)
    }

    /// Waits until it is empty, without blocking the runtime.
    pub(super) async fn wait_empty_async(&self) {
        let deadline = tokio::time::Instant::now() + EMPTY_TIMEOUT;
        while !self.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(EMPTY_POLL).await;
        }
    }
}

impl Drop for JobCgroup {
    /// Removes the cgroup, which works once it is empty; a cgroup left over is removed with
    /// the worker's.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The v2 cgroup directory this process is in: the cgroup2 mount point joined with the
/// `0::` line of `/proc/self/cgroup`.
fn own_v2_cgroup() -> io::Result<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup")?;
    let path = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| io::Error::other("this process is in no cgroup v2 hierarchy"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let (root, mount_point) = mounts
        .lines()
        .find_map(v2_mount)
        .ok_or_else(|| io::Error::other("no cgroup2 file system is mounted"))?;
    let relative = path
        .strip_prefix(root.trim_end_matches('/'))
        .ok_or_else(|| io::Error::other(format!("the cgroup {path} is outside the mounted {root}")))?;
    Ok(Path::new(mount_point).join(relative.trim_start_matches('/')))
}

/// The root and mount point of a `cgroup2` line of `/proc/self/mountinfo`.
fn v2_mount(line: &str) -> Option<(&str, &str)> {
    let (mount, filesystem) = line.split_once(" - ")?;
    if filesystem.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mut fields = mount.split_whitespace().skip(3);
    Some((fields.next()?, fields.next()?))
}

fn kill(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), b"1");
}

fn is_empty(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => events.lines().any(|line| line == "populated 0"),
        Err(_) => true,
    }
}

fn wait_empty(dir: &Path) -> bool {
    let deadline = std::time::Instant::now() + EMPTY_TIMEOUT;
    while !is_empty(dir) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(EMPTY_POLL);
    }
    true
}

/// Kills everything in a cgroup and its children, then removes them all.
fn remove_tree(dir: &Path) {
    kill(dir);
    wait_empty(dir);
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.filter_map(Result::ok) {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_is_read_from_mountinfo() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw";
        assert_eq!(v2_mount(hybrid), Some(("/", "/sys/fs/cgroup/unified")));
        let v1 = "36 25 0:31 / /sys/fs/cgroup/pids rw shared:11 - cgroup cgroup rw,pids";
        assert_eq!(v2_mount(v1), None);
    }
}
