//! The fleet under test as real processes (`jobfleet-worker`, `jobfleet-master`), kept
//! running the way a supervisor (systemd `Restart=always`) would: a process that exits
//! without the nemesis asking is restarted and reported. Each process's stderr goes to
//! `<dir>/<name>.log`, appended across restarts.

use crate::binary;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Worker or master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `jobfleet-worker`.
    Worker,
    /// `jobfleet-master`.
    Master,
}

/// How the fleet's processes are started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The fleet's config file.
    pub config: PathBuf,
    /// The AMQP URL the processes use (the proxy's).
    pub amqp_url: String,
    /// The Redis URL the processes use (the proxy's).
    pub redis_url: String,
    /// Where the process logs go.
    pub dir: PathBuf,
    /// Flags of every worker after `--config`.
    pub worker_args: Vec<String>,
}

#[derive(Debug)]
struct Process {
    name: String,
    role: Role,
    /// A master's HTTP port, kept across restarts so its URL stays valid.
    port: Option<u16>,
    child: Option<Child>,
    /// Taken down on purpose: the supervisor leaves it until [`Fleet::restart`].
    down: bool,
}

/// The running processes.
#[derive(Debug)]
pub struct Fleet {
    launch: Launch,
    processes: Vec<Process>,
}

impl Fleet {
    /// Starts `workers` workers and `masters` masters.
    pub fn start(launch: Launch, workers: usize, masters: usize) -> Fleet {
        let mut fleet = Fleet {
            launch,
            processes: Vec::new(),
        };
        for index in 0..masters {
            let port = crate::private::free_port();
            fleet.add(format!("master-{index}"), Role::Master, Some(port));
        }
        for index in 0..workers {
            fleet.add(format!("worker-{index}"), Role::Worker, None);
        }
        fleet
    }

    fn add(&mut self, name: String, role: Role, port: Option<u16>) {
        let mut process = Process {
            name,
            role,
            port,
            child: None,
            down: false,
        };
        process.child = Some(spawn(&self.launch, &process));
        self.processes.push(process);
    }

    /// The masters' base URLs (stable across restarts).
    pub fn master_urls(&self) -> Vec<String> {
        self.processes
            .iter()
            .filter_map(|p| p.port.map(|port| format!("http://127.0.0.1:{port}")))
            .collect()
    }

    /// How many processes of `role` there are.
    pub fn count(&self, role: Role) -> usize {
        self.processes.iter().filter(|p| p.role == role).count()
    }

    fn nth(&mut self, role: Role, index: usize) -> &mut Process {
        self.processes
            .iter_mut()
            .filter(|p| p.role == role)
            .nth(index)
            .expect("a process of the fleet")
    }

    /// The name of the `index`-th process of `role`.
    pub fn name(&mut self, role: Role, index: usize) -> String {
        self.nth(role, index).name.clone()
    }

    /// SIGKILLs a process and keeps it down until [`Fleet::restart`].
    pub fn kill(&mut self, role: Role, index: usize) {
        let process = self.nth(role, index);
        process.down = true;
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a process taken down by [`Fleet::kill`] again.
    pub fn restart(&mut self, role: Role, index: usize) {
        let launch = self.launch.clone();
        let process = self.nth(role, index);
        if process.child.is_none() {
            process.child = Some(spawn(&launch, process));
        }
        process.down = false;
    }

    /// Sends SIGSTOP (`true`) or SIGCONT (`false`) to a process.
    pub fn freeze(&mut self, role: Role, index: usize, stop: bool) {
        let process = self.nth(role, index);
        if let Some(child) = &process.child {
            let signal = if stop { Signal::SIGSTOP } else { Signal::SIGCONT };
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// Restarts every process that exited on its own; returns (name, exit code) of each.
    pub fn supervise(&mut self) -> Vec<(String, Option<i32>)> {
        let mut exited = Vec::new();
        for index in 0..self.processes.len() {
            let process = &mut self.processes[index];
            if process.down {
                continue;
            }
            let status = match process.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => status,
                _ => continue,
            };
            exited.push((process.name.clone(), status.code()));
            let child = spawn(&self.launch, &self.processes[index]);
            self.processes[index].child = Some(child);
        }
        exited
    }

    /// Kills every process (the end of a run).
    pub fn stop_all(&mut self) {
        for process in &mut self.processes {
            process.down = true;
            if let Some(mut child) = process.child.take() {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The directory of the process logs.
    pub fn log_dir(&self) -> &Path {
        &self.launch.dir
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn spawn(launch: &Launch, process: &Process) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.dir.join(format!("{}.log", process.name)))
        .expect("process log");
    let config = launch.config.to_str().expect("utf-8 path");
    let mut command = match process.role {
        Role::Worker => {
            let mut command = Command::new(binary("jobfleet-worker"));
            command.args(["--config", config]).args(&launch.worker_args);
            command
        }
        Role::Master => {
            let listen = format!("127.0.0.1:{}", process.port.expect("a master's port"));
            let mut command = Command::new(binary("jobfleet-master"));
            command.args(["--config", config, "--listen", &listen]);
            command
        }
    };
    command
        .env("JOBFLEET_AMQP_URL", &launch.amqp_url)
        .env("JOBFLEET_REDIS_URL", &launch.redis_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "spawn {} (run `cargo build --workspace --bins`): {e}",
                process.name
            )
        })
}
