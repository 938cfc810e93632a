//! The keeper: a small forked process that kills the worker's cgroup (every job process it
//! holds) as soon as the worker is gone, however it went (a SIGKILL included). It waits on a
//! pipe whose only write end the worker holds; the kernel closes that end when the worker
//! dies, and the keeper writes `1` to `cgroup.kill`. The parent-death signal already kills
//! each job's own process; the keeper also takes their descendants (`setsid` ones too).

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, read, setsid, write, ForkResult, Pid};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The keeper process, stopped (its cgroup killed) when this is dropped.
#[derive(Debug)]
pub(super) struct Keeper {
    pid: Pid,
    /// The worker's end of the pipe; closing it wakes the keeper.
    pipe: Option<OwnedFd>,
}

impl Keeper {
    /// Forks a keeper that writes `1` to `kill_file` once the worker is gone.
    #[allow(unsafe_code)]
    pub(super) fn start(kill_file: &Path) -> io::Result<Keeper> {
        let kill_file = CString::new(kill_file.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: the worker is multi-threaded, so the child calls only async-signal-safe
        // functions (see `keep`) and never returns from it.
        match unsafe { fork() }? {
            ForkResult::Child => keep(read_end, &kill_file),
            ForkResult::Parent { child } => {
                drop(read_end);
                Ok(Keeper {
                    pid: child,
                    pipe: Some(write_end),
                })
            }
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The keeper kills the (by now empty) cgroup and exits at once.
        drop(self.pipe.take());
        let _ = waitpid(self.pid, None);
    }
}

/// The keeper's life: detach, keep nothing of the worker but the pipe, wait for its end,
/// kill the cgroup. Only async-signal-safe calls.
#[allow(unsafe_code)]
fn keep(pipe: OwnedFd, kill_file: &CStr) -> ! {
    // No terminal's Ctrl-C reaches it, and the worker's signal handlers are not ours.
    let _ = setsid();
    let _ = prctl::set_name(c"jobfleet-keeper");
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring the default action installs no handler.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
    // Keep only the pipe: the worker's sockets, locks and pipes, and another keeper's
    // pipe end, must not live on here.
    close_all_but(pipe.as_raw_fd());
    let mut byte = [0u8; 1];
    loop {
        match read(&pipe, &mut byte) {
            Ok(0) => break,
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => break,
        }
    }
    if let Ok(fd) = open(kill_file, OFlag::O_WRONLY, Mode::empty()) {
        let _ = write(&fd, b"1");
    }
    // SAFETY: _exit skips the atexit handlers and buffers of the worker's copy.
    unsafe { nix::libc::_exit(0) }
}

/// Closes every file descriptor but `kept`.
#[allow(unsafe_code)]
fn close_all_but(kept: i32) {
    let close_range = |first: i32, last: u32| {
        // SAFETY: close_range only closes descriptors of this (single-threaded) process.
        let closed = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first as u32, last, 0) };
        if closed != 0 {
            // Before Linux 5.9, one by one (up to a bound).
            for fd in first..=(last.min(65_535) as i32) {
                // SAFETY: as above.
                unsafe { nix::libc::close(fd) };
            }
        }
    };
    if kept > 0 {
        close_range(0, kept as u32 - 1);
    }
    close_range(kept + 1, u32::MAX);
}
