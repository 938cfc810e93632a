//! Private RabbitMQ and Redis servers for tests that stop and restart them, so the shared
//! ones other tests use stay up. Each lives in its own temp directory on free ports and is
//! torn down when dropped.

use crate::pki::TestPki;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`; panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A RabbitMQ node of its own (`rabbitmq-server` with a private node name, ports and data
/// directory).
#[derive(Debug)]
pub struct PrivateRabbit {
    node: String,
    port: u16,
    /// The TLS listener's port, if the node has one.
    tls_port: Option<u16>,
    dir: PathBuf,
    /// Extra environment of the server (e.g. `RABBITMQ_DEFAULT_USER`).
    environment: Vec<(String, String)>,
}

impl PrivateRabbit {
    /// Starts a node and waits until it accepts connections.
    pub fn start() -> PrivateRabbit {
        PrivateRabbit::start_with("")
    }

    /// Starts a node whose `rabbit` application settings include `settings` (Erlang terms
    /// for `advanced.config`, e.g. `{consumer_timeout, 2000}`) and waits until it accepts
    /// connections.
    pub fn start_with(settings: &str) -> PrivateRabbit {
        PrivateRabbit::start_configured(settings, Vec::new(), None)
    }

    /// Starts a node with `environment` added to the server's, as a container passes it:
    /// `RABBITMQ_DEFAULT_USER` and `RABBITMQ_DEFAULT_PASS` make its first start create that
    /// user instead of guest (then [`PrivateRabbit::url`], which logs in as guest, is refused).
    pub fn start_with_environment(environment: Vec<(String, String)>) -> PrivateRabbit {
        PrivateRabbit::start_configured("", environment, None)
    }

    /// Starts a node with a TLS listener as well (see [`PrivateRabbit::tls_url`]): the
    /// server certificate of `pki`, and a client certificate its CA signed required
    /// (`verify_peer`, `fail_if_no_peer_cert`).
    pub fn start_tls(pki: &TestPki) -> PrivateRabbit {
        PrivateRabbit::start_configured("", Vec::new(), Some(pki))
    }

    fn start_configured(
        settings: &str,
        environment: Vec<(String, String)>,
        pki: Option<&TestPki>,
    ) -> PrivateRabbit {
        let rabbit = PrivateRabbit::prepare(&short_id(), settings, environment, pki);
        rabbit.launch();
        rabbit
    }

    /// A node named `jf<name>@localhost` with its own data directory and ports, not started
    /// yet ([`PrivateRabbit::launch`] starts it).
    pub(crate) fn prepare(
        name: &str,
        settings: &str,
        environment: Vec<(String, String)>,
        pki: Option<&TestPki>,
    ) -> PrivateRabbit {
        let node = format!("jf{name}@localhost");
        let dir = std::env::temp_dir().join(format!("jobfleet-rabbit-{name}"));
        std::fs::create_dir_all(&dir).expect("rabbit dir");
        // The server script drops to the rabbitmq user, which must own the directory.
        let _ = Command::new("chown")
            .args(["rabbitmq:rabbitmq", dir.to_str().expect("utf-8")])
            .status();
        let advanced = dir.join("advanced.config");
        std::fs::write(&advanced, format!("[{{rabbit, [{settings}]}}].\n")).expect("advanced.config");
        let tls_port = pki.map(|pki| {
            let port = free_port();
            std::fs::write(dir.join("rabbitmq.conf"), tls_listener(pki, port)).expect("rabbitmq.conf");
            port
        });
        PrivateRabbit {
            node,
            port: free_port(),
            tls_port,
            dir,
            environment,
        }
    }

    /// Starts the node (`rabbitmq-server -detached`, again after [`PrivateRabbit::kill`] or
    /// [`PrivateRabbit::stop`] on the same data) and waits until it accepts connections.
    pub fn launch(&self) {
        self.launch_detached();
        self.wait_until_listening();
    }

    /// Starts the node without waiting for it (several nodes boot at once this way).
    pub(crate) fn launch_detached(&self) {
        let dir = self.dir.display();
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", format!("{dir}/mnesia"))
            .env("RABBITMQ_LOG_BASE", format!("{dir}/log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", format!("{dir}/plugins"))
            .env("RABBITMQ_CONFIG_FILE", format!("{dir}/rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", format!("{dir}/advanced.config"))
            .env("RABBITMQ_PID_FILE", format!("{dir}/pid"))
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .status()
            .expect("rabbitmq-server (installed by scripts/services)");
        assert!(status.success(), "rabbitmq-server -detached failed");
    }

    /// Waits until the node accepts AMQP connections (and TLS ones, if it has a listener)
    /// and has finished booting: its listeners open before the last boot steps, and until
    /// those ran `rabbitmqctl` refuses commands such as `set_policy`.
    pub(crate) fn wait_until_listening(&self) {
        wait_for_port(self.port, Duration::from_secs(60));
        if let Some(tls_port) = self.tls_port {
            wait_for_port(tls_port, Duration::from_secs(60));
        }
        self.ctl(&["await_startup", "--timeout", "60"]);
    }

    /// The AMQP URL of the node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The `amqps://` URL of the node's TLS listener ([`PrivateRabbit::start_tls`]).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("a node started with start_tls");
        format!("amqps://guest:guest@127.0.0.1:{port}/%2f")
    }

    /// A node that enforces `consumer_timeout` = `timeout` within a quarter of it (RabbitMQ
    /// checks on every channel tick, 60 s by default; `channel_tick_interval` shortens it).
    pub fn with_consumer_timeout(timeout: Duration) -> PrivateRabbit {
        let timeout = timeout.as_millis();
        PrivateRabbit::start_with(&format!(
            "{{consumer_timeout, {timeout}}}, {{channel_tick_interval, {}}}",
            (timeout / 4).max(100)
        ))
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        let path = self.dir.join("log").join(format!("{}.log", self.node));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Evaluates an Erlang expression on the node (`rabbitmqctl eval`) and returns what it
    /// printed.
    pub fn eval(&self, expression: &str) -> String {
        let output = Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node, "eval", expression])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "rabbitmqctl eval failed: {text}");
        text
    }

    /// Makes the broker forget every consumer of `queue` without telling their clients:
    /// the queue delivers nothing more to them while their channels stay open (a consumer
    /// lost inside the broker, the stall the worker's watchdog exists for).
    pub fn drop_consumers_silently(&self, queue: &str) -> usize {
        let printed = self.eval(&format!(
            "{} [gen_server2:call(QPid, {{basic_cancel, element(1, C), element(2, C), undefined,              <<\"test\">>}}, infinity) || C <- rabbit_amqqueue:consumers(Q)].",
            lookup(queue)
        ));
        printed.matches("ok").count()
    }

    /// Suspends the process of `queue`: it answers nothing (no declare, no delivery) until
    /// [`PrivateRabbit::resume_queue`].
    pub fn suspend_queue(&self, queue: &str) {
        self.eval(&format!("{} sys:suspend(QPid).", lookup(queue)));
    }

    /// Resumes a queue suspended by [`PrivateRabbit::suspend_queue`].
    pub fn resume_queue(&self, queue: &str) {
        self.eval(&format!("{} sys:resume(QPid).", lookup(queue)));
    }

    /// The AMQP port of the node.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's name (`jf…@localhost`), as `rabbitmqctl -n` takes it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Kills the node's Erlang VM with SIGKILL: no goodbye to clients or to the other nodes
    /// of a cluster. [`PrivateRabbit::launch`] starts it again on its data.
    pub fn kill(&self) {
        let pid = self.eval("os:getpid().");
        let pid: i32 = pid.trim().trim_matches('"').parse().expect("the node's OS pid");
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL the node");
        // Gone once its VM no longer answers.
        while self.ping() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node cleanly (`rabbitmqctl stop`: clients are told, the VM exits).
    /// [`PrivateRabbit::launch`] starts it again on its data.
    pub fn stop(&self) {
        self.ctl(&["stop"]);
    }

    /// Whether the node's VM answers `rabbitmqctl` (the app may be stopped).
    pub fn ping(&self) -> bool {
        Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node, "ping"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `rabbitmqctl -n <node> args…` and returns what it printed; panics if it fails.
    pub fn ctl_output(&self, args: &[&str]) -> String {
        self.try_ctl_output(args)
            .unwrap_or_else(|e| panic!("rabbitmqctl {args:?} failed: {e}"))
    }

    /// Runs `rabbitmqctl -n <node> args…`: what it printed, or why it failed.
    pub fn try_ctl_output(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        match output.status.success() {
            true => Ok(text),
            false => Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr))),
        }
    }

    /// Whether the node runs the `rabbit` app (its VM answers and the app is started).
    pub fn is_running(&self) -> bool {
        self.try_ctl_output(&["eval", "rabbit:is_running()."])
            .is_ok_and(|printed| printed.trim() == "true")
    }

    pub(crate) fn ctl(&self, args: &[&str]) {
        let status = Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl {args:?} failed");
    }

    /// Closes every client connection, as a network cut does: unacknowledged deliveries go
    /// back to their queues and are redelivered once the clients reconnect.
    pub fn close_all_connections(&self) {
        self.ctl(&["close_all_connections", "test"]);
    }

    /// Restarts the broker: every connection drops, durable queues and persistent
    /// messages come back.
    pub fn restart(&self, down_for: Duration) {
        self.ctl(&["stop_app"]);
        std::thread::sleep(down_for);
        self.ctl(&["start_app"]);
        wait_for_port(self.port, Duration::from_secs(60));
    }

    /// Raises a memory alarm, as when the node passes its memory high watermark: the broker
    /// blocks every connection that publishes until [`PrivateRabbit::clear_memory_alarm`].
    pub fn raise_memory_alarm(&self) {
        self.ctl(&[
            "eval",
            "rabbit_alarm:set_alarm({{resource_limit, memory, node()}, []}).",
        ]);
    }

    /// Clears the alarm of [`PrivateRabbit::raise_memory_alarm`]: publishers go on.
    pub fn clear_memory_alarm(&self) {
        self.ctl(&[
            "eval",
            "rabbit_alarm:clear_alarm({resource_limit, memory, node()}).",
        ]);
    }
}

/// 8 hex digits, unique enough to name a test's nodes and directories.
pub(crate) fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// `rabbitmq.conf` lines for a TLS listener on `port` that requires a client certificate.
fn tls_listener(pki: &TestPki, port: u16) -> String {
    format!(
        "listeners.ssl.default = {port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n",
        pki.ca().display(),
        pki.server_cert().display(),
        pki.server_key().display()
    )
}

/// Erlang that binds `Q` to the classic queue `queue` of vhost `/` and `QPid` to its process.
fn lookup(queue: &str) -> String {
    format!(
        "{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"{queue}\">>)),          QPid = amqqueue:get_pid(Q),"
    )
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of its own with the append-only file on (fsync always), as production
/// runs it; or a sentinel of its own ([`PrivateRedis::start_sentinel`]).
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// TLS-only: `--tls-*` options, and `redis-cli`'s.
    tls: Option<(Vec<String>, Vec<String>)>,
    /// More server options (e.g. `--replicaof`).
    options: Vec<String>,
    /// A sentinel: runs `sentinel.conf` of its directory with `--sentinel`.
    sentinel: bool,
}

impl PrivateRedis {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> PrivateRedis {
        PrivateRedis::start_configured(None)
    }

    /// Starts a server with more options (e.g. `["--replicaof", "127.0.0.1", "6380"]`) and
    /// waits until it accepts connections.
    pub fn start_with<S: AsRef<str>>(options: &[S]) -> PrivateRedis {
        let mut redis = PrivateRedis::unstarted(None);
        redis.options = options.iter().map(|o| o.as_ref().to_string()).collect();
        redis.launch();
        redis
    }

    /// Starts a sentinel (`redis-server sentinel.conf --sentinel`) whose `sentinel.conf`
    /// holds `config` (the sentinel rewrites it as it learns), and waits until it accepts
    /// connections.
    pub fn start_sentinel(config: &str) -> PrivateRedis {
        let mut sentinel = PrivateRedis::unstarted(None);
        std::fs::write(sentinel.dir.join("sentinel.conf"), config).expect("sentinel.conf");
        sentinel.sentinel = true;
        sentinel.launch();
        sentinel
    }

    /// Starts a server that speaks only TLS on its port (`--port 0 --tls-port`), with the
    /// server certificate of `pki`, requiring a client certificate its CA signed.
    pub fn start_tls(pki: &TestPki) -> PrivateRedis {
        PrivateRedis::start_configured(Some(tls_options(pki)))
    }

    /// Starts a sentinel as [`PrivateRedis::start_sentinel`] that speaks only TLS, as
    /// [`PrivateRedis::start_tls`] does, and reaches the servers it monitors over TLS too
    /// (`tls-replication`), with the client certificate of `pki`.
    pub fn start_tls_sentinel(pki: &TestPki, config: &str) -> PrivateRedis {
        let mut sentinel = PrivateRedis::unstarted(Some(tls_options(pki)));
        std::fs::write(sentinel.dir.join("sentinel.conf"), config).expect("sentinel.conf");
        sentinel.sentinel = true;
        sentinel.options = vec![
            "--tls-replication".into(),
            "yes".into(),
            "--tls-client-cert-file".into(),
            utf8(pki.client_cert()),
            "--tls-client-key-file".into(),
            utf8(pki.client_key()),
        ];
        sentinel.launch();
        sentinel
    }

    fn start_configured(tls: Option<(Vec<String>, Vec<String>)>) -> PrivateRedis {
        let mut redis = PrivateRedis::unstarted(tls);
        redis.launch();
        redis
    }

    /// A server on a free port with its own directory, not started yet.
    fn unstarted(tls: Option<(Vec<String>, Vec<String>)>) -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!(
            "jobfleet-redis-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        PrivateRedis {
            port: free_port(),
            dir,
            child: None,
            tls,
            options: Vec::new(),
            sentinel: false,
        }
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let ports: Vec<&str> = match &self.tls {
            None => vec!["--port", &port],
            Some(_) => vec!["--port", "0", "--tls-port", &port],
        };
        let mut command = Command::new("redis-server");
        if self.sentinel {
            command.arg(self.dir.join("sentinel.conf")).arg("--sentinel");
        }
        command
            .args(["--bind", "127.0.0.1", "--dir", self.dir.to_str().expect("utf-8")])
            .args(ports)
            .args(self.tls.iter().flat_map(|(server, _)| server));
        if !self.sentinel {
            command.args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""]);
        }
        let child = command
            .args(&self.options)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/services)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    /// The Redis URL of the server (`rediss://` for [`PrivateRedis::start_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The port of the server.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, and keys
    /// whose expiry passes meanwhile are gone when it resumes.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Kills the server at once (SIGKILL) and waits for it: whatever its replicas did not
    /// have yet is gone with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on its port and data, with `options` instead of the
    /// ones it had (e.g. `--replicaof` the new primary).
    pub fn start_again_with<S: AsRef<str>>(&mut self, options: &[S]) {
        self.kill();
        self.options = options.iter().map(|o| o.as_ref().to_string()).collect();
        self.launch();
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("redis-server runs");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }

    /// Stops the server (a clean shutdown), waits, and starts it again on its data.
    pub fn restart(&mut self, down_for: Duration) {
        let _ = Command::new("redis-cli")
            .args(self.tls.iter().flat_map(|(_, cli)| cli))
            .args(["-p", &self.port.to_string(), "shutdown"])
            .stdout(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.launch();
    }
}

/// The `--tls-*` options of a TLS-only server with the server certificate of `pki`,
/// requiring a client certificate its CA signed; and `redis-cli`'s options to reach it.
fn tls_options(pki: &TestPki) -> (Vec<String>, Vec<String>) {
    let server = vec![
        "--tls-cert-file".into(),
        utf8(pki.server_cert()),
        "--tls-key-file".into(),
        utf8(pki.server_key()),
        "--tls-ca-cert-file".into(),
        utf8(pki.ca()),
        "--tls-auth-clients".into(),
        "yes".into(),
    ];
    let cli = vec![
        "--tls".into(),
        "--cacert".into(),
        utf8(pki.ca()),
        "--cert".into(),
        utf8(pki.client_cert()),
        "--key".into(),
        utf8(pki.client_key()),
    ];
    (server, cli)
}

fn utf8(path: PathBuf) -> String {
    path.to_str().expect("utf-8").to_string()
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
