//! Stopping everything a sandboxed process started. The process leads a session (and so a
//! process group) of its own; with a cgroup, every descendant is in the process's cgroup
//! whatever it did (`setsid`, double forks); without one, the descendants are found through
//! their parent links in `/proc`, which works while the process lives: it is a child
//! subreaper, so orphans of its tree are re-parented to it rather than to init.

use super::cgroup::JobCgroup;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;

/// Rounds of stopping newly found descendants before the kill (each round stops what the
/// previous one raced with).
const STOP_ROUNDS: usize = 20;

/// Everything a sandboxed process started: killed when this drops.
#[derive(Debug)]
pub(super) struct Containment {
    leader: Pid,
    /// The leader's start time (clock ticks after boot), to tell it from a reused pid.
    leader_start: Option<u64>,
    cgroup: Option<JobCgroup>,
    released: bool,
}

impl Containment {
    /// Contains the process `leader` (a session leader), in `cgroup` if it has one.
    pub(super) fn new(leader: u32, cgroup: Option<JobCgroup>) -> Containment {
        let leader = Pid::from_raw(leader as i32);
        Containment {
            leader,
            leader_start: proc_stat(leader.as_raw()).map(|stat| stat.start),
            cgroup,
            released: false,
        }
    }

    /// The processes of the tree now, the leader included.
    fn members(&self) -> Vec<Pid> {
        match &self.cgroup {
            Some(cgroup) => cgroup.pids().into_iter().map(Pid::from_raw).collect(),
            None if self.leader_alive() => {
                let mut members = descendants(self.leader);
                members.push(self.leader);
                members
            }
            None => Vec::new(),
        }
    }

    /// Whether the leader is still the process this guards (possibly a zombie), not a pid
    /// reused after it was reaped.
    fn leader_alive(&self) -> bool {
        self.leader_start.is_some() && proc_stat(self.leader.as_raw()).map(|s| s.start) == self.leader_start
    }

    /// SIGKILLs every process of the tree.
    fn kill_all(&self) {
        match &self.cgroup {
            Some(cgroup) => cgroup.kill(),
            None if self.leader_alive() => kill_tree(self.leader),
            None => {}
        }
        let _ = killpg(self.leader, Signal::SIGKILL);
    }

    /// TERM to every process, then KILL after `grace` unless the process exited by then;
    /// returns how the process ended.
    pub(super) async fn stop(&self, child: &mut Child, grace: Duration) -> Option<ExitStatus> {
        // Without a cgroup, the processes are remembered now: once the leader exits on the
        // TERM, its orphans cannot be found through it any more.
        let termed: Vec<(Pid, Option<u64>)> = self
            .members()
            .into_iter()
            .map(|pid| (pid, proc_stat(pid.as_raw()).map(|stat| stat.start)))
            .collect();
        let _ = killpg(self.leader, Signal::SIGTERM);
        for (pid, _) in &termed {
            let _ = kill(*pid, Signal::SIGTERM);
        }
        let status = tokio::time::timeout(grace, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        self.kill_all();
        for (pid, start) in termed {
            // Only the same process, not one that took a freed pid.
            if start.is_some() && proc_stat(pid.as_raw()).map(|stat| stat.start) == start {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        match status {
            Some(status) => Some(status),
            None => child.wait().await.ok(),
        }
    }

    /// Kills what is left of the tree and removes its cgroup.
    pub(super) async fn release(mut self) {
        self.kill_all();
        self.released = true;
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.wait_empty_async().await;
        }
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        if !self.released {
            self.kill_all();
        }
        let Some(cgroup) = self.cgroup.take() else {
            return;
        };
        // The kill takes a moment; the cgroup is removed once empty, without blocking a
        // runtime.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { cgroup.wait_empty_async().await });
            }
            Err(_) => {
                cgroup.wait_empty();
            }
        }
    }
}

/// What the tree walk needs of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    parent: i32,
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ppid ... starttime ...`; comm may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // After comm: state is field 3 of stat(5), ppid 4, starttime 22.
    Some(ProcStat {
        parent: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every descendant of `root` now, found through the parent links of all processes.
fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(stat) = proc_stat(pid) {
            children.entry(stat.parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root.as_raw()];
    while let Some(pid) = frontier.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(Pid::from_raw(child));
            frontier.push(child);
        }
    }
    found
}

/// Stops `root` and its descendants round by round until no new one appears (a stopped
/// process cannot fork), then kills them all.
fn kill_tree(root: Pid) {
    let _ = kill(root, Signal::SIGSTOP);
    let mut stopped: HashSet<Pid> = HashSet::new();
    for _ in 0..STOP_ROUNDS {
        let new: Vec<Pid> = descendants(root)
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(pid, Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for pid in stopped {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = kill(root, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_parsed() {
        let stat = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 98765 \
                    2453504 188 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                parent: 17,
                start: 98765
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }
}
