//! The docker-compose stack (compose/) checked against what it runs, since Docker cannot
//! start it in CI: the settings it passes are the binaries' (SPEC §5), the addresses it
//! binds are the ones Prometheus scrapes and the ports it publishes, the config file it
//! mounts is the one it names and parses, every group has a worker, the image builds the
//! binaries the services run, and Grafana gets the provisioning the dashboards expect.
//!
//! Credentials (SPEC §8): `compose/init` generates them into a temp directory here; every
//! credential of the compose file comes from that `.env`, the fleet file it writes carries
//! valid tokens, Prometheus scrapes the master with its read token, and the services'
//! commands, healthchecks and URLs work against a real Redis, RabbitMQ, master and worker
//! started with what compose would pass them. No `guest` and no `admin/admin` anywhere.

use jobfleet_common::auth::{Role, TokenTable, TOKEN_PREFIX};
use jobfleet_common::config::{env, Config, SandboxKind};
use jobfleet_tests::private::{free_port, wait_for_port, PrivateRabbit};
use jobfleet_tests::{binary, eventually};
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One service of the compose file, with its settings in the forms compose allows
/// (`environment` as a map or a list, short or long volume and port syntax) normalized.
#[derive(Debug)]
struct Service {
    name: String,
    image: Option<String>,
    build: Option<(String, String)>,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// (source as written, target in the container).
    volumes: Vec<(String, String)>,
    /// (published, container).
    ports: Vec<(u16, u16)>,
    /// The healthcheck's `test`: `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    healthcheck: Vec<String>,
}

impl Service {
    fn parse(name: &str, value: &Yaml) -> Service {
        let command = match &value["command"] {
            Yaml::Sequence(items) => items.iter().map(|i| text(i).expect("a command word")).collect(),
            Yaml::String(s) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        let environment = match &value["environment"] {
            Yaml::Mapping(map) => map
                .iter()
                .map(|(k, v)| (text(k).expect("a name"), text(v).unwrap_or_default()))
                .collect(),
            Yaml::Sequence(items) => items
                .iter()
                .map(|i| {
                    let item = text(i).expect("NAME=value");
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let volumes = match &value["volumes"] {
            Yaml::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    Yaml::String(s) => {
                        let mut parts = s.split(':');
                        let source = parts.next().unwrap_or_default().to_string();
                        let target = parts
                            .next()
                            .unwrap_or_else(|| panic!("{name}: volume {s:?} without a target"))
                            .to_string();
                        (source, target)
                    }
                    long => (
                        text(&long["source"]).unwrap_or_default(),
                        text(&long["target"]).expect("a volume target"),
                    ),
                })
                .collect(),
            _ => Vec::new(),
        };
        let ports = match &value["ports"] {
            Yaml::Sequence(items) => items
                .iter()
                .map(|i| match i {
                    Yaml::Mapping(_) => (
                        text(&i["published"])
                            .and_then(|p| p.parse().ok())
                            .expect("a published port"),
                        text(&i["target"])
                            .and_then(|p| p.parse().ok())
                            .expect("a target port"),
                    ),
                    short => {
                        let short = text(short).expect("a port mapping");
                        let parts: Vec<&str> = short.split(':').collect();
                        let port = |p: &str| {
                            p.split('/')
                                .next()
                                .unwrap_or(p)
                                .parse()
                                .unwrap_or_else(|_| panic!("{name}: port {short:?}"))
                        };
                        assert!(parts.len() >= 2, "{name}: port {short:?} publishes no host port");
                        (port(parts[parts.len() - 2]), port(parts[parts.len() - 1]))
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let build = match &value["build"] {
            Yaml::Null => None,
            Yaml::String(context) => Some((context.clone(), "Dockerfile".to_string())),
            build => Some((
                text(&build["context"]).unwrap_or_else(|| ".".into()),
                text(&build["dockerfile"]).unwrap_or_else(|| "Dockerfile".into()),
            )),
        };
        let healthcheck = match &value["healthcheck"]["test"] {
            Yaml::Sequence(items) => items.iter().map(|i| text(i).expect("a test word")).collect(),
            Yaml::String(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            _ => Vec::new(),
        };
        Service {
            name: name.to_string(),
            image: text(&value["image"]),
            build,
            command,
            environment,
            volumes,
            ports,
            healthcheck,
        }
    }

    /// The program the service runs: its command, or the image's default.
    fn program<'a>(&'a self, image_default: &'a str) -> &'a str {
        self.command.first().map(String::as_str).unwrap_or(image_default)
    }

    /// The host file or directory mounted at `target`, resolved against compose/.
    fn mounted(&self, target: &str) -> Option<PathBuf> {
        self.volumes
            .iter()
            .find(|(_, t)| t.trim_end_matches('/') == target.trim_end_matches('/'))
            .map(|(source, _)| repo().join("compose").join(source))
    }

    /// The host path that holds `container_path`, through the deepest mount containing it.
    fn host_path(&self, container_path: &str) -> Option<PathBuf> {
        self.volumes
            .iter()
            .filter(|(source, _)| source.starts_with('.') || source.starts_with('/'))
            .filter_map(|(source, target)| {
                Path::new(container_path)
                    .strip_prefix(target)
                    .ok()
                    .map(|rest| (target.len(), repo().join("compose").join(source).join(rest)))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, path)| path)
    }
}

/// The services as written (`${...}` not interpolated).
fn services() -> BTreeMap<String, Service> {
    services_of(&yaml("compose/docker-compose.yml"))
}

fn services_of(compose: &Yaml) -> BTreeMap<String, Service> {
    let services = compose["services"].as_mapping().expect("a services map");
    services
        .iter()
        .map(|(name, value)| {
            let name = text(name).expect("a service name");
            (name.clone(), Service::parse(&name, value))
        })
        .collect()
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("compose/Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current
                    .trim()
                    .split_once(char::is_whitespace)
                    .unwrap_or((current.trim(), ""));
                instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    instructions
}

/// Binaries the image installs: what `COPY --from=<builder stage>` puts in /usr/local/bin,
/// each checked to be built by `cargo build --bin` and copied out of target/release.
fn image_binaries() -> BTreeSet<String> {
    let instructions = dockerfile();
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(k, _)| k == "FROM")
        .filter_map(|(_, rest)| {
            rest.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0].eq_ignore_ascii_case("as"))
                .map(|w| w[1])
        })
        .collect();
    assert!(!stages.is_empty(), "the Dockerfile has no named builder stage");
    let mut installed = BTreeSet::new();
    for (_, rest) in instructions
        .iter()
        .filter(|(k, rest)| k == "COPY" && rest.starts_with("--from="))
    {
        let words: Vec<&str> = rest.split_whitespace().collect();
        let from = words[0].trim_start_matches("--from=");
        assert!(
            stages.contains(&from),
            "COPY --from={from}: no such stage (stages: {stages:?})"
        );
        let (destination, sources) = words[1..].split_last().expect("COPY sources and a destination");
        if destination.trim_end_matches('/') == "/usr/local/bin" {
            installed.extend(sources.iter().map(|s| {
                Path::new(s)
                    .file_name()
                    .expect("a file")
                    .to_string_lossy()
                    .into_owned()
            }));
        }
    }
    let build = instructions
        .iter()
        .find(|(k, rest)| k == "RUN" && rest.contains("cargo build"))
        .map(|(_, rest)| rest.clone())
        .expect("a RUN cargo build step");
    let words: Vec<&str> = build.split_whitespace().collect();
    let built: BTreeSet<&str> = words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    assert!(
        words.contains(&"--release") && words.contains(&"--locked"),
        "build release binaries from Cargo.lock: {build}"
    );
    for binary in &installed {
        assert!(
            built.contains(binary.as_str()),
            "the image installs {binary}, but `cargo build` does not build it: {build}"
        );
        assert!(
            words.contains(&format!("target/release/{binary}").as_str()),
            "{binary} is not copied out of target/release in the build step: {build}"
        );
    }
    installed
}

/// The image's default program (CMD or ENTRYPOINT, exec form).
fn image_default_program() -> String {
    let instructions = dockerfile();
    let (_, cmd) = instructions
        .iter()
        .rev()
        .find(|(k, _)| k == "CMD" || k == "ENTRYPOINT")
        .expect("a CMD");
    let words: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    words[0].clone()
}

/// Every binary target of the workspace: package names with src/main.rs, `[[bin]]`
/// entries and src/bin/ files.
fn workspace_binaries() -> BTreeSet<String> {
    let root: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let members = root["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let mut binaries = BTreeSet::new();
    for member in members {
        let dir = repo().join(member.as_str().expect("a member path"));
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .expect("member manifest")
            .parse()
            .expect("member Cargo.toml");
        let package = manifest["package"]["name"].as_str().expect("a package name");
        if dir.join("src/main.rs").exists() {
            binaries.insert(package.to_string());
        }
        for bin in manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            binaries.insert(bin["name"].as_str().expect("a [[bin]] name").to_string());
        }
        for entry in std::fs::read_dir(dir.join("src/bin"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                binaries.insert(path.file_stem().expect("a name").to_string_lossy().into_owned());
            } else if path.join("main.rs").exists() {
                binaries.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    binaries
}

/// The service running an image whose name starts with `image`.
fn service_of_image<'a>(services: &'a BTreeMap<String, Service>, image: &str) -> &'a Service {
    services
        .values()
        .find(|s| s.image.as_deref().is_some_and(|i| i.starts_with(image)))
        .unwrap_or_else(|| panic!("no service runs {image}"))
}

/// Services that run one of our binaries, by program.
fn jobfleet_services<'a>(services: &'a BTreeMap<String, Service>, program: &str) -> Vec<&'a Service> {
    let default = image_default_program();
    services
        .values()
        .filter(|s| s.build.is_some() && s.program(&default) == program)
        .collect()
}

fn fleet() -> Config {
    Config::from_toml(&read("compose/fleet.toml")).unwrap_or_else(|e| panic!("compose/fleet.toml: {e}"))
}

/// `host:port` targets Prometheus scrapes per job: static targets and DNS names with their port.
fn scrape_targets() -> BTreeMap<String, BTreeSet<String>> {
    let prometheus = yaml("compose/prometheus.yml");
    let mut jobs = BTreeMap::new();
    for job in prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        let name = text(&job["job_name"]).expect("a job_name");
        let path = text(&job["metrics_path"]).unwrap_or_else(|| "/metrics".into());
        assert_eq!(path, "/metrics", "job {name}: both binaries serve /metrics");
        let mut targets = BTreeSet::new();
        for config in job["static_configs"].as_sequence().into_iter().flatten() {
            targets.extend(
                config["targets"]
                    .as_sequence()
                    .expect("targets")
                    .iter()
                    .map(|t| text(t).expect("a target")),
            );
        }
        for config in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            let port = text(&config["port"]).expect("dns_sd_configs need a port for A records");
            targets.extend(
                config["names"]
                    .as_sequence()
                    .expect("names")
                    .iter()
                    .map(|n| format!("{}:{port}", text(n).expect("a name"))),
            );
        }
        assert!(jobs.insert(name.clone(), targets).is_none(), "job {name} twice");
    }
    jobs
}

fn address(service: &Service, name: &str) -> SocketAddr {
    let value = service
        .environment
        .get(name)
        .unwrap_or_else(|| panic!("{}: {name} is not set", service.name));
    let address: SocketAddr = value
        .parse()
        .unwrap_or_else(|_| panic!("{}: {name}={value} is not IP:PORT", service.name));
    assert!(
        address.ip().is_unspecified(),
        "{}: {name}={value} must bind every interface, or no other container reaches it",
        service.name
    );
    address
}

#[test]
fn every_setting_passed_is_one_the_binaries_read() {
    let known = [
        env::CONFIG,
        env::NAMESPACE,
        env::AMQP_URL,
        env::REDIS_URL,
        env::LISTEN,
        env::GROUPS,
        env::CONCURRENCY,
        env::METRICS_LISTEN,
    ];
    let services = services();
    let mut used = BTreeSet::new();
    for service in services.values() {
        for name in service.environment.keys().filter(|n| n.starts_with("JOBFLEET_")) {
            assert!(
                known.contains(&name.as_str()),
                "{}: {name} is not a setting of SPEC §5 (known: {known:?})",
                service.name
            );
            used.insert(name.as_str());
        }
        if let Some(value) = service.environment.get(env::CONCURRENCY) {
            assert!(
                value.parse::<usize>().is_ok_and(|n| n > 0),
                "{}: {}={value}",
                service.name,
                env::CONCURRENCY
            );
        }
        // The broker and Redis named in the URLs are services of the stack.
        for (name, image) in [(env::AMQP_URL, "rabbitmq"), (env::REDIS_URL, "redis")] {
            let Some(url) = service.environment.get(name) else {
                continue;
            };
            let host = url
                .split_once("://")
                .and_then(|(_, rest)| rest.rsplit_once('@').map_or(Some(rest), |(_, h)| Some(h)))
                .and_then(|h| h.split([':', '/']).next())
                .unwrap_or_default();
            let target = services
                .get(host)
                .unwrap_or_else(|| panic!("{}: {name}={url} names no service", service.name));
            assert!(
                target.image.as_deref().is_some_and(|i| i.starts_with(image)),
                "{}: {name} points at {host}, not a {image} image",
                service.name
            );
        }
    }
    for name in [
        env::CONFIG,
        env::AMQP_URL,
        env::REDIS_URL,
        env::LISTEN,
        env::GROUPS,
        env::METRICS_LISTEN,
    ] {
        assert!(used.contains(name), "{name} is set by no service");
    }
}

#[test]
fn the_master_listens_where_it_is_published_and_scraped() {
    let services = services();
    let masters = jobfleet_services(&services, "jobfleet-master");
    assert_eq!(masters.len(), 1, "one master service");
    let master = masters[0];
    let port = address(master, env::LISTEN).port();
    assert!(
        master.ports.iter().any(|(_, container)| *container == port),
        "{}: {}={} but ports {:?} do not publish {port}",
        master.name,
        env::LISTEN,
        master.environment[env::LISTEN],
        master.ports
    );
    let target = format!("{}:{port}", master.name);
    assert!(
        scrape_targets().values().any(|t| t.contains(&target)),
        "prometheus.yml does not scrape {target}"
    );
}

#[test]
fn every_worker_is_scraped_on_its_metrics_port_and_every_group_has_a_worker() {
    let services = services();
    let workers = jobfleet_services(&services, "jobfleet-worker");
    assert!(workers.len() >= 2, "workers for two groups");
    let targets = scrape_targets();
    let fleet = fleet();
    let mut served = BTreeSet::new();
    for worker in &workers {
        let port = address(worker, env::METRICS_LISTEN).port();
        let target = format!("{}:{port}", worker.name);
        assert!(
            targets.values().any(|t| t.contains(&target)),
            "prometheus.yml does not scrape {target} ({}={})",
            env::METRICS_LISTEN,
            worker.environment[env::METRICS_LISTEN]
        );
        let groups = worker
            .environment
            .get(env::GROUPS)
            .unwrap_or_else(|| panic!("{}: {} is not set", worker.name, env::GROUPS));
        for group in groups.split(',').map(str::trim) {
            assert!(
                fleet.group(group).is_some(),
                "{}: group {group} is not in compose/fleet.toml",
                worker.name
            );
            served.insert(group.to_string());
        }
    }
    let declared: BTreeSet<String> = fleet.groups.keys().cloned().collect();
    assert_eq!(
        served, declared,
        "every group of compose/fleet.toml needs a worker service"
    );
    // Nothing but our binaries is scraped, so no target is left over either.
    let mut expected: BTreeSet<String> = workers
        .iter()
        .map(|w| format!("{}:{}", w.name, address(w, env::METRICS_LISTEN).port()))
        .collect();
    expected.extend(
        jobfleet_services(&services, "jobfleet-master")
            .iter()
            .map(|m| format!("{}:{}", m.name, address(m, env::LISTEN).port())),
    );
    let scraped: BTreeSet<String> = targets.values().flatten().cloned().collect();
    assert_eq!(scraped, expected, "scrape targets");
}

#[test]
fn the_config_file_mounted_is_the_one_named_and_it_parses() {
    let services = services();
    let generated = Generated::run(&[]);
    // compose/init writes compose/fleet.toml plus [auth] there; master and workers mount it.
    let fleet_file = generated.dir.join("secrets/fleet.toml");
    let fleet = fleet();
    let mounted_fleet = generated.fleet();
    assert_eq!(
        mounted_fleet.groups.keys().collect::<Vec<_>>(),
        fleet.groups.keys().collect::<Vec<_>>(),
        "the generated fleet file serves the groups of compose/fleet.toml"
    );
    let mut runners = jobfleet_services(&services, "jobfleet-master");
    runners.extend(jobfleet_services(&services, "jobfleet-worker"));
    for service in runners {
        let path = service
            .environment
            .get(env::CONFIG)
            .unwrap_or_else(|| panic!("{}: {} is not set", service.name, env::CONFIG));
        let mounted = service
            .mounted(path)
            .unwrap_or_else(|| panic!("{}: nothing is mounted at {}={path}", service.name, env::CONFIG));
        assert_eq!(
            generated.locate(&mounted),
            fleet_file,
            "{}: {path} is not the fleet file compose/init writes (compose/secrets/fleet.toml)",
            service.name
        );
        // The files a process function runs must be there in each worker of its group.
        let Some(groups) = service.environment.get(env::GROUPS) else {
            continue;
        };
        for group in groups.split(',').map(str::trim) {
            for (name, function) in fleet.group(group).map(|g| &g.functions).into_iter().flatten() {
                if function.sandbox != SandboxKind::Process {
                    continue;
                }
                for arg in function.command.iter().filter(|a| a.starts_with('/')) {
                    if arg == "/usr/bin/python3" {
                        assert!(
                            read("compose/Dockerfile").contains("python3"),
                            "{group}.{name} runs python3: install it in the image"
                        );
                        continue;
                    }
                    let host = service.host_path(arg).unwrap_or_else(|| {
                        panic!(
                            "{}: {group}.{name} runs {arg}, which no volume provides",
                            service.name
                        )
                    });
                    assert!(
                        host.exists(),
                        "{}: {group}.{name} runs {arg}, but {} does not exist",
                        service.name,
                        host.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_image_builds_the_binaries_the_services_run() {
    let installed = image_binaries();
    let workspace = workspace_binaries();
    // The image ships the fleet's programs (not development tools such as the benchmark):
    // each one must be a workspace binary, and the servers and the CLI must be there.
    for binary in ["jobfleet-master", "jobfleet-worker", "jobfleet"] {
        assert!(
            workspace.contains(binary),
            "{binary} is not a binary of the workspace: {workspace:?}"
        );
        assert!(
            installed.contains(binary),
            "the image does not install {binary}: {installed:?}"
        );
    }
    for binary in &installed {
        assert!(
            workspace.contains(binary),
            "the image installs {binary}, which the workspace does not build: {workspace:?}"
        );
    }
    let default = image_default_program();
    assert!(
        installed.contains(&default),
        "the image's CMD {default} is not installed"
    );
    let services = services();
    for service in services.values().filter(|s| s.build.is_some()) {
        let (context, dockerfile) = service.build.as_ref().expect("a build");
        let context = repo()
            .join("compose")
            .join(context)
            .canonicalize()
            .expect("build context");
        assert_eq!(
            context,
            repo().canonicalize().expect("repo"),
            "{}: the build context is the repository root",
            service.name
        );
        assert!(
            context.join(dockerfile).canonicalize().ok()
                == repo().join("compose/Dockerfile").canonicalize().ok(),
            "{}: dockerfile {dockerfile}",
            service.name
        );
        let program = service.program(&default);
        assert!(
            installed.contains(program),
            "{} runs {program}, which the image does not install ({installed:?})",
            service.name
        );
    }
    let images: BTreeSet<_> = services
        .values()
        .filter(|s| s.build.is_some())
        .map(|s| s.image.clone())
        .collect();
    assert_eq!(
        images.len(),
        1,
        "the jobfleet services share one image tag: {images:?}"
    );
    // The build context is the repository root: keep target/ (gigabytes) out of it.
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim().trim_matches('/') == "target"),
        ".dockerignore must exclude target/"
    );
}

#[test]
fn brokers_prometheus_and_grafana_are_wired_as_provisioned() {
    let services = services();
    let rabbitmq = &services["rabbitmq"];
    assert_eq!(rabbitmq.image.as_deref(), Some("rabbitmq:3.10-management"));
    assert!(
        rabbitmq.ports.iter().any(|p| p.1 == 15672),
        "the management UI is published"
    );
    let redis = &services["redis"];
    assert!(
        redis.command.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "redis keeps its append-only file: {:?}",
        redis.command
    );
    let listpack_value = redis
        .command
        .windows(2)
        .find(|w| w[0] == "--hash-max-listpack-value")
        .and_then(|w| w[1].parse::<u32>().ok());
    assert!(
        listpack_value >= Some(512),
        "job records stay compact listpacks (operations.md): {:?}",
        redis.command
    );

    // Prometheus reads the prometheus.yml of this directory.
    let prometheus = service_of_image(&services, "prom/prometheus");
    let config = prometheus
        .command
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("--config.file");
    let mounted = prometheus
        .mounted(config)
        .unwrap_or_else(|| panic!("nothing mounted at {config}"));
    assert_eq!(
        mounted.canonicalize().ok(),
        repo().join("compose/prometheus.yml").canonicalize().ok()
    );
    assert!(prometheus.ports.iter().any(|p| p.1 == 9090));

    // Grafana: the provisioning directory, the datasource pointing at that Prometheus with
    // its scrape interval, and the dashboards where the provider looks for them.
    let grafana = service_of_image(&services, "grafana/grafana");
    let provisioning = grafana
        .mounted("/etc/grafana/provisioning")
        .expect("provisioning mounted at /etc/grafana/provisioning");
    assert_eq!(
        provisioning.canonicalize().ok(),
        repo().join("grafana/provisioning").canonicalize().ok()
    );
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let datasource = &datasources["datasources"][0];
    assert_eq!(text(&datasource["uid"]).as_deref(), Some("prometheus"));
    assert_eq!(
        text(&datasource["url"]),
        Some(format!("http://{}:9090", prometheus.name))
    );
    let scrape_interval = text(&yaml("compose/prometheus.yml")["global"]["scrape_interval"]);
    assert_eq!(
        text(&datasource["jsonData"]["timeInterval"]),
        scrape_interval,
        "the datasource's timeInterval follows the scrape interval"
    );
    let providers = yaml("grafana/provisioning/dashboards/jobfleet.yml");
    let path = text(&providers["providers"][0]["options"]["path"]).expect("the provider's path");
    let dashboards = grafana
        .mounted(&path)
        .unwrap_or_else(|| panic!("the dashboards are not mounted at the provider's path {path}"));
    assert_eq!(
        dashboards.canonicalize().ok(),
        repo().join("grafana/dashboards").canonicalize().ok()
    );
    if let Some(home) = grafana
        .environment
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    {
        let host = grafana.host_path(home).expect("the home dashboard is in a mount");
        assert!(
            host.exists(),
            "home dashboard {home}: {} does not exist",
            host.display()
        );
    }
}

#[test]
fn prometheus_accepts_its_config() {
    let output = std::process::Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(repo().join("compose/prometheus.yml"))
        .output()
        .expect("run promtool (Debian's `prometheus` package; scripts/services installs it)");
    assert!(
        output.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// --- credentials: compose/init and the ${...} of the compose file -------------------------

/// A `${NAME...}` or `$NAME` of the compose file: the variable, what follows its name inside
/// the braces (`:?message`, `:-default`, or nothing) and where it stands in the text.
#[derive(Debug)]
struct Reference {
    name: String,
    modifier: String,
    span: std::ops::Range<usize>,
}

impl Reference {
    /// `${NAME:?message}`: compose stops when the variable is unset or empty.
    fn is_required(&self) -> bool {
        self.modifier.starts_with(":?")
    }
}

/// The references of `text` in compose's syntax (`$$` is a literal dollar).
fn references(text: &str) -> Vec<Reference> {
    let name_length = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find('$') {
        let start = at + offset;
        let rest = &text[start + 1..];
        if rest.starts_with('$') {
            at = start + 2;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let close = inner
                .find('}')
                .unwrap_or_else(|| panic!("an unclosed ${{ at {start}"));
            let body = &inner[..close];
            let length = name_length(body);
            let end = start + 2 + close + 1;
            found.push(Reference {
                name: body[..length].to_string(),
                modifier: body[length..].to_string(),
                span: start..end,
            });
            at = end;
        } else {
            let length = name_length(rest);
            if length > 0 {
                found.push(Reference {
                    name: rest[..length].to_string(),
                    modifier: String::new(),
                    span: start..start + 1 + length,
                });
            }
            at = start + 1 + length;
        }
    }
    found
}

/// `text` with each reference replaced by what `replace` returns for it.
fn substitute(text: &str, mut replace: impl FnMut(&Reference) -> String) -> String {
    let mut out = String::new();
    let mut at = 0;
    for reference in references(text) {
        out.push_str(&text[at..reference.span.start].replace("$$", "$"));
        out.push_str(&replace(&reference));
        at = reference.span.end;
    }
    out.push_str(&text[at..].replace("$$", "$"));
    out
}

/// `text` as compose interpolates it with `variables` (the `.env` file).
fn interpolate(text: &str, variables: &BTreeMap<String, String>) -> String {
    substitute(text, |r| match variables.get(&r.name).filter(|v| !v.is_empty()) {
        Some(value) => value.clone(),
        None => match r.modifier.strip_prefix(":-").or(r.modifier.strip_prefix('-')) {
            Some(default) => default.to_string(),
            None => panic!("${{{}}} is not set (modifier {:?})", r.name, r.modifier),
        },
    })
}

/// Calls `visit` with every string value of a YAML document: what compose interpolates
/// (comments are not part of it).
fn for_each_string(value: &mut Yaml, visit: &mut impl FnMut(&mut String)) {
    match value {
        Yaml::String(s) => visit(s),
        Yaml::Sequence(items) => items.iter_mut().for_each(|i| for_each_string(i, visit)),
        Yaml::Mapping(map) => map.values_mut().for_each(|v| for_each_string(v, visit)),
        Yaml::Tagged(tagged) => for_each_string(&mut tagged.value, visit),
        _ => {}
    }
}

/// The marker [`masked`] puts where a reference stood.
const FROM_ENV: &str = "\u{1}";

/// `text` with every reference replaced by [`FROM_ENV`]: what is left is literal.
fn masked(text: &str) -> String {
    substitute(text, |_| FROM_ENV.to_string())
}

/// Whether a value is exactly one required reference: a credential compose takes from `.env`.
fn from_env_only(value: &str) -> bool {
    let references = references(value);
    references.len() == 1 && references[0].is_required() && masked(value) == FROM_ENV
}

/// Environment variables whose name says they hold a credential.
fn is_credential_name(name: &str) -> bool {
    [
        "_USER",
        "_PASS",
        "_PASSWORD",
        "_TOKEN",
        "_SECRET",
        "_AUTH",
        "_KEY",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
}

/// Command-line flags followed by a password (redis-server, redis-cli, rabbitmqadmin, curl).
const PASSWORD_FLAGS: [&str; 7] = [
    "--requirepass",
    "--masterauth",
    "-a",
    "--pass",
    "--password",
    "-u",
    "--user",
];

/// A URL's user information, `user:password` (`None` without one), with references masked.
fn userinfo(url: &str) -> Option<String> {
    let masked = masked(url);
    let (_, rest) = masked.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(info, _)| info.to_string())
}

/// What `compose/init` made in a temp directory of its own (`--out`): `.env`, `secrets/`,
/// and what it printed. Removed when dropped.
struct Generated {
    dir: PathBuf,
    printed: String,
}

impl Generated {
    /// Runs `compose/init --out <new temp dir> <args>`.
    fn run(args: &[&str]) -> Generated {
        let dir = std::env::temp_dir().join(format!(
            "jobfleet-compose-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let mut generated = Generated {
            dir,
            printed: String::new(),
        };
        generated.printed = generated.rerun(args);
        generated
    }

    /// Runs `compose/init` again on the same directory; returns what it printed.
    fn rerun(&self, args: &[&str]) -> String {
        let output = init_command()
            .arg("--out")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run compose/init");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "compose/init failed: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        printed
    }

    /// The variables of the generated `.env`.
    fn variables(&self) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join(".env")).expect("compose/init writes .env");
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.split_once('=').unwrap_or_else(|| panic!(".env: {l:?}"));
                (name.to_string(), value.to_string())
            })
            .collect()
    }

    /// The generated fleet file, parsed as the binaries parse it.
    fn fleet(&self) -> Config {
        let path = self.dir.join("secrets/fleet.toml");
        let text = std::fs::read_to_string(&path).expect("compose/init writes secrets/fleet.toml");
        Config::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The tokens the generated fleet file accepts.
    fn tokens(&self) -> TokenTable {
        let auth = self
            .fleet()
            .auth
            .expect("the generated fleet file has an [auth] table");
        TokenTable::new(&auth).expect("valid [auth] table")
    }

    /// The compose services with `${...}` interpolated from the generated `.env`.
    fn services(&self) -> BTreeMap<String, Service> {
        let mut compose = yaml("compose/docker-compose.yml");
        let variables = self.variables();
        for_each_string(&mut compose, &mut |s| *s = interpolate(s, &variables));
        services_of(&compose)
    }

    /// Where a path under compose/ is for this run: what compose/init generates (`.env`,
    /// `secrets/`) in this directory, the rest in the repository.
    fn locate(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(repo().join("compose")) {
            Ok(rest) if rest.starts_with("secrets") || rest == Path::new(".env") => self.dir.join(rest),
            _ => path.to_path_buf(),
        }
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn init_command() -> Command {
    Command::new(repo().join("compose/init"))
}

/// The admin token compose/init printed (it prints it once, when it mints it).
fn printed_token(printed: &str) -> Option<String> {
    printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(TOKEN_PREFIX) && !l.contains(' '))
        .map(String::from)
}

/// A token as `jobfleet token new` mints it: the prefix and 256 bits in hex.
fn is_minted_token(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn compose_init_makes_a_fleet_file_whose_tokens_the_binaries_accept() {
    let generated = Generated::run(&[]);
    let fleet = generated.fleet();
    let auth = fleet.auth.as_ref().expect("[auth]");
    assert!(
        !auth.disabled && !auth.open_metrics,
        "auth on, /metrics behind read"
    );
    let tokens = generated.tokens();

    let admin = printed_token(&generated.printed)
        .unwrap_or_else(|| panic!("compose/init prints the admin token: {}", generated.printed));
    assert!(is_minted_token(&admin), "{admin}");
    assert!(
        generated.printed.contains("JOBFLEET_TOKEN"),
        "says how to use it: {}",
        generated.printed
    );
    let principal = tokens
        .authenticate(&admin)
        .expect("the admin token authenticates");
    assert_eq!(principal.role, Role::Admin);
    let prometheus =
        std::fs::read_to_string(generated.dir.join("secrets/prometheus.token")).expect("read token");
    assert!(is_minted_token(&prometheus), "{prometheus:?}");
    assert_eq!(tokens.authenticate(&prometheus).map(|p| p.role), Some(Role::Read));
    let fleet_text = std::fs::read_to_string(generated.dir.join("secrets/fleet.toml")).expect("fleet");
    for token in [&admin, &prometheus] {
        assert!(
            !fleet_text.contains(token.as_str()),
            "the fleet file holds hashes only"
        );
    }

    // Random credentials, private to the user who ran it.
    let variables = generated.variables();
    for name in [
        "RABBITMQ_DEFAULT_USER",
        "RABBITMQ_DEFAULT_PASS",
        "REDIS_PASSWORD",
        "GRAFANA_ADMIN_USER",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        let value = variables.get(name).unwrap_or_else(|| panic!(".env lacks {name}"));
        assert!(
            !value.is_empty() && !["guest", "admin"].contains(&value.as_str()),
            "{name}={value}"
        );
        if !name.ends_with("_USER") {
            assert!(value.len() >= 32, "{name} is {} characters", value.len());
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(generated.dir.join(p))
            .expect(p)
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(".env"), 0o600, ".env");
    assert_eq!(mode("secrets"), 0o700, "secrets/");

    // Idempotent: a second run keeps every secret and prints no token.
    let again = generated.rerun(&[]);
    assert_eq!(printed_token(&again), None, "{again}");
    assert_eq!(generated.variables(), variables);
    let kept = generated.tokens();
    assert_eq!(kept.authenticate(&admin).map(|p| p.role), Some(Role::Admin));
    assert_eq!(kept.authenticate(&prometheus).map(|p| p.role), Some(Role::Read));

    // --force makes them all anew.
    let forced = generated.rerun(&["--force"]);
    let new_admin = printed_token(&forced).expect("a new admin token");
    let renewed = generated.tokens();
    assert!(
        renewed.authenticate(&admin).is_none(),
        "the old admin token is gone"
    );
    assert_eq!(
        renewed.authenticate(&new_admin).map(|p| p.role),
        Some(Role::Admin)
    );
    assert!(
        renewed.authenticate(&prometheus).is_none(),
        "a new Prometheus token"
    );
    let new_variables = generated.variables();
    for name in [
        "RABBITMQ_DEFAULT_PASS",
        "REDIS_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ] {
        assert_ne!(new_variables[name], variables[name], "{name} after --force");
    }

    // A wrong argument: a usage line and exit 64, nothing written.
    let output = init_command().arg("--bogus").output().expect("run compose/init");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: compose/init"));
}

#[test]
fn no_credential_in_the_compose_file_is_a_literal() {
    let generated = Generated::run(&[]);
    let variables = generated.variables();
    let mut compose = yaml("compose/docker-compose.yml");
    let mut referenced = Vec::new();
    for_each_string(&mut compose, &mut |s| referenced.extend(references(s)));
    assert!(
        !referenced.is_empty(),
        "the compose file takes no credential from .env"
    );
    for reference in &referenced {
        assert!(
            reference.is_required(),
            "${{{}{}}}: write ${{{}:?run compose/init first}}, so a missing .env stops compose",
            reference.name,
            reference.modifier,
            reference.name
        );
        assert!(
            variables.get(&reference.name).is_some_and(|v| !v.is_empty()),
            "${{{}}}: compose/init does not define it in .env",
            reference.name
        );
    }

    for service in services().values() {
        let name = &service.name;
        for (variable, value) in &service.environment {
            if is_credential_name(variable) {
                assert!(
                    from_env_only(value),
                    "{name}: {variable}={value} is not a ${{...}} from .env"
                );
            }
            if !value.contains("://") {
                continue;
            }
            let needs_password = variable == env::AMQP_URL || variable == env::REDIS_URL;
            match userinfo(value) {
                Some(info) => {
                    let (user, password) = info.split_once(':').unwrap_or((&info, ""));
                    assert!(
                        (user.is_empty() || user == FROM_ENV) && password == FROM_ENV,
                        "{name}: {variable}={value}: user and password must come from .env"
                    );
                }
                None => assert!(!needs_password, "{name}: {variable}={value} carries no password"),
            }
        }
        let shell_words: Vec<String> = service
            .healthcheck
            .iter()
            .flat_map(|w| w.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect();
        for words in [&service.command, &shell_words] {
            for pair in words.windows(2) {
                if PASSWORD_FLAGS.contains(&pair[0].as_str()) {
                    assert!(
                        from_env_only(&pair[1]),
                        "{name}: {} {} is a literal password",
                        pair[0],
                        pair[1]
                    );
                }
            }
        }
    }
    let redis = &services()["redis"];
    assert!(
        redis
            .command
            .windows(2)
            .any(|w| w[0] == "--requirepass" && from_env_only(&w[1])),
        "redis-server needs --requirepass ${{REDIS_PASSWORD:?...}}: {:?}",
        redis.command
    );
    let used: BTreeSet<&str> = referenced.iter().map(|r| r.name.as_str()).collect();
    for name in variables.keys() {
        assert!(
            used.contains(name.as_str()),
            ".env defines {name}, which compose never uses"
        );
    }
}

#[test]
fn neither_guest_nor_admin_admin_appears_in_compose_or_its_docs() {
    let mut files: Vec<PathBuf> = vec![repo().join("docs/observability.md")];
    let mut directories = vec![repo().join("compose")];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(&directory).expect("compose/").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            // What compose/init generated in a checkout is random, and not part of the stack.
            if name == ".env" || name == "secrets" {
                continue;
            }
            if path.is_dir() {
                directories.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_lowercase();
        let squeezed: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && !['`', '"', '\''].contains(c))
            .collect();
        assert!(!text.contains("guest"), "{} mentions guest", path.display());
        for pair in ["admin/admin", "admin:admin"] {
            assert!(!squeezed.contains(pair), "{} has {pair}", path.display());
        }
    }
}

#[test]
fn prometheus_scrapes_the_master_with_the_read_token_compose_init_made() {
    let generated = Generated::run(&[]);
    let config = yaml("compose/prometheus.yml");
    let master_job = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|job| text(&job["job_name"]).as_deref() == Some("jobfleet-master"))
        .expect("a jobfleet-master job");
    let authorization = &master_job["authorization"];
    assert_eq!(
        text(&authorization["type"]).unwrap_or_else(|| "Bearer".into()),
        "Bearer",
        "the master's /metrics takes a Bearer token: {master_job:?}"
    );
    let file = text(&authorization["credentials_file"])
        .unwrap_or_else(|| panic!("the master job sends no token from a file: {master_job:?}"));
    let services = services();
    let prometheus = service_of_image(&services, "prom/prometheus");
    let mounted = prometheus
        .mounted(&file)
        .unwrap_or_else(|| panic!("prometheus: nothing is mounted at {file}"));
    let host = generated.locate(&mounted);
    let token = std::fs::read_to_string(&host).unwrap_or_else(|e| {
        panic!(
            "{file} comes from {}, which compose/init does not write: {e}",
            host.display()
        )
    });
    let principal = generated.tokens().authenticate(token.trim()).map(|p| p.role);
    assert_eq!(principal, Some(Role::Read), "Prometheus needs read, and no more");

    // A worker's /metrics has no authentication: it stays on the stack's network.
    for worker in jobfleet_services(&services, "jobfleet-worker") {
        assert!(
            worker.ports.is_empty(),
            "{}: publishes {:?}, but a worker's /metrics is open to whoever reaches it",
            worker.name,
            worker.ports
        );
    }
}

// --- the services, run as compose would run them ---------------------------------------

/// Processes a test started; killed when dropped, even after a panic.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Processes {
    fn start(&mut self, command: &mut Command) -> &mut Child {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        self.0.push(child);
        self.0.last_mut().expect("just pushed")
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command running `program` with a service's environment, as its container would, on
/// top of the test's own (but its `JOBFLEET_*` settings).
fn service_command(program: impl AsRef<std::ffi::OsStr>, environment: &BTreeMap<String, String>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("JOBFLEET_")) {
        command.env_remove(name);
    }
    command.envs(environment);
    command
}

/// Runs a healthcheck `test` (`CMD` or `CMD-SHELL`) with `environment`; true when it passes.
fn healthy(test: &[String], environment: &BTreeMap<String, String>) -> bool {
    let mut command = match test.split_first() {
        Some((kind, shell)) if kind == "CMD-SHELL" => {
            let mut command = service_command("sh", environment);
            command.arg("-c").arg(shell.join(" "));
            command
        }
        Some((kind, argv)) if kind == "CMD" => {
            let mut command = service_command(&argv[0], environment);
            command.args(&argv[1..]);
            command
        }
        _ => panic!("healthcheck {test:?}"),
    };
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the healthcheck")
        .success()
}

/// The first `program` on PATH.
fn on_path(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// A URL of the stack with `host:port` of a service replaced by a local server's.
fn rewired(url: &str, service_address: &str, port: u16) -> String {
    assert!(
        url.contains(&format!("@{service_address}/")),
        "{url} does not point at {service_address}"
    );
    url.replace(&format!("@{service_address}/"), &format!("@127.0.0.1:{port}/"))
}

/// `IP:PORT` of a listen setting with the port replaced by a free one.
fn free_listen(listen: &str) -> (String, u16) {
    let address: SocketAddr = listen.parse().unwrap_or_else(|_| panic!("{listen}"));
    let port = free_port();
    (SocketAddr::new(address.ip(), port).to_string(), port)
}

async fn wait_ready(child: &mut Child, url: &str, what: &str) {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        let request = client.get(url).send();
        async move { request.await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
    })
    .await;
}

#[tokio::test]
async fn the_stack_runs_on_the_credentials_compose_init_made() {
    let generated = Generated::run(&[]);
    let admin = printed_token(&generated.printed).expect("the admin token");
    let services = generated.services();
    let scratch = generated.dir.join("run");
    std::fs::create_dir_all(scratch.join("bin")).expect("scratch dir");
    let mut processes = Processes::default();

    // Redis as the redis service starts it, on a port of its own.
    let redis = &services["redis"];
    let redis_port = free_port();
    processes.start(
        service_command(&redis.command[0], &redis.environment)
            .args(&redis.command[1..])
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&scratch),
    );
    wait_for_port(redis_port, Duration::from_secs(20));
    // Its healthcheck, with redis-cli pointed at that port: healthy with the service's
    // environment, unhealthy without the password.
    let shim = scratch.join("bin/redis-cli");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {} -p {redis_port} \"$@\"\n",
            on_path("redis-cli").display()
        ),
    )
    .expect("redis-cli shim");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        scratch.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut check_environment = redis.environment.clone();
    check_environment.insert("PATH".into(), path);
    assert!(
        healthy(&redis.healthcheck, &check_environment),
        "redis healthcheck {:?} fails with the password",
        redis.healthcheck
    );
    check_environment.retain(|name, _| name == "PATH");
    assert!(
        !healthy(&redis.healthcheck, &check_environment),
        "redis answers without the password (or the healthcheck passes on NOAUTH)"
    );

    // RabbitMQ with the rabbitmq service's environment: its user, and no guest.
    let rabbitmq = &services["rabbitmq"];
    let rabbit = PrivateRabbit::start_with_environment(
        rabbitmq
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let guest = jobfleet_common::lapin::Connection::connect(
        &rabbit.url(),
        jobfleet_common::lapin::ConnectionProperties::default(),
    )
    .await;
    assert!(guest.is_err(), "guest logs in to the stack's RabbitMQ");

    // The master and a worker with their services' environment and the generated fleet file.
    let rewire = |service: &Service| {
        let mut environment = service.environment.clone();
        let amqp = rewired(&environment[env::AMQP_URL], "rabbitmq:5672", rabbit.port());
        let redis_url = rewired(&environment[env::REDIS_URL], "redis:6379", redis_port);
        environment.insert(env::AMQP_URL.into(), amqp);
        environment.insert(env::REDIS_URL.into(), redis_url);
        let config = service
            .mounted(&environment[env::CONFIG])
            .expect("the fleet file is mounted");
        environment.insert(
            env::CONFIG.into(),
            generated.locate(&config).display().to_string(),
        );
        environment.insert("RUST_LOG".into(), "warn".into());
        environment
    };
    let master = jobfleet_services(&services, "jobfleet-master")[0];
    let mut master_environment = rewire(master);
    let (listen, master_port) = free_listen(&master_environment[env::LISTEN]);
    master_environment.insert(env::LISTEN.into(), listen);
    let api = format!("http://127.0.0.1:{master_port}");
    let worker = &services["worker-etl"];
    let mut worker_environment = rewire(worker);
    let (metrics_listen, metrics_port) = free_listen(&worker_environment[env::METRICS_LISTEN]);
    worker_environment.insert(env::METRICS_LISTEN.into(), metrics_listen);

    let master_process = processes.start(&mut service_command(
        binary("jobfleet-master"),
        &master_environment,
    ));
    wait_ready(master_process, &format!("{api}/readyz"), "the master").await;
    let worker_process = processes.start(&mut service_command(
        binary("jobfleet-worker"),
        &worker_environment,
    ));
    let worker_metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_ready(worker_process, &worker_metrics, "the etl worker").await;

    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{api}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            request
                .send()
                .await
                .expect("the master answers")
                .status()
                .as_u16()
        }
    };
    assert_eq!(get("/v1/groups", None).await, 401, "no token, no API");
    let prometheus = std::fs::read_to_string(generated.dir.join("secrets/prometheus.token")).expect("token");
    assert_eq!(get("/metrics", None).await, 401);
    assert_eq!(
        get("/metrics", Some(&prometheus)).await,
        200,
        "Prometheus's scrape"
    );
    assert_eq!(get("/v1/audit", Some(&prometheus)).await, 403, "read only");
    assert_eq!(get("/v1/audit", Some(&admin)).await, 200, "the operator");

    let response = client
        .post(format!("{api}/v1/jobs?wait=20"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"group": "etl", "function": "echo", "args": {"n": 1}}))
        .send()
        .await
        .expect("submit");
    let record: serde_json::Value = response.json().await.expect("a job record");
    assert_eq!(
        (&record["status"], &record["result"]),
        (&serde_json::json!("finished"), &serde_json::json!({"n": 1})),
        "{record}"
    );

    // A worker's /metrics is open (docs/security.md, compose/prometheus.yml).
    let status = client
        .get(&worker_metrics)
        .send()
        .await
        .expect("worker metrics")
        .status();
    assert_eq!(status.as_u16(), 200);
}
