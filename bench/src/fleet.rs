//! The benchmark's own fleet: a unique namespace, its config file, the processes it starts
//! (release `jobfleet-worker` / `jobfleet-master`, ceiling consumers), their peak RSS, and
//! the cleanup of every queue, exchange and Redis key afterwards.

use crate::ceiling;
use crate::logs::FUNCTION as CHATTY_FUNCTION;
use crate::memory::{FUNCTION as MEMORY_FUNCTION, GROUP as MEMORY_GROUP};
use anyhow::{bail, Context, Result};
use jobfleet_common::auth::Role;
use jobfleet_common::client::{amqp_pool, open_channel, AmqpPool};
use jobfleet_common::config::{self, Config, QueueType};
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use jobfleet_common::lapin::types::FieldTable;
use jobfleet_common::lapin::{self, Channel};
use jobfleet_common::topology::Topology;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The group of the echo rows (the built-in `echo`; and `chatty`, for the logs row).
pub const ECHO_GROUP: &str = "default";
/// The group of the process-sandbox rows.
pub const PROCESS_GROUP: &str = "py";
/// The process function run fresh per job.
pub const EXCLUSIVE_FUNCTION: &str = "wc_exclusive";
/// The process function kept warm.
pub const SHARED_FUNCTION: &str = "wc_shared";
/// The worker's default hold delay (its delay queue is named after it).
const HOLD_DELAY_MS: u64 = 5000;

/// A process the benchmark started; killed when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Its pid.
    pub pid: u32,
}

impl Proc {
    /// Peak resident set size so far (VmHWM), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.status_bytes("VmHWM:")
    }

    /// Resident set size now (VmRSS), bytes.
    pub fn rss(&self) -> Option<u64> {
        self.status_bytes("VmRSS:")
    }

    /// A size line of `/proc/<pid>/status` (in kB there), bytes.
    fn status_bytes(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Fails when the process has already exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} (pid {}) exited early with {status}", self.name, self.pid);
        }
        Ok(())
    }

    /// SIGTERM, then waits (SIGKILL after `grace`). Returns the peak RSS read just before.
    pub async fn stop(mut self, grace: Duration) -> Option<u64> {
        let rss = self.peak_rss();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        rss
    }
}

/// The namespace, its configuration and where its files live.
pub struct Fleet {
    /// The resolved configuration (namespace, URLs, groups).
    pub config: Config,
    /// The queue type of the echo group and the ceiling's queue.
    pub queue_type: QueueType,
    /// Names under the namespace.
    pub topology: Topology,
    /// The ceiling's names, `NS.ceiling` (see [`crate::ceiling`]).
    pub ceiling: Topology,
    /// The coordinator of the namespace.
    pub coordinator: Coordinator,
    /// Admin connections (declares, readiness checks, cleanup); never on a measured path.
    pub admin: AmqpPool,
    /// The broker's and Redis's own URLs (the config's go through `--link-delay` proxies).
    service_urls: (String, String),
    bin_dir: PathBuf,
    dir: PathBuf,
    config_path: String,
    spawned: usize,
}

/// The API token of the master with `[auth]` (a `submit` token).
pub const BENCH_TOKEN: &str = "jf_bench_token_not_secret";

impl Fleet {
    /// The broker and Redis processes, when they run on this machine (CPU per job).
    pub fn services(&self) -> Vec<crate::cpu::Tracked> {
        crate::cpu::services(&self.service_urls.0, &self.service_urls.1)
    }

    /// A fresh namespace `bench-<random>` with the echo group and the process group whose
    /// functions run `python3` on the scripts in `functions_dir`, waiting for
    /// `redis_min_replicas` replicas after each transition.
    pub fn new(
        bin_dir: PathBuf,
        functions_dir: &Path,
        redis_min_replicas: u32,
        queue_type: QueueType,
        proxied: Option<(String, String)>,
    ) -> Result<Fleet> {
        let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let exclusive = functions_dir.join("wordcount.py");
        let shared = functions_dir.join("wordcount_shared.py");
        for script in [&exclusive, &shared] {
            if !script.exists() {
                bail!("{} is missing (pass --functions-dir)", script.display());
            }
        }
        let echo_queue_type = queue_type.as_str();
        let toml = format!(
            r#"namespace = "{namespace}"
redis_min_replicas = {redis_min_replicas}

[groups.{ECHO_GROUP}]
queue_type = "{echo_queue_type}"
[groups.{ECHO_GROUP}.functions.echo]
[groups.{ECHO_GROUP}.functions.{CHATTY_FUNCTION}]

[groups.{MEMORY_GROUP}.functions.{MEMORY_FUNCTION}]

[groups.{PROCESS_GROUP}.functions.{EXCLUSIVE_FUNCTION}]
sandbox = "process"
command = ["python3", {exclusive:?}]

[groups.{PROCESS_GROUP}.functions.{SHARED_FUNCTION}]
sandbox = "process"
mode = "shared"
command = ["python3", {shared:?}]
"#
        );
        let mut config = Config::from_toml(&toml).context("bench config")?;
        // Only the URLs come from the environment: the namespace is ours.
        let env = Config::load(None, config::process_env).context("JOBFLEET_* environment")?;
        let service_urls = (env.amqp_url.clone(), env.redis_url.clone());
        (config.amqp_url, config.redis_url) = proxied.unwrap_or((env.amqp_url, env.redis_url));
        let dir = std::env::temp_dir().join(&namespace);
        std::fs::create_dir_all(&dir)?;
        let config_path = dir
            .join("fleet.toml")
            .to_str()
            .context("a non-UTF-8 temp path")?
            .to_string();
        // The same fleet with API tokens on, for the cost of auth on POST /v1/jobs.
        let auth_entry = jobfleet_common::auth::config_line("bench", Role::Submit, BENCH_TOKEN);
        std::fs::write(
            dir.join("fleet-auth.toml"),
            format!("{toml}\n[auth]\ntokens = [{auth_entry}]\n"),
        )?;
        std::fs::write(&config_path, toml)?;
        let topology = Topology::new(&namespace);
        let coordinator = Coordinator::from_config(&config, topology.clone())?;
        let admin = amqp_pool(&config.amqp_url, 1, "jobfleet-bench-admin")?;
        Ok(Fleet {
            config,
            ceiling: ceiling::topology(&topology),
            queue_type,
            topology,
            coordinator,
            admin,
            service_urls,
            bin_dir,
            dir,
            config_path,
            spawned: 0,
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.topology.namespace()
    }

    /// Where the children's logs go.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    fn spawn(&mut self, name: &str, program: PathBuf, args: &[String]) -> Result<Proc> {
        self.spawned += 1;
        let log = self.dir.join(format!("{}-{name}.log", self.spawned));
        let child = Command::new(&program)
            .args(args)
            .env("JOBFLEET_NAMESPACE", self.namespace())
            .env("JOBFLEET_AMQP_URL", &self.config.amqp_url)
            .env("JOBFLEET_REDIS_URL", &self.config.redis_url)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "spawn {} (build it with `cargo build --release --bins`)",
                    program.display()
                )
            })?;
        let pid = child.id().context("pid")?;
        Ok(Proc {
            name: format!("{name} (log {})", log.display()),
            child,
            pid,
        })
    }

    /// Starts a release `jobfleet-worker` for `group` and waits until it consumes.
    pub async fn worker(&mut self, group: &str, concurrency: usize) -> Result<Proc> {
        let consumers = self
            .consumers(&self.topology.group_queue(group))
            .await
            .unwrap_or(0);
        let args: Vec<String> = [
            "--config",
            &self.config_path,
            "--group",
            group,
            "--concurrency",
            &concurrency.to_string(),
            "--metrics-listen",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut proc = self.spawn("worker", self.bin_dir.join("jobfleet-worker"), &args)?;
        self.wait_consumers(&self.topology.group_queue(group), consumers + 1, &mut proc)
            .await?;
        Ok(proc)
    }

    /// Starts a release `jobfleet-master` on a free port; returns it and its base URL once
    /// it is ready. With `auth`, the master checks [`BENCH_TOKEN`] on every request.
    pub async fn master(&mut self, auth: bool) -> Result<(Proc, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let config_path = if auth {
            self.dir.join("fleet-auth.toml").to_string_lossy().into_owned()
        } else {
            self.config_path.clone()
        };
        let args: Vec<String> = vec![
            "--config".into(),
            config_path,
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        let mut proc = self.spawn("master", self.bin_dir.join("jobfleet-master"), &args)?;
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok((proc, url));
            }
            proc.check_alive()?;
            if tokio::time::Instant::now() > deadline {
                bail!("{} not ready within 30 s", proc.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a ceiling consumer process (this binary) on the ceiling's queue and waits
    /// until it consumes.
    pub async fn ceiling_consumer(&mut self, concurrency: usize) -> Result<Proc> {
        let queue = self.ceiling.group_queue(ceiling::GROUP);
        let consumers = self.consumers(&queue).await.unwrap_or(0);
        let args: Vec<String> = vec![
            "ceiling-consumer".into(),
            "--amqp-url".into(),
            self.config.amqp_url.clone(),
            "--namespace".into(),
            self.ceiling.namespace().into(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
        let mut proc = self.spawn("ceiling-consumer", std::env::current_exe()?, &args)?;
        self.wait_consumers(&queue, consumers + 1, &mut proc).await?;
        Ok(proc)
    }

    async fn consumers(&self, queue: &str) -> Result<u32> {
        let channel = open_channel(&self.admin, false).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await;
        let _ = channel.close(200, "".into()).await;
        Ok(declared?.consumer_count())
    }

    async fn wait_consumers(&self, queue: &str, at_least: u32, proc: &mut Proc) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.consumers(queue).await.is_ok_and(|n| n >= at_least) {
                return Ok(());
            }
            proc.check_alive()?;
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not consume {queue} within 30 s", proc.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes the queues and exchanges of the namespace and of the ceiling, the Redis keys
    /// and the config directory. Best effort: what fails to go is left.
    pub async fn cleanup(&self) {
        let _ = self.coordinator.purge_namespace().await;
        let mut objects = amqp_objects(&self.topology, &[ECHO_GROUP, PROCESS_GROUP]);
        objects.extend(amqp_objects(&self.ceiling, &[ceiling::GROUP]));
        for object in objects {
            // A failed delete closes its channel: one fresh channel each.
            if let Ok(channel) = open_channel(&self.admin, false).await {
                let _ = object.delete(&channel).await;
                let _ = channel.close(200, "".into()).await;
            }
        }
        self.admin.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A queue or an exchange to delete.
enum AmqpObject {
    Queue(String),
    Exchange(String),
}

impl AmqpObject {
    /// Deletes it; a failure closes `channel`.
    async fn delete(self, channel: &Channel) -> Result<(), lapin::Error> {
        match self {
            AmqpObject::Queue(name) => {
                channel
                    .queue_delete(name.into(), QueueDeleteOptions::default())
                    .await?;
            }
            AmqpObject::Exchange(name) => {
                channel
                    .exchange_delete(name.into(), ExchangeDeleteOptions::default())
                    .await?;
            }
        }
        Ok(())
    }
}

/// What a fleet of topology `t` declares for `groups`: its queues, then its exchanges.
fn amqp_objects(t: &Topology, groups: &[&str]) -> Vec<AmqpObject> {
    let mut queues = vec![t.dead_letters(), t.flows()];
    for group in groups {
        queues.push(t.group_queue(group));
        queues.push(t.delay_queue(group, HOLD_DELAY_MS));
    }
    let exchanges = [
        t.jobs_exchange(),
        t.results_exchange(),
        t.control_exchange(),
        t.dead_letters(),
        t.flows(),
    ];
    let queues = queues.into_iter().map(AmqpObject::Queue);
    queues.chain(exchanges.map(AmqpObject::Exchange)).collect()
}
