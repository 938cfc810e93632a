//! What a sandboxed process does between fork and exec, in this order: a session of its
//! own (own process group, no controlling terminal), its cgroup, its rlimits, the child
//! subreaper flag (without a cgroup), the job user's credentials, and last the parent-death
//! signal (changing credentials clears it).

use super::identity::Credentials;
use nix::fcntl::{open, OFlag};
use nix::sys::prctl;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{getppid, setgid, setgroups, setsid, setuid, write, Pid};
use std::ffi::CString;

/// rlimits applied to every sandboxed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Address space, bytes (RLIMIT_AS).
    pub memory_bytes: Option<u64>,
    /// CPU time, seconds (RLIMIT_CPU).
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
    /// Processes of the user (RLIMIT_NPROC).
    pub processes: Option<u64>,
    /// Largest file written, bytes (RLIMIT_FSIZE).
    pub file_size_bytes: Option<u64>,
}

impl Limits {
    fn table(self) -> [(Resource, Option<u64>); 5] {
        [
            (Resource::RLIMIT_AS, self.memory_bytes),
            (Resource::RLIMIT_CPU, self.cpu_seconds),
            (Resource::RLIMIT_NOFILE, self.open_files),
            (Resource::RLIMIT_NPROC, self.processes),
            (Resource::RLIMIT_FSIZE, self.file_size_bytes),
        ]
    }
}

/// Everything the child sets up before exec; paths are prepared here, since the child may
/// not allocate.
#[derive(Debug)]
pub(super) struct ChildSetup {
    /// `cgroup.procs` of the process's cgroup, to move itself into.
    pub(super) cgroup_procs: Option<CString>,
    /// rlimits.
    pub(super) limits: Limits,
    /// Adopt orphaned descendants, so that a stop finds them (when there is no cgroup).
    pub(super) subreaper: bool,
    /// The user to become.
    pub(super) credentials: Option<Credentials>,
    /// The worker: the child dies when it does.
    pub(super) parent: Pid,
}

/// Installs `setup` as the command's pre-exec step.
#[allow(unsafe_code)]
pub(super) fn configure(command: &mut std::process::Command, setup: ChildSetup) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // that are async-signal-safe (setsid, open, write, setrlimit, prctl, setgroups, setgid,
    // setuid, getppid); it allocates nothing: the path was prepared before the fork and
    // io::Error is built from a raw errno.
    unsafe {
        command.pre_exec(move || setup.apply().map_err(std::io::Error::from));
    }
}

impl ChildSetup {
    fn apply(&self) -> nix::Result<()> {
        setsid()?;
        if let Some(procs) = &self.cgroup_procs {
            // Writing 0 moves the writer: from here on every descendant is in the cgroup.
            let fd = open(
                procs.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            write(&fd, b"0")?;
        }
        for (resource, limit) in self.limits.table() {
            if let Some(limit) = limit {
                setrlimit(resource, limit, limit)?;
            }
        }
        if self.subreaper {
            prctl::set_child_subreaper(true)?;
        }
        if let Some(credentials) = self.credentials {
            setgroups(&[credentials.gid])?;
            setgid(credentials.gid)?;
            setuid(credentials.uid)?;
        }
        prctl::set_pdeathsig(Signal::SIGKILL)?;
        // The worker may have died before the signal was armed.
        if getppid() != self.parent {
            return Err(nix::errno::Errno::ESRCH);
        }
        Ok(())
    }
}
