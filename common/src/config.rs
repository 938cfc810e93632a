//! The fleet configuration (SPEC §5): one TOML file for master and workers, overridden by
//! environment variables, with the zero-config `default` group when there is no file.
//! (Over 600 lines: one struct per table of the file, its defaults and its validation in
//! one place, and ~240 lines of unit tests of them.)

use crate::auth::{AuthConfig, TokenTable};
use crate::coordinator::SentinelUrl;
use crate::limits::{is_valid_limit_key, Limits, RateLimit};
use crate::schedule::{check_name, ScheduleConfig};
use crate::tls::{HttpsConfig, TlsConfig, TlsError};
use lapin::uri::AMQPUri;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default namespace.
pub const DEFAULT_NAMESPACE: &str = "jobfleet";
/// Default AMQP URL.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// Default master HTTP address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The group of the zero-config fleet.
pub const DEFAULT_GROUP: &str = "default";
/// The built-in functions of SPEC §6, served by the default worker binary.
pub const BUILTIN_FUNCTIONS: [&str; 5] = ["echo", "sleep", "fail", "wordcount", "crash"];

/// Environment variable names (SPEC §5).
pub mod env {
    /// Config file path.
    pub const CONFIG: &str = "JOBFLEET_CONFIG";
    /// Namespace.
    pub const NAMESPACE: &str = "JOBFLEET_NAMESPACE";
    /// AMQP URL.
    pub const AMQP_URL: &str = "JOBFLEET_AMQP_URL";
    /// Redis URL.
    pub const REDIS_URL: &str = "JOBFLEET_REDIS_URL";
    /// Master HTTP address.
    pub const LISTEN: &str = "JOBFLEET_LISTEN";
    /// Worker groups, comma separated.
    pub const GROUPS: &str = "JOBFLEET_GROUPS";
    /// Worker jobs in flight.
    pub const CONCURRENCY: &str = "JOBFLEET_CONCURRENCY";
    /// Worker metrics address.
    pub const METRICS_LISTEN: &str = "JOBFLEET_METRICS_LISTEN";
    /// The key that signs the master's web UI sessions (`[ui] session_secret`).
    pub const UI_SESSION_SECRET: &str = "JOBFLEET_UI_SESSION_SECRET";
}

/// Why the configuration is unusable. Binaries exit 64 on it, before binding any port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value breaks a rule of the schema.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A function's args schema is not a valid JSON Schema.
    #[error("invalid config: function {function}: invalid JSON Schema: {source}")]
    Schema {
        /// The function, as `group.function`.
        function: String,
        /// Why the schema does not compile (boxed: the error is large and rare).
        source: Box<jsonschema::ValidationError<'static>>,
    },
    /// A `[tls]` file is unreadable or not what it should be.
    #[error("invalid config: {0}")]
    Tls(#[from] TlsError),
}

/// A group queue's RabbitMQ queue type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// A classic durable queue (default).
    #[default]
    Classic,
    /// A replicated quorum queue, for RabbitMQ clusters.
    Quorum,
}

impl QueueType {
    /// Its name in the fleet file: `classic` or `quorum`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// Where a function runs (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    /// A Rust handler registered with the worker library.
    #[default]
    Inprocess,
    /// A command run with args on stdin and the result on stdout.
    Process,
}

/// Whether a process function gets a fresh process per job or reuses warm ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessMode {
    /// A fresh process per job (default).
    #[default]
    Exclusive,
    /// Long-lived processes fed newline-delimited JSON.
    Shared,
}

/// How far a process function is cut off from the host (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A plain process of the host (default).
    #[default]
    None,
    /// Under bubblewrap: own PID, IPC, UTS and network namespaces, read-only filesystem.
    Namespace,
}

/// One function of a group.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// Sandbox; default `inprocess`.
    #[serde(default)]
    pub sandbox: SandboxKind,
    /// argv of a `process` function.
    #[serde(default)]
    pub command: Vec<String>,
    /// Process mode; default `exclusive`.
    #[serde(default)]
    pub mode: ProcessMode,
    /// Timeout per job, e.g. `"30s"`; default [`Config::DEFAULT_TIMEOUT`].
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Retries after a failure; default 0.
    #[serde(default)]
    pub max_retries: u32,
    /// JSON Schema that `args` must satisfy.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Base of the exponential back-off between retries (`base * 2^(attempt-1)`, at most
    /// 1 h); default 1 s.
    #[serde(default, deserialize_with = "opt_duration")]
    pub retry_backoff: Option<Duration>,
    /// Names of worker environment variables passed to a process function (its
    /// environment is otherwise cleared but for PATH, LANG, HOME and TMPDIR).
    #[serde(default)]
    pub env: Vec<String>,
    /// rlimits and stop grace of a process function.
    #[serde(default)]
    pub limits: ProcessLimits,
    /// Shared mode: jobs a process serves before it is replaced; default 1000.
    #[serde(default)]
    pub recycle_after: Option<u32>,
    /// A process function's isolation; default `none`.
    #[serde(default)]
    pub isolation: Isolation,
    /// `isolation = "namespace"`: keep the host's network; default false.
    #[serde(default)]
    pub network: Option<bool>,
    /// The user a process function runs as when the worker runs as root; default `nobody`.
    #[serde(default)]
    pub user: Option<String>,
}

/// rlimits of a process function's processes, and how long a stopped one gets between
/// TERM and KILL.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProcessLimits {
    /// Address space in MiB (RLIMIT_AS); default 2048.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: Option<u64>,
    /// CPU seconds (RLIMIT_CPU); default none (the timeout bounds a job).
    #[serde(default)]
    pub cpu_seconds: Option<u64>,
    /// Open files (RLIMIT_NOFILE); default 1024.
    #[serde(default = "default_open_files")]
    pub open_files: Option<u64>,
    /// Between TERM and KILL; default 2 s.
    #[serde(default, deserialize_with = "opt_duration")]
    pub kill_grace: Option<Duration>,
    /// Processes of the user the function runs as (RLIMIT_NPROC); default none.
    #[serde(default)]
    pub processes: Option<u64>,
    /// Largest file it may write, MiB (RLIMIT_FSIZE); default none.
    #[serde(default)]
    pub file_size_mb: Option<u64>,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        ProcessLimits {
            memory_mb: default_memory_mb(),
            cpu_seconds: None,
            open_files: default_open_files(),
            kill_grace: None,
            processes: None,
            file_size_mb: None,
        }
    }
}

fn default_memory_mb() -> Option<u64> {
    Some(2048)
}

fn default_open_files() -> Option<u64> {
    Some(1024)
}

impl FunctionConfig {
    /// The sandbox-hardening settings (SPEC §8) that only make sense together.
    fn check_hardening(&self) -> Result<(), String> {
        let hardened = self.isolation != Isolation::None || self.user.is_some() || self.network.is_some();
        if self.sandbox == SandboxKind::Inprocess && hardened {
            return Err("`isolation`, `network` and `user` need sandbox = \"process\"".into());
        }
        if self.network.is_some() && self.isolation != Isolation::Namespace {
            return Err("`network` needs isolation = \"namespace\"".into());
        }
        if self.user.as_deref().is_some_and(|user| user.trim().is_empty()) {
            return Err("`user` must name a user".into());
        }
        if self.limits.processes == Some(0) {
            return Err("limits.processes must be at least 1".into());
        }
        Ok(())
    }

    /// The back-off before retry number `retry` (1-based): `retry_backoff * 2^(retry-1)`,
    /// at most one hour.
    pub fn retry_delay(&self, retry: u32) -> Duration {
        let base = self.retry_backoff.unwrap_or(Duration::from_secs(1));
        base.saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(Duration::from_secs(3600))
    }
}

/// One consumer group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Consecutive infrastructure failures that break the group; default 5.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Queue type; default classic.
    #[serde(default)]
    pub queue_type: QueueType,
    /// How often a started job may be taken over from a worker that died (a SIGKILL, an
    /// OOM kill) before it fails with `crashed`; default 3.
    #[serde(default = "default_max_takeovers")]
    pub max_takeovers: u32,
    /// How long a job may wait for a worker before failing with `no_worker`; default none.
    #[serde(default, deserialize_with = "opt_duration")]
    pub queue_timeout: Option<Duration>,
    /// How long the group's ended jobs are kept (records, their idempotency keys); default
    /// the fleet's `retention`. A group with many small jobs keeps them shorter.
    #[serde(default, deserialize_with = "opt_duration")]
    pub retention: Option<Duration>,
    /// Job priorities (SPEC §9): the group queue is a priority queue (`x-max-priority`) of
    /// 1..=9 levels, and a job's `priority` above it counts as this; default none (every
    /// job has priority 0). Needs a classic queue.
    #[serde(default)]
    pub max_priority: Option<u8>,
    /// Fleet-wide cap on the group's started jobs (SPEC §9); default none.
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Fleet-wide start rate, `"N/s"`, `"N/m"` or `"N/h"` (SPEC §9); default none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// A top-level field of `args` whose every value gets `rate_limit` of its own.
    #[serde(default)]
    pub limit_key: Option<String>,
    /// The group's functions by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionConfig>,
}

impl GroupConfig {
    /// The limits the config file sets (an admin's run-time changes override them).
    pub fn limits(&self) -> Limits {
        Limits {
            paused: false,
            max_running: self.max_running,
            rate_limit: self.rate_limit,
            limit_key: self.limit_key.clone(),
        }
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            max_failures: default_max_failures(),
            max_takeovers: default_max_takeovers(),
            queue_type: QueueType::Classic,
            queue_timeout: None,
            retention: None,
            max_priority: None,
            max_running: None,
            rate_limit: None,
            limit_key: None,
            functions: BTreeMap::new(),
        }
    }
}

impl GroupConfig {
    /// `max_priority` is 1..=9 and on a classic queue: RabbitMQ (3.10) quorum queues have
    /// no priorities.
    fn check_max_priority(&self) -> Result<(), String> {
        match self.max_priority {
            Some(max) if !(1..=crate::message::MAX_PRIORITY).contains(&max) => {
                Err(format!("max_priority must be 1..=9, not {max}"))
            }
            Some(_) if self.queue_type == QueueType::Quorum => Err(
                "max_priority needs queue_type = \"classic\": RabbitMQ 3.10 quorum queues have no priorities"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

fn default_max_takeovers() -> u32 {
    3
}

fn default_max_failures() -> u32 {
    5
}

/// The fleet configuration, resolved: file, then environment on top.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prefix of every AMQP name and Redis key.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// AMQP URL, or the comma-separated URLs of a cluster's nodes (see [`amqp_urls`]).
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,
    /// Redis URL: `redis://`, `rediss://`, or a Sentinel set's primary,
    /// `redis+sentinel://host:port,host:port/<master name>/<db>` (`rediss+sentinel://`).
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// Replicas that must acknowledge each job status transition (Redis `WAIT`) before it
    /// counts as done; default 0: asynchronous replication, a failover may lose the last
    /// transitions (the run-record corrector repairs them).
    #[serde(default)]
    pub redis_min_replicas: u32,
    /// How long a transition waits for those replicas before it fails and is retried;
    /// default 100 ms.
    #[serde(default = "default_redis_wait_timeout", deserialize_with = "duration")]
    pub redis_wait_timeout: Duration,
    /// Master HTTP address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long terminal job records are kept; default 24 h.
    #[serde(default = "default_retention", deserialize_with = "duration")]
    pub retention: Duration,
    /// Largest `args` accepted, in bytes; default 1 MiB.
    #[serde(default = "default_max_args_bytes")]
    pub max_args_bytes: usize,
    /// How long a record may stay `queued` with no message that can reach it, or `started`
    /// by a dead worker, before the master's run-record corrector republishes its job;
    /// default 60 s.
    #[serde(default = "default_corrector_bound", deserialize_with = "duration")]
    pub corrector_bound: Duration,
    /// API tokens (SPEC §8); `None`: no `[auth]` table, the master serves only on loopback.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// How many entries the audit trail keeps (newest); default 10,000.
    #[serde(default = "default_audit_entries")]
    pub audit_entries: usize,
    /// The groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// `[schedules.<name>]`: cron schedules the leader master fires (SPEC §9).
    #[serde(default)]
    pub schedules: BTreeMap<String, ScheduleConfig>,
    /// `[tls]`: what clients trust and present on `amqps://` and `rediss://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[https]`: the master serves HTTPS with this certificate (checked by the master).
    #[serde(default)]
    pub https: Option<HttpsConfig>,
    /// `[ui]`: the master's web UI (SPEC §11).
    #[serde(default)]
    pub ui: UiConfig,
}

/// The `[ui]` table: settings of the master's web UI.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// The key that signs UI session cookies. Masters behind one address share it so a
    /// session signed by one is honoured by the others; unset, every master process draws
    /// a random one (sessions end when it restarts).
    #[serde(default)]
    pub session_secret: Option<String>,
}

impl fmt::Debug for UiConfig {
    /// Never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = self.session_secret.as_ref().map(|_| "<set>");
        f.debug_struct("UiConfig")
            .field("session_secret", &secret)
            .finish()
    }
}

fn default_redis_wait_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_audit_entries() -> usize {
    10_000
}

fn default_corrector_bound() -> Duration {
    Duration::from_secs(60)
}

fn default_max_args_bytes() -> usize {
    1024 * 1024
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}
fn default_amqp_url() -> String {
    DEFAULT_AMQP_URL.into()
}
fn default_redis_url() -> String {
    DEFAULT_REDIS_URL.into()
}
fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_retention() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Parses a duration such as `30s`, `5m`, `24h` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("duration {text:?}: {e}"))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

impl Default for Config {
    /// The zero-config fleet: defaults everywhere and the `default` group with the built-ins.
    fn default() -> Self {
        let functions = BUILTIN_FUNCTIONS
            .iter()
            .map(|name| (name.to_string(), FunctionConfig::default()))
            .collect();
        Config {
            namespace: default_namespace(),
            amqp_url: default_amqp_url(),
            redis_url: default_redis_url(),
            redis_min_replicas: 0,
            redis_wait_timeout: default_redis_wait_timeout(),
            listen: default_listen(),
            retention: default_retention(),
            corrector_bound: default_corrector_bound(),
            max_args_bytes: default_max_args_bytes(),
            auth: None,
            audit_entries: default_audit_entries(),
            tls: TlsConfig::default(),
            https: None,
            ui: UiConfig::default(),
            schedules: BTreeMap::new(),
            groups: BTreeMap::from([(
                DEFAULT_GROUP.to_string(),
                GroupConfig {
                    functions,
                    ..GroupConfig::default()
                },
            )]),
        }
    }
}

impl Config {
    /// A function's timeout when neither its config nor the job sets one.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

    /// Parses and validates a TOML document. A file without `[groups]` gets the `default` group.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)?;
        if config.groups.is_empty() {
            config.groups = Config::default().groups;
        }
        config.validate()?;
        Ok(config)
    }

    /// Loads the configuration: the file at `path` (or the zero-config fleet), then the
    /// environment read through `env` on top.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text)?
            }
            None => Config::default(),
        };
        if let Some(namespace) = env(env::NAMESPACE) {
            config.namespace = namespace;
        }
        if let Some(url) = env(env::AMQP_URL) {
            config.amqp_url = url;
        }
        if let Some(url) = env(env::REDIS_URL) {
            config.redis_url = url;
        }
        if let Some(listen) = env(env::LISTEN) {
            config.listen = listen;
        }
        if let Some(secret) = env(env::UI_SESSION_SECRET) {
            config.ui.session_secret = Some(secret);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !crate::message::is_valid_name(&self.namespace) {
            return invalid(format!(
                "namespace {:?}: use 1..64 chars of [A-Za-z0-9_-]",
                self.namespace
            ));
        }
        if let Some(auth) = &self.auth {
            TokenTable::new(auth).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if SentinelUrl::is_sentinel(&self.redis_url) {
            SentinelUrl::parse(&self.redis_url)
                .map_err(|e| ConfigError::Invalid(format!("redis_url: {e}")))?;
        }
        if self.redis_min_replicas > 0 && self.redis_wait_timeout.is_zero() {
            return invalid("redis_wait_timeout must be more than 0 (WAIT 0 would block for ever)".into());
        }
        if self.audit_entries == 0 {
            return invalid("audit_entries must be at least 1".into());
        }
        for (group, group_config) in &self.groups {
            if !crate::message::is_valid_name(group) {
                return invalid(format!("group {group:?}: use 1..64 chars of [A-Za-z0-9_-]"));
            }
            if group_config.max_failures == 0 {
                return invalid(format!("group {group:?}: max_failures must be at least 1"));
            }
            if group_config.max_running == Some(0) {
                return invalid(format!("group {group:?}: max_running must be at least 1"));
            }
            if let Some(key) = group_config
                .limit_key
                .as_deref()
                .filter(|k| !is_valid_limit_key(k))
            {
                return invalid(format!("group {group:?}: limit_key {key:?} is no field name"));
            }
            if let Err(reason) = group_config.check_max_priority() {
                return invalid(format!("group {group:?}: {reason}"));
            }
            for (name, function) in &group_config.functions {
                if !crate::message::is_valid_name(name) {
                    return invalid(format!(
                        "function {group}.{name}: use 1..64 chars of [A-Za-z0-9_-]"
                    ));
                }
                if function.sandbox == SandboxKind::Process && function.command.is_empty() {
                    return invalid(format!(
                        "function {group}.{name}: a process function needs a `command` argv"
                    ));
                }
                if function.sandbox == SandboxKind::Inprocess && !function.command.is_empty() {
                    return invalid(format!(
                        "function {group}.{name}: `command` needs sandbox = \"process\""
                    ));
                }
                if let Err(reason) = function.check_hardening() {
                    return invalid(format!("function {group}.{name}: {reason}"));
                }
            }
        }
        amqp_urls(&self.amqp_url).map_err(ConfigError::Invalid)?;
        for (name, schedule) in &self.schedules {
            self.check_schedule(name, schedule)
                .map_err(|reason| ConfigError::Invalid(format!("schedule {name:?}: {reason}")))?;
        }
        self.tls.validate()?;
        Ok(())
    }

    /// The queue type of `NS.dead`: quorum as soon as one group's queues are, classic
    /// otherwise. Every master and worker of a fleet reads the same groups, so they agree.
    pub fn dead_letters_queue_type(&self) -> QueueType {
        match self.groups.values().any(|g| g.queue_type == QueueType::Quorum) {
            true => QueueType::Quorum,
            false => QueueType::Classic,
        }
    }

    /// Checks a schedule against this fleet: its name, cron expression and time zone, and
    /// that its group has its function.
    pub fn check_schedule(&self, name: &str, schedule: &ScheduleConfig) -> Result<(), String> {
        check_name(name).map_err(|e| e.to_string())?;
        schedule.timing().map_err(|e| e.to_string())?;
        if self.function(&schedule.group, &schedule.function).is_none() {
            return Err(format!(
                "group {:?} has no function {:?}",
                schedule.group, schedule.function
            ));
        }
        Ok(())
    }

    /// A group's configuration.
    pub fn group(&self, group: &str) -> Option<&GroupConfig> {
        self.groups.get(group)
    }

    /// A function's configuration.
    pub fn function(&self, group: &str, function: &str) -> Option<&FunctionConfig> {
        self.groups.get(group)?.functions.get(function)
    }
}

/// The node URLs of an `amqp_url` value (SPEC §12): one URL, or the nodes of a RabbitMQ
/// cluster separated by commas (spaces around them are ignored), tried in turn. Each must
/// be an `amqp://` or `amqps://` URL; an empty entry or an unparsable URL is an error that
/// names the entry (its password hidden).
pub fn amqp_urls(list: &str) -> Result<Vec<AMQPUri>, String> {
    list.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(index, url)| {
            if url.is_empty() {
                let shown = redact_url(list);
                return Err(format!("amqp_url: entry {} of {shown:?} is empty", index + 1));
            }
            url.parse::<AMQPUri>().map_err(|e| {
                let shown = redact_url(url);
                format!("amqp_url: {shown}: {}", e.replace(url, &shown))
            })
        })
        .collect()
}

/// Reads the process environment; binaries pass this to [`Config::load`], tests pass a map.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Hides the passwords of a URL, or of each URL of a comma-separated list, for logs:
/// `amqp://guest:***@host/`.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one_url).collect::<Vec<_>>().join(",")
}

fn redact_one_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, Some(p)))
        .unwrap_or((rest, None));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    match path {
        Some(path) => format!("{scheme}://{authority}/{path}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn zero_config_is_the_default_group_with_the_builtins() {
        let config = Config::load(None, |_| None).unwrap();
        assert_eq!(config.namespace, "jobfleet");
        assert_eq!(config.amqp_url, DEFAULT_AMQP_URL);
        assert_eq!(config.redis_url, DEFAULT_REDIS_URL);
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.retention, Duration::from_secs(86400));
        let group = config.group("default").unwrap();
        assert_eq!(group.max_failures, 5);
        for name in BUILTIN_FUNCTIONS {
            assert!(group.functions.contains_key(name), "{name}");
        }
    }

    #[test]
    fn a_file_is_parsed_and_the_environment_overrides_it() {
        let dir = std::env::temp_dir().join(format!("jobfleet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.toml");
        std::fs::write(
            &path,
            r#"
namespace = "prod"
retention = "2h"
[groups.etl]
max_failures = 3
queue_type = "quorum"
queue_timeout = "10m"
retention = "1h"
[groups.urgent]
max_priority = 9
[groups.etl.functions.wordcount]
timeout = "5s"
max_retries = 2
schema = { type = "object", required = ["text"] }
[groups.py.functions.score]
sandbox = "process"
command = ["python3", "score.py"]
mode = "shared"
"#,
        )
        .unwrap();
        let env = HashMap::from([
            (env::NAMESPACE, "staging"),
            (env::REDIS_URL, "redis://r:6379/1"),
            (env::UI_SESSION_SECRET, "s3cret-ui-key"),
        ]);
        let config = Config::load(Some(&path), |name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.namespace, "staging");
        assert_eq!(config.ui.session_secret.as_deref(), Some("s3cret-ui-key"));
        assert!(
            !format!("{config:?}").contains("s3cret-ui-key"),
            "the secret is never shown"
        );
        assert_eq!(config.redis_url, "redis://r:6379/1");
        assert_eq!(config.retention, Duration::from_secs(7200));
        let etl = config.group("etl").unwrap();
        assert_eq!(etl.max_failures, 3);
        assert_eq!(etl.queue_type, QueueType::Quorum);
        assert_eq!(etl.queue_timeout, Some(Duration::from_secs(600)));
        assert_eq!(etl.retention, Some(Duration::from_secs(3600)));
        assert_eq!(config.group("urgent").unwrap().retention, None);
        assert_eq!(etl.max_priority, None);
        assert_eq!(config.group("urgent").unwrap().max_priority, Some(9));
        let wordcount = config.function("etl", "wordcount").unwrap();
        assert_eq!(wordcount.timeout, Some(Duration::from_secs(5)));
        assert_eq!(wordcount.max_retries, 2);
        assert!(wordcount.schema.is_some());
        let score = config.function("py", "score").unwrap();
        assert_eq!(score.sandbox, SandboxKind::Process);
        assert_eq!(score.mode, ProcessMode::Shared);
        assert!(
            config.group("default").is_none(),
            "a file with groups replaces the default group"
        );
        assert_eq!(score.limits, ProcessLimits::default());
        assert_eq!(wordcount.retry_delay(1), Duration::from_secs(1));
        assert_eq!(wordcount.retry_delay(3), Duration::from_secs(4));
        assert_eq!(wordcount.retry_delay(40), Duration::from_secs(3600));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let cases = [
            ("namespace = \"has space\"", "namespace"),
            ("[groups.g]\nmax_failures = 0", "max_failures"),
            ("[groups.g.functions.f]\nsandbox = \"process\"", "command"),
            ("[groups.g.functions.f]\ntimeout = \"soon\"", "duration"),
            ("unknown_key = 1", "unknown"),
            ("[groups.\"a.b\"]", "group"),
            ("[groups.g]\nmax_priority = 0", "max_priority must be 1..=9"),
            ("[groups.g]\nmax_priority = 10", "max_priority must be 1..=9"),
            ("[groups.g]\nmax_priority = 300", "max_priority"),
            (
                "[groups.g]\nqueue_type = \"quorum\"\nmax_priority = 5",
                "quorum queues have no priorities",
            ),
            ("[groups.g.functions.f]\nuser = \"nobody\"", "need sandbox"),
            (
                "[groups.g.functions.f]\nsandbox = \"process\"\ncommand = [\"x\"]\nnetwork = true",
                "isolation",
            ),
            (
                "[groups.g.functions.f]\nsandbox = \"process\"\ncommand = [\"x\"]\nisolation = \"vm\"",
                "unknown variant",
            ),
            (
                "[groups.g.functions.f]\nsandbox = \"process\"\ncommand = [\"x\"]\nlimits = { processes = 0 }",
                "processes",
            ),
            ("redis_url = \"redis+sentinel://h:26379\"", "redis_url: no master name"),
            ("redis_min_replicas = 1\nredis_wait_timeout = \"0s\"", "redis_wait_timeout"),
            (
                "[schedules.s]\ncron = \"* * *\"\ngroup = \"default\"\nfunction = \"echo\"",
                "3 fields",
            ),
            (
                "[schedules.s]\ncron = \"* * * * *\"\ngroup = \"default\"\nfunction = \"nope\"",
                "no function",
            ),
            (
                "[schedules.s]\ncron = \"* * * * *\"\ngroup = \"default\"\nfunction = \"echo\"\ntimezone = \"Nowhere\"",
                "time zone",
            ),
            (
                "[schedules.\"a:b\"]\ncron = \"* * * * *\"\ngroup = \"default\"\nfunction = \"echo\"",
                "schedule name",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
        let err = Config::load(Some(Path::new("/nonexistent/fleet.toml")), |_| None).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        let env = HashMap::from([(env::REDIS_URL, "redis+sentinel://h:1/m/zero")]);
        let err = Config::load(None, |name| env.get(name).map(|v| v.to_string())).unwrap_err();
        assert!(err.to_string().contains("database \"zero\""), "{err}");
    }

    #[test]
    fn a_sentinel_url_and_a_replica_wait_are_read() {
        let config = Config::from_toml(
            "redis_url = \"redis+sentinel://s1:26379,s2:26380/jobs/2\"\n\
             redis_min_replicas = 1\nredis_wait_timeout = \"50ms\"",
        )
        .unwrap();
        assert_eq!(config.redis_min_replicas, 1);
        assert_eq!(config.redis_wait_timeout, Duration::from_millis(50));
        let defaults = Config::default();
        assert_eq!(defaults.redis_min_replicas, 0);
        assert_eq!(defaults.redis_wait_timeout, Duration::from_millis(100));
    }

    #[test]
    fn the_sandbox_hardening_settings_are_read() {
        let config = Config::from_toml(
            r#"
[groups.g.functions.f]
sandbox = "process"
command = ["python3", "f.py"]
isolation = "namespace"
network = true
user = "jobs"
limits = { processes = 64, file_size_mb = 10 }
"#,
        )
        .unwrap();
        let f = config.function("g", "f").unwrap();
        assert_eq!(f.isolation, Isolation::Namespace);
        assert_eq!((f.network, f.user.as_deref()), (Some(true), Some("jobs")));
        assert_eq!((f.limits.processes, f.limits.file_size_mb), (Some(64), Some(10)));
        let plain =
            Config::from_toml("[groups.g.functions.f]\nsandbox = \"process\"\ncommand = [\"x\"]").unwrap();
        let plain = plain.function("g", "f").unwrap();
        assert_eq!(
            (plain.isolation, plain.network, plain.user.as_deref()),
            (Isolation::None, None, None)
        );
    }

    #[test]
    fn amqp_url_lists_name_the_nodes_of_a_cluster() {
        let one = amqp_urls(DEFAULT_AMQP_URL).unwrap();
        assert_eq!(one, vec![DEFAULT_AMQP_URL.parse::<AMQPUri>().unwrap()]);
        let nodes =
            amqp_urls("amqp://u:p@rabbit-1:5672/%2f, amqps://u:p@rabbit-2:5671/jobs ,amqp://rabbit-3")
                .unwrap();
        let hosts: Vec<(&str, u16)> = nodes
            .iter()
            .map(|uri| (uri.authority.host.as_str(), uri.authority.port))
            .collect();
        assert_eq!(
            hosts,
            [("rabbit-1", 5672), ("rabbit-2", 5671), ("rabbit-3", 5672)]
        );
        assert_eq!(nodes[1].scheme, lapin::uri::AMQPScheme::AMQPS);
        assert_eq!(nodes[1].vhost, "jobs");
        assert_eq!(nodes[0].authority.userinfo.password, "p");

        for (list, needle) in [
            ("amqp://a,,amqp://b", "entry 2"),
            ("amqp://a,", "entry 2"),
            ("", "entry 1"),
            ("amqp://u:secret@a,http://u:secret@b", "Invalid AMQP scheme"),
        ] {
            let err = amqp_urls(list).unwrap_err();
            assert!(err.contains(needle), "{list:?} gave {err:?}");
            assert!(!err.contains("secret"), "{list:?} shows a password: {err:?}");
        }
        let err = Config::from_toml("amqp_url = \"amqp://a, mqtt://b\"").unwrap_err();
        assert!(err.to_string().contains("amqp_url"), "{err}");
    }

    #[test]
    fn schedules_are_read_from_the_file() {
        let config = Config::from_toml(
            r#"
[groups.etl.functions.report]
[schedules.nightly]
cron = "0 2 * * *"
group = "etl"
function = "report"
args = { full = true }
timezone = "Europe/Paris"
"#,
        )
        .unwrap();
        let nightly = &config.schedules["nightly"];
        assert_eq!(nightly.timezone.as_deref(), Some("Europe/Paris"));
        assert_eq!(nightly.args, serde_json::json!({"full": true}));
        assert!(Config::default().schedules.is_empty());
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact_url("amqp://a:one@h1/%2f,amqps://b:two@h2:5671"),
            "amqp://a:***@h1/%2f,amqps://b:***@h2:5671"
        );
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }
}
