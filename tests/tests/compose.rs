//! The docker-compose stack (compose/) checked against what it runs, since Docker cannot
//! start it in CI: the settings it passes are the binaries' (SPEC §5), the addresses it
//! binds are the ones Prometheus scrapes and the ports it publishes, the config file it
//! mounts is the one it names and parses, every group has a worker, the image builds the
//! binaries the services run, and Grafana gets the provisioning the dashboards expect.

use jobfleet_common::config::{env, Config, SandboxKind};
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
        Service {
            name: name.to_string(),
            image: text(&value["image"]),
            build,
            command,
            environment,
            volumes,
            ports,
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

fn services() -> BTreeMap<String, Service> {
    let compose = yaml("compose/docker-compose.yml");
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
    let fleet_file = repo()
        .join("compose/fleet.toml")
        .canonicalize()
        .expect("compose/fleet.toml");
    let fleet = fleet();
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
            mounted.canonicalize().ok().as_ref(),
            Some(&fleet_file),
            "{}: {path} is not compose/fleet.toml",
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

    // Prometheus reads the prometheus.yml of this directory.
    let prometheus = services
        .values()
        .find(|s| {
            s.image
                .as_deref()
                .is_some_and(|i| i.starts_with("prom/prometheus"))
        })
        .expect("a prometheus service");
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
    let grafana = services
        .values()
        .find(|s| {
            s.image
                .as_deref()
                .is_some_and(|i| i.starts_with("grafana/grafana"))
        })
        .expect("a grafana service");
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
