//! The Grafana dashboards (grafana/dashboards/) against a real Prometheus (Debian's
//! `prometheus` package, run here on a free port with a temporary config and storage) that
//! scrapes a real master and two workers while jobs flow: every panel query and every
//! template variable query returns data, with the variables at "All" and at a real group
//! and function; the metrics and labels they use are ones the binaries export; and both
//! `/metrics` endpoints pass `promtool check metrics`.

use jobfleet_tests::{eventually, TestEnv};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `etl` breaks after two crashes, so the broken-group panels and a 503 have data.
const FLEET: &str = r#"
[groups.etl]
max_failures = 2
[groups.etl.functions.echo]
[groups.etl.functions.fail]
[groups.etl.functions.crash]
[groups.reports]
max_running = 1
[groups.reports.functions.echo]
[groups.reports.functions.wordcount]
"#;

/// The datasource uid of grafana/provisioning/datasources/prometheus.yml.
const DATASOURCE_UID: &str = "prometheus";

/// Metric families that may rightly read 0 in this run (nothing is queued, running or
/// redelivered when the queries run); every other family the dashboards use must show a
/// positive value in at least one query.
const MAY_STAY_ZERO: [&str; 4] = [
    "jobfleet_queue_depth",
    "jobfleet_jobs_running",
    "jobfleet_group_running",
    "jobfleet_redeliveries_total",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A Prometheus server of this test, killed and its storage removed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `master` and `workers` every second.
    async fn start(name: &str, master: SocketAddr, workers: &[SocketAddr]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("{name}-prometheus"));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let targets = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: jobfleet-master\n    static_configs:\n      - targets: [{}]\n  - job_name: jobfleet-worker\n    static_configs:\n      - targets: [{}]\n",
            targets(&[master]),
            targets(workers)
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus (Debian's `prometheus` package; scripts/services installs it)");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let client = Client::new();
        let ready = format!("{}/-/ready", prometheus.url);
        eventually(Duration::from_secs(30), || async {
            client
                .get(&ready)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// A GET of the HTTP API; panics on anything but `"status": "success"`.
    async fn api(&self, client: &Client, path: &str, query: &[(&str, &str)]) -> Value {
        let response = client
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("prometheus answers");
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One query of a dashboard: a panel target or a template variable.
#[derive(Debug, Clone)]
struct Query {
    dashboard: String,
    panel: String,
    expr: String,
}

/// A dashboard's template variables (name → `label_values` query) and panel queries.
struct Dashboard {
    variables: BTreeMap<String, String>,
    queries: Vec<Query>,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    let mut uids = BTreeSet::new();
    files
        .iter()
        .map(|file| {
            let name = file.file_name().expect("a name").to_string_lossy().into_owned();
            let json: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("readable"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                json["uid"].as_str().is_some_and(|u| uids.insert(u.to_string())),
                "{name}: a missing or repeated uid"
            );
            let mut variables = BTreeMap::new();
            for variable in json["templating"]["list"].as_array().into_iter().flatten() {
                let variable_name = variable["name"].as_str().expect("a variable name").to_string();
                let query = match &variable["query"] {
                    Value::String(q) => q.clone(),
                    q => q["query"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: variable {variable_name} has no query"))
                        .to_string(),
                };
                check_datasource(&name, &variable_name, &variable["datasource"]);
                variables.insert(variable_name, query);
            }
            let mut queries = Vec::new();
            collect_queries(&name, &json["panels"], &mut queries);
            assert!(!queries.is_empty(), "{name}: no panel queries");
            Dashboard { variables, queries }
        })
        .collect()
}

/// Panel targets, rows' nested panels included.
fn collect_queries(dashboard: &str, panels: &Value, out: &mut Vec<Query>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)").to_string();
        if panel["type"] != "row" {
            check_datasource(dashboard, &title, &panel["datasource"]);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            check_datasource(dashboard, &title, &target["datasource"]);
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{dashboard} / {title}: a target without expr"));
            out.push(Query {
                dashboard: dashboard.to_string(),
                panel: title.clone(),
                expr: expr.to_string(),
            });
        }
        collect_queries(dashboard, &panel["panels"], out);
    }
}

fn check_datasource(dashboard: &str, what: &str, datasource: &Value) {
    assert_eq!(
        datasource["uid"], DATASOURCE_UID,
        "{dashboard} / {what}: datasource {datasource}"
    );
}

/// `$name` and `${name}` replaced by `values`, Grafana's own interval variables by fixed
/// windows; a variable left over is a dashboard bug.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut all: Vec<(String, String)> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.extend(
        [
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__range", "5m"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    // Longest names first, so `$__rate_interval` is not read as `$__r...`.
    all.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut out = expr.to_string();
    for (name, value) in &all {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(
        !out.contains('$'),
        "an unknown variable in {expr:?} (known: {:?})",
        values.keys().collect::<Vec<_>>()
    );
    out
}

/// The metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("jobfleet_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Label names a query groups by (`by (...)`) or matches on (`{...}`).
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for (i, _) in expr.match_indices("by (") {
        let inner = &expr[i + 4..];
        let inner = &inner[..inner.find(')').expect("by (...) closed")];
        labels.extend(
            inner
                .split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    for (i, _) in expr.match_indices('{') {
        let inner = &expr[i + 1..];
        let inner = &inner[..inner.find('}').expect("{...} closed")];
        // Matchers `name op "value"`; values may hold commas, so split on the quotes.
        let mut quoted = false;
        let mut name = String::new();
        for c in inner.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    if quoted && !name.trim().is_empty() {
                        labels.insert(
                            name.trim()
                                .trim_start_matches(',')
                                .trim()
                                .trim_end_matches(['=', '~', '!'])
                                .trim()
                                .to_string(),
                        );
                    }
                    name.clear();
                }
                c if !quoted => name.push(c),
                _ => {}
            }
        }
    }
    labels
}

/// Metric families of a text exposition, with the label names of their samples (a
/// histogram's `_bucket`, `_sum` and `_count` samples count for the histogram).
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families
                .entry(rest.split_whitespace().next().expect("a name").to_string())
                .or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').expect("a value").0;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = family_of(name, &families).unwrap_or(name).to_string();
            let labels = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|p| p.split_once('='))
                .map(|(l, _)| l.to_string());
            families.entry(family).or_default().extend(labels);
        }
    }
    families
}

/// The family a series name belongs to: itself, or the histogram it is a sample of.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, BTreeSet<String>>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix)
            .filter(|base| families.contains_key(*base))
    })
}

/// `promtool check metrics` over an exposition: no errors and no lint problems.
fn promtool_check(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool (Debian's `prometheus` package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics rejects the {what}'s /metrics:\n{}{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `POST /v1/jobs?wait=10`: the status and the answer.
async fn submit(client: &Client, master: &str, body: Value) -> (StatusCode, Value) {
    let response = client
        .post(format!("{master}/v1/jobs?wait=10"))
        .json(&body)
        .send()
        .await
        .expect("submit");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Evaluates `queries` until each returns a non-empty result (and, with `positive`, one
/// with a value above 0), or `timeout` passes; returns those still missing with why.
async fn evaluate(
    prometheus: &Prometheus,
    client: &Client,
    queries: &[(Query, String)],
    positive: bool,
    timeout: Duration,
) -> BTreeMap<usize, String> {
    let deadline = Instant::now() + timeout;
    let mut missing: BTreeMap<usize, String> = (0..queries.len())
        .map(|i| (i, "not evaluated".to_string()))
        .collect();
    loop {
        let pending: Vec<usize> = missing.keys().copied().collect();
        for i in pending {
            let (_, expr) = &queries[i];
            let data = prometheus.api(client, "/api/v1/query", &[("query", expr)]).await;
            let result = &data["result"];
            let values: Vec<f64> = match data["resultType"].as_str() {
                Some("vector") => result
                    .as_array()
                    .expect("a vector")
                    .iter()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect(),
                Some("scalar") => result[1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .into_iter()
                    .collect(),
                other => panic!("{expr}: unexpected result type {other:?}"),
            };
            let found = if positive {
                values.iter().any(|v| v.is_finite() && *v > 0.0)
            } else {
                !values.is_empty()
            };
            if found {
                missing.remove(&i);
            } else {
                missing.insert(i, format!("result {result}"));
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_live_fleet() {
    let dashboards = dashboards();
    let mut env = TestEnv::with_config("dashboards", FLEET);
    let master = env.start_master().await;
    let master_addr: SocketAddr = master
        .trim_start_matches("http://")
        .parse()
        .expect("master address");
    let mut worker_addrs = Vec::new();
    for group in ["etl", "reports"] {
        let worker = env
            .worker()
            .group(group)
            .concurrency(2)
            .metrics_listen("127.0.0.1:0".parse().unwrap())
            .build()
            .expect("worker");
        worker_addrs.push(worker.metrics_addr().expect("a metrics address"));
        env.run_worker(worker).await;
    }
    let prometheus = Prometheus::start(env.namespace(), master_addr, &worker_addrs).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Every target scraped.
    let targets_up = || async {
        let data = prometheus
            .api(&client, "/api/v1/targets", &[("state", "active")])
            .await;
        let targets = data["activeTargets"].as_array().cloned().unwrap_or_default();
        (targets.len() == 3 && targets.iter().all(|t| t["health"] == "up")).then_some(())
    };
    eventually(Duration::from_secs(20), targets_up).await;

    // Traffic: jobs of both groups with every outcome, then crashes that break `etl`.
    for i in 0..4 {
        let (status, job) = submit(
            &client,
            &master,
            json!({"group": "etl", "function": "echo", "args": i}),
        )
        .await;
        assert_eq!(
            (status, job["status"].as_str()),
            (StatusCode::OK, Some("finished")),
            "{job}"
        );
        let (status, job) = submit(
            &client,
            &master,
            json!({"group": "reports", "function": "wordcount", "args": {"text": "a b a"}}),
        )
        .await;
        assert_eq!(
            (status, job["status"].as_str()),
            (StatusCode::OK, Some("finished")),
            "{job}"
        );
    }
    let (_, job) = submit(
        &client,
        &master,
        json!({"group": "reports", "function": "echo", "args": "hi"}),
    )
    .await;
    assert_eq!(job["status"], "finished", "{job}");
    let (_, job) = submit(
        &client,
        &master,
        json!({"group": "etl", "function": "fail", "args": {"message": "no"}}),
    )
    .await;
    assert_eq!(job["error"]["kind"], "function_error", "{job}");
    for _ in 0..2 {
        let (_, job) = submit(&client, &master, json!({"group": "etl", "function": "crash"})).await;
        assert_eq!(job["error"]["kind"], "crashed", "{job}");
    }
    // HTTP errors: 503 (the broken group), 422, 404, 400.
    let (status, body) = submit(&client, &master, json!({"group": "etl", "function": "echo"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = submit(&client, &master, json!({"group": "reports", "function": "nope"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let status = client
        .get(format!("{master}/v1/jobs/no-such-job"))
        .send()
        .await
        .expect("get")
        .status();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let status = client
        .post(format!("{master}/v1/jobs"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Scheduling: a delayed job that waits, and a per-second schedule that fires (its
    // firings pass through the delayed set, so they count as published delayed jobs).
    let delayed = client
        .post(format!("{master}/v1/jobs"))
        .json(&json!({"group": "reports", "function": "echo", "delay_ms": 600_000}))
        .send()
        .await
        .expect("submit a delayed job");
    assert_eq!(delayed.status(), StatusCode::ACCEPTED);
    let schedule =
        json!({"name": "every-second", "cron": "* * * * * *", "group": "reports", "function": "echo"});
    let created = client
        .post(format!("{master}/v1/schedules"))
        .json(&schedule)
        .send()
        .await
        .expect("create a schedule");
    assert_eq!(created.status(), StatusCode::CREATED);
    eventually(Duration::from_secs(20), || async {
        let list: Value = client
            .get(format!("{master}/v1/schedules"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list["schedules"][0]["last_fire"].is_string().then_some(())
    })
    .await;

    // Flow control: `reports` (max_running = 1) paused, so the job submitted now and the
    // schedule's next firings are held back.
    let paused = client
        .post(format!("{master}/v1/groups/reports/pause"))
        .send()
        .await
        .expect("pause");
    assert_eq!(paused.status(), StatusCode::OK);
    let held = client
        .post(format!("{master}/v1/jobs"))
        .json(&json!({"group": "reports", "function": "echo"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(held.status(), StatusCode::ACCEPTED);
    eventually(Duration::from_secs(20), || async {
        let group: Value = client
            .get(format!("{master}/v1/groups/reports"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (group["held"].as_u64()? > 0).then_some(())
    })
    .await;

    // The metrics the binaries export, as text Prometheus and promtool accept.
    let master_text = client
        .get(format!("{master}/metrics"))
        .send()
        .await
        .expect("master metrics")
        .text()
        .await
        .expect("text");
    promtool_check("master", &master_text);
    let mut exported = families(&master_text);
    for addr in &worker_addrs {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("worker metrics")
            .text()
            .await
            .expect("text");
        promtool_check("worker", &text);
        for (name, labels) in families(&text) {
            exported.entry(name).or_default().extend(labels);
        }
    }

    // Template variables: each query lists real values.
    let variables: BTreeSet<String> = dashboards
        .iter()
        .flat_map(|d| d.variables.keys().cloned())
        .collect();
    let at_all: BTreeMap<String, String> = variables.iter().map(|k| (k.clone(), ".*".to_string())).collect();
    let mut at_real = at_all.clone();
    at_real.insert("group".into(), "etl".into());
    at_real.insert("function".into(), "echo".into());
    for (name, query) in dashboards.iter().flat_map(|d| &d.variables) {
        let inner = query
            .trim()
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: {query} is not label_values(...)"));
        let (selector, label) = inner
            .rsplit_once(',')
            .map(|(s, l)| (Some(substitute(s.trim(), &at_all)), l.trim()))
            .unwrap_or((None, inner.trim()));
        for metric in selector.iter().flat_map(|s| metric_names(s)) {
            assert!(
                exported.contains_key(&metric),
                "variable {name}: {metric} is not exported"
            );
        }
        let params: Vec<(&str, &str)> = selector.iter().map(|s| ("match[]", s.as_str())).collect();
        let values = prometheus
            .api(&client, &format!("/api/v1/label/{label}/values"), &params)
            .await;
        let values: BTreeSet<&str> = values
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expected: &[&str] = match name.as_str() {
            "group" => &["etl", "reports"],
            "function" => &["echo", "fail", "crash", "wordcount"],
            _ => &[],
        };
        assert!(
            !values.is_empty() && expected.iter().all(|e| values.contains(e)),
            "variable {name} ({query}) lists {values:?}, expected {expected:?}"
        );
    }

    // Metric and label names: ones the binaries export.
    let queries: Vec<&Query> = dashboards.iter().flat_map(|d| &d.queries).collect();
    for query in &queries {
        let mut labels = BTreeSet::new();
        for metric in metric_names(&query.expr) {
            let family = family_of(&metric, &exported).unwrap_or_else(|| {
                panic!(
                    "{} / {}: {metric} is exported by neither binary",
                    query.dashboard, query.panel
                )
            });
            labels.extend(exported[family].iter().cloned());
        }
        for label in label_names(&query.expr) {
            assert!(
                labels.contains(&label),
                "{} / {}: no metric of {:?} has the label {label} ({labels:?})",
                query.dashboard,
                query.panel,
                query.expr
            );
        }
    }

    // Every panel query, at "All" and at a real group and function, returns data.
    let mut evaluated = Vec::new();
    for query in &queries {
        evaluated.push(((*query).clone(), substitute(&query.expr, &at_all)));
        evaluated.push(((*query).clone(), substitute(&query.expr, &at_real)));
    }
    let missing = evaluate(&prometheus, &client, &evaluated, false, Duration::from_secs(45)).await;
    let report: Vec<String> = missing
        .iter()
        .map(|(i, why)| {
            format!(
                "{} / {}: {} -> {why}",
                evaluated[*i].0.dashboard, evaluated[*i].0.panel, evaluated[*i].1
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "queries without data:\n{}\n--- prometheus log ---\n{}",
        report.join("\n"),
        prometheus.log()
    );

    // The traffic shows: each family the dashboards use has a query with a positive value.
    let at_all: Vec<(Query, String)> = evaluated.iter().step_by(2).cloned().collect();
    let still_zero = evaluate(&prometheus, &client, &at_all, true, Duration::from_secs(20)).await;
    let mut families_used: BTreeSet<String> = BTreeSet::new();
    for (query, _) in &at_all {
        families_used.extend(metric_names(&query.expr));
    }
    for family in families_used
        .iter()
        .filter(|f| !MAY_STAY_ZERO.contains(&f.as_str()))
    {
        let live = at_all
            .iter()
            .enumerate()
            .any(|(i, (q, _))| !still_zero.contains_key(&i) && metric_names(&q.expr).contains(family));
        let zero: Vec<&String> = at_all
            .iter()
            .enumerate()
            .filter(|(i, (q, _))| still_zero.contains_key(i) && metric_names(&q.expr).contains(family))
            .map(|(_, (_, e))| e)
            .collect();
        assert!(
            live,
            "no panel over {family} shows the traffic; still 0: {zero:#?}"
        );
    }
}
