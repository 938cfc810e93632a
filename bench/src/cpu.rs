//! CPU time per job of every process on a row's path (the broker, Redis, the worker or the
//! ceiling's consumer, the master, the benchmark itself), from /proc/<pid>/stat. Less
//! sensitive than wall time to what else runs on the machine, so it shows where the cost
//! of a job goes even when the figures in jobs/s are noisy.

use std::time::Duration;

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process whose CPU time is sampled.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Short name for the table.
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

impl Tracked {
    /// A named process.
    pub fn new(name: &str, pid: u32) -> Tracked {
        Tracked {
            name: name.to_string(),
            pid,
        }
    }
}

/// The broker and Redis when they run on this machine: the processes listening on the
/// ports of `amqp_url` and `redis_url`.
pub fn services(amqp_url: &str, redis_url: &str) -> Vec<Tracked> {
    let mut found = Vec::new();
    for (name, url, default_port) in [("rabbitmq", amqp_url, 5672), ("redis", redis_url, 6379)] {
        if let Some(pid) = local_port(url, default_port).and_then(listener_pid) {
            found.push(Tracked::new(name, pid));
        }
    }
    found
}

/// The port of a URL whose host is this machine.
fn local_port(url: &str, default_port: u16) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (host_port, default_port),
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1").then_some(port)
}

/// The process with a socket listening on `port` (from /proc/net/tcp{,6} and /proc/*/fd).
fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            let on_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.extend(fields.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
            {
                return Some(pid);
            }
        }
    }
    None
}

/// user + system time of `pid` so far, with that of its ended children (the processes
/// of an exclusive process sandbox).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14..=17 of the line, 12..=15 after the name.
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Some(Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND))
}

/// CPU times of a set of processes at one moment.
#[derive(Debug, Clone)]
pub struct Sample(Vec<(String, Option<Duration>)>);

/// Samples `processes` now.
pub fn sample(processes: &[Tracked]) -> Sample {
    Sample(
        processes
            .iter()
            .map(|t| (t.name.clone(), cpu_time(t.pid)))
            .collect(),
    )
}

/// CPU per job of each process between two samples, summed by name (several workers
/// count as one "worker"); processes that ended meanwhile are left out.
pub fn per_job(before: &Sample, after: &Sample, jobs: usize) -> Vec<(String, Duration)> {
    let mut totals: Vec<(String, Duration)> = Vec::new();
    for ((name, start), (_, end)) in before.0.iter().zip(&after.0) {
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        let used = end.saturating_sub(*start) / jobs.max(1) as u32;
        match totals.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += used,
            None => totals.push((name.clone(), used)),
        }
    }
    totals
}

/// Measures the CPU per job of a row: started before it, read after it.
pub struct Meter {
    tracked: Vec<Tracked>,
    before: Sample,
}

impl Meter {
    /// Starts measuring `services`, this process and `row` (the row's own processes).
    pub fn start(services: &[Tracked], row: &[Tracked]) -> Meter {
        let mut tracked = services.to_vec();
        tracked.push(Tracked::new("bench", std::process::id()));
        tracked.extend(row.iter().cloned());
        let before = sample(&tracked);
        Meter { tracked, before }
    }

    /// CPU per job of each process since the start.
    pub fn per_job(&self, jobs: usize) -> Vec<(String, Duration)> {
        per_job(&self.before, &sample(&self.tracked), jobs)
    }
}
