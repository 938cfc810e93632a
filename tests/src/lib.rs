//! The end-to-end test kit: a [`TestEnv`] per test with its own namespace on the real
//! RabbitMQ and Redis (cleaned up when dropped, even after a panic), in-process and
//! out-of-process workers, and polling waits instead of fixed sleeps.

pub mod cluster;
pub mod json_api;
pub mod nemesis;
pub mod pki;
pub mod private;
pub use jobfleet_proxy as proxy;
pub mod sentinel;

use jobfleet_common::client::{amqp_pool, open_channel, Producer, ResultSubscriber};
use jobfleet_common::config::Config;
use jobfleet_common::coordinator::Coordinator;
use jobfleet_common::lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use jobfleet_common::message::ResultMessage;
use jobfleet_common::topology::Topology;
use jobfleet_worker::{Worker, WorkerBuilder};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The delay after which parked job copies come back, in every test environment.
pub const HOLD_DELAY: Duration = Duration::from_millis(500);

/// The quick timings every worker process of the tests runs with (heartbeat every 500 ms,
/// dead after 2 s, parked copies back after [`HOLD_DELAY`]) and no metrics listener.
pub const WORKER_PROCESS_FLAGS: [&str; 8] = [
    "--heartbeat-interval",
    "500ms",
    "--heartbeat-ttl",
    "2s",
    "--hold-delay",
    "500ms",
    "--metrics-listen",
    "off",
];

/// One test's fleet: a unique namespace, its configuration, and what it started.
pub struct TestEnv {
    /// The resolved configuration (namespace, URLs, groups).
    pub config: Config,
    /// Names under the namespace.
    pub topology: Topology,
    /// The coordinator of the namespace.
    pub coordinator: Coordinator,
    workers: Vec<(CancellationToken, JoinHandle<()>)>,
    masters: Vec<(CancellationToken, JoinHandle<()>)>,
    processes: Vec<Child>,
    dir: PathBuf,
}

impl TestEnv {
    /// A fleet with the zero-config `default` group.
    pub fn new(name: &str) -> TestEnv {
        TestEnv::with_config(name, "")
    }

    /// A fleet configured by `toml` on the given broker and Redis.
    pub fn with_services(name: &str, toml: &str, amqp_url: &str, redis_url: &str) -> TestEnv {
        TestEnv::build(name, toml, Some((amqp_url, redis_url)))
    }

    /// A fleet configured by `toml` (groups, policies); namespace and URLs come from here.
    pub fn with_config(name: &str, toml: &str) -> TestEnv {
        TestEnv::build(name, toml, None)
    }

    fn build(name: &str, toml: &str, services: Option<(&str, &str)>) -> TestEnv {
        // Logs go through the test harness, so they show with a failing test only.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let namespace = format!("t-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut config = Config::from_toml(toml).expect("test config");
        config.namespace = namespace.clone();
        if let Ok(url) = std::env::var("JOBFLEET_AMQP_URL") {
            config.amqp_url = url;
        }
        if let Ok(url) = std::env::var("JOBFLEET_REDIS_URL") {
            config.redis_url = url;
        }
        if let Some((amqp_url, redis_url)) = services {
            config.amqp_url = amqp_url.to_string();
            config.redis_url = redis_url.to_string();
        }
        let topology = Topology::new(&namespace);
        let coordinator = Coordinator::from_config(&config, topology.clone()).expect("redis pool");
        let dir = std::env::temp_dir().join(&namespace);
        std::fs::create_dir_all(&dir).expect("test dir");
        std::fs::write(
            dir.join("fleet.toml"),
            format!("namespace = \"{namespace}\"\n{toml}"),
        )
        .expect("config file");
        TestEnv {
            config,
            topology,
            coordinator,
            workers: Vec::new(),
            masters: Vec::new(),
            processes: Vec::new(),
            dir,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.topology.namespace()
    }

    /// The config file written for out-of-process workers.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("fleet.toml")
    }

    /// A producer for this fleet.
    pub async fn producer(&self) -> Producer {
        Producer::connect(&self.config).await.expect("producer")
    }

    /// A result subscriber bound with `patterns`.
    pub async fn subscriber(&self, patterns: &[&str]) -> ResultSubscriber {
        ResultSubscriber::connect(self.config.amqp_endpoint(), self.topology.clone(), patterns)
            .await
            .expect("subscriber")
    }

    /// A worker builder for this fleet with the built-ins and quick test timings.
    pub fn worker(&self) -> WorkerBuilder {
        Worker::builder()
            .config(self.config.clone())
            .builtins()
            .heartbeat(Duration::from_millis(500), Duration::from_secs(2))
            .hold_delay(HOLD_DELAY)
            .drain_timeout(Duration::from_secs(5))
    }

    /// Starts an in-process worker and waits until its queues are declared.
    pub async fn start_worker(&mut self, builder: WorkerBuilder) -> String {
        self.run_worker(builder.build().expect("worker")).await
    }

    /// Runs an already built worker (to read its metrics address first) and waits until
    /// its queues are declared.
    pub async fn run_worker(&mut self, worker: Worker) -> String {
        let id = worker.id().to_string();
        let groups = worker.groups().to_vec();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move { worker.run(token).await.expect("worker run") });
        self.workers.push((stop, handle));
        self.wait_for_queues(&groups).await;
        id
    }

    /// Starts an in-process master on a free port with quick monitor timings and returns
    /// its base URL once it answers.
    pub async fn start_master(&mut self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "{}://{}",
            self.master_scheme(),
            listener.local_addr().expect("address")
        );
        let stop = CancellationToken::new();
        let token = stop.clone();
        let config = self.config.clone();
        let timings = jobfleet_master::MonitorTimings {
            tick: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(2),
            sweep_every: Duration::from_millis(500),
            feed_idle: Duration::from_secs(2),
        };
        let handle = tokio::spawn(async move {
            jobfleet_master::run(config, listener, timings, token)
                .await
                .expect("master run")
        });
        self.masters.push((stop, handle));
        let client = self.http_client();
        eventually(Duration::from_secs(20), || async {
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        url
    }

    /// Starts a `jobfleet-master` process for this fleet on a free port; returns its pid and URL.
    pub async fn spawn_master_process(&mut self) -> (u32, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("address")
            .port();
        let url = format!("{}://127.0.0.1:{port}", self.master_scheme());
        let child = Command::new(binary("jobfleet-master"))
            .args([
                "--config",
                self.config_path().to_str().expect("utf-8 path"),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("JOBFLEET_AMQP_URL", &self.config.amqp_url)
            .env("JOBFLEET_REDIS_URL", &self.config.redis_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn jobfleet-master (run `cargo build --workspace --bins` first)");
        let pid = child.id();
        self.processes.push(child);
        let client = self.http_client();
        eventually(Duration::from_secs(20), || async {
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        (pid, url)
    }

    /// `https` when the configuration has an `[https]` table, else `http`.
    pub fn master_scheme(&self) -> &'static str {
        if self.config.https.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// An HTTP client for this fleet's masters, for short requests (10 s at most, so a
    /// master that accepts connections but does not answer cannot hang a readiness poll):
    /// over HTTPS it trusts the `[tls]` CA.
    pub fn http_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if self.config.https.is_some() {
            let tls = self.config.tls.client_config().expect("[tls] settings");
            builder = builder.use_preconfigured_tls(std::sync::Arc::unwrap_or_clone(tls));
        }
        builder.build().expect("http client")
    }

    /// Stops every in-process worker cleanly and waits for them.
    pub async fn stop_workers(&mut self) {
        for (stop, _) in &self.workers {
            stop.cancel();
        }
        for (_, handle) in self.workers.drain(..) {
            handle.await.expect("worker task");
        }
    }

    /// Starts a `jobfleet-worker` process for this fleet; `args` are extra flags.
    pub fn spawn_worker_process(&mut self, args: &[&str]) -> u32 {
        self.spawn_worker_process_with(args, |_| {})
    }

    /// Starts a `jobfleet-worker` process for this fleet, with `adjust` applied to its
    /// command last (another user, more environment).
    pub fn spawn_worker_process_with(&mut self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> u32 {
        let mut command = self.worker_process_command(args);
        adjust(&mut command);
        let child = command
            .spawn()
            .expect("spawn jobfleet-worker (run `cargo build --workspace --bins` first)");
        let pid = child.id();
        self.processes.push(child);
        pid
    }

    /// The command that starts a `jobfleet-worker` process for this fleet.
    pub fn worker_process_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("jobfleet-worker"));
        command
            .args(["--config", self.config_path().to_str().expect("utf-8 path")])
            .args(WORKER_PROCESS_FLAGS)
            .args(args)
            .env("JOBFLEET_AMQP_URL", &self.config.amqp_url)
            .env("JOBFLEET_REDIS_URL", &self.config.redis_url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    /// Runs the binary `name` (`jobfleet-master`, `jobfleet-worker`) of this namespace with
    /// the config `toml` and `args` to its end (at most 20 s), for a start it refuses;
    /// returns its exit status and stderr.
    pub async fn refused_start(&self, name: &str, toml: &str, args: &[&str]) -> (Option<i32>, String) {
        let path = self.dir.join("refused.toml");
        std::fs::write(&path, toml).expect("config file");
        let output = tokio::process::Command::new(binary(name))
            .args(["--config", path.to_str().expect("utf-8 path")])
            .args(args)
            .env("JOBFLEET_NAMESPACE", self.namespace())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(20), output)
            .await
            .unwrap_or_else(|_| panic!("{name} ends within 20 s"))
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    }

    /// Waits for a spawned process to exit and returns its exit code.
    pub async fn wait_process(&mut self, pid: u32, timeout: Duration) -> Option<i32> {
        let index = self
            .processes
            .iter()
            .position(|c| c.id() == pid)
            .expect("a process of this env");
        let mut child = self.processes.remove(index);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.code();
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the group queues exist (a worker has declared them).
    pub async fn wait_for_queues(&self, groups: &[String]) {
        let pool = amqp_pool(self.config.amqp_endpoint(), 1, "jobfleet-test").expect("pool");
        eventually(Duration::from_secs(20), || async {
            for group in groups {
                let channel = open_channel(&pool, false).await.ok()?;
                let passive = jobfleet_common::lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(
                        self.topology.group_queue(group).into(),
                        passive,
                        Default::default(),
                    )
                    .await
                    .ok()?;
                let _ = channel.close(200, "".into()).await;
            }
            Some(())
        })
        .await;
        pool.close();
    }

    /// Ready and unacknowledged messages of each queue of this namespace, as the broker
    /// counts them (`rabbitmqctl list_queues`, so the broker must run on this host): the
    /// unacknowledged count is what no AMQP client can read.
    pub fn queue_counts(&self) -> HashMap<String, (u64, u64)> {
        let output = Command::new("rabbitmqctl")
            .args([
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .output()
            .expect("rabbitmqctl");
        assert!(output.status.success(), "rabbitmqctl list_queues failed");
        let prefix = format!("{}.", self.namespace());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let name = fields.next()?.strip_prefix(&prefix)?;
                let ready = fields.next()?.parse().ok()?;
                let unacked = fields.next()?.parse().ok()?;
                Some((name.to_string(), (ready, unacked)))
            })
            .collect()
    }

    /// Sends a signal to a spawned worker process.
    pub fn signal(&self, pid: u32, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (stop, handle) in self.workers.iter().chain(&self.masters) {
            stop.cancel();
            handle.abort();
        }
        let config = self.config.clone();
        let topology = self.topology.clone();
        let coordinator = self.coordinator.clone();
        let dir = self.dir.clone();
        // Drop cannot await: clean up on a thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let _ = coordinator.purge_namespace().await;
                let Ok(pool) = amqp_pool(config.amqp_endpoint(), 1, "jobfleet-test-cleanup") else {
                    return;
                };
                let mut queues = vec![topology.dead_letters(), topology.flows()];
                for group in config.groups.keys().map(String::as_str).chain(["default"]) {
                    queues.push(topology.group_queue(group));
                    queues.push(topology.delay_queue(group, HOLD_DELAY.as_millis() as u64));
                }
                for queue in queues {
                    if let Ok(channel) = open_channel(&pool, false).await {
                        let _ = channel
                            .queue_delete(queue.into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                for exchange in [
                    topology.jobs_exchange(),
                    topology.results_exchange(),
                    topology.control_exchange(),
                    topology.dead_letters(),
                    topology.flows(),
                ] {
                    if let Ok(channel) = open_channel(&pool, false).await {
                        let _ = channel
                            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                            .await;
                    }
                }
                pool.close();
            });
            let _ = std::fs::remove_dir_all(dir);
        });
        let _ = cleanup.join();
    }
}

/// An `[auth]` table of `tokens`: (name, role, token) each, the file holding their hashes.
pub fn auth_table(tokens: &[(&str, &str, &str)]) -> String {
    let entries: Vec<String> = tokens
        .iter()
        .map(|(name, role, token)| {
            format!(
                r#"{{ name = "{name}", role = "{role}", sha256 = "{}" }}"#,
                jobfleet_common::auth::token_hash_hex(token)
            )
        })
        .collect();
    format!("[auth]\ntokens = [{}]\n", entries.join(", "))
}

/// The path of a workspace binary: next to the running executable, or one level up when
/// that is a test executable in `target/<profile>/deps`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Polls `check` until it returns `Some`, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives results until every id in `ids` has one (or `timeout` passes, which panics);
/// returns all results received per id, duplicates included.
pub async fn collect_results(
    subscriber: &mut ResultSubscriber,
    ids: &[String],
    timeout: Duration,
) -> HashMap<String, Vec<ResultMessage>> {
    let mut by_id: HashMap<String, Vec<ResultMessage>> = HashMap::with_capacity(ids.len());
    let deadline = tokio::time::Instant::now() + timeout;
    let mut missing: std::collections::HashSet<&String> = ids.iter().collect();
    while !missing.is_empty() {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = match tokio::time::timeout(remaining, subscriber.next()).await {
            Ok(result) => result.expect("a decodable result"),
            Err(_) => panic!(
                "{} of {} results missing after {timeout:?}, e.g. {:?}",
                missing.len(),
                ids.len(),
                missing.iter().take(3).collect::<Vec<_>>()
            ),
        };
        missing.remove(&result.id);
        by_id.entry(result.id.clone()).or_default().push(result);
    }
    by_id
}

/// Receives whatever results arrive within `quiet` (to catch duplicates after the fact).
pub async fn drain_results(subscriber: &mut ResultSubscriber, quiet: Duration) -> Vec<ResultMessage> {
    let mut extra = Vec::new();
    while let Ok(result) = tokio::time::timeout(quiet, subscriber.next()).await {
        extra.push(result.expect("a decodable result"));
    }
    extra
}
