//! The worker's Prometheus metrics (SPEC §7 names) and the `GET /metrics` endpoint.
//!
//! Labels are bounded: `group` is one of the worker's groups and `function` one it knows
//! (registered or configured); anything else a producer sends is counted under
//! [`UNKNOWN_LABEL`]. Label handles are resolved once, so the hot path does a map lookup
//! and an atomic add, and never takes a lock.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jobfleet_common::coordinator::Waiting;
use jobfleet_common::message::{ErrorKind, JobError, JobStatus};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The label value standing for a group or function this worker does not know.
pub const UNKNOWN_LABEL: &str = "_unknown";

/// Histogram buckets in seconds: from milliseconds for small jobs up to the hours a long
/// job may run (or wait).
const BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
    14400.0,
];

/// The metric families, registered once.
struct Families {
    started: IntCounterVec,
    completed: IntCounterVec,
    duration: HistogramVec,
    queue: HistogramVec,
    running: IntGaugeVec,
    crashes: IntCounterVec,
    redeliveries: IntCounterVec,
    held_back: IntCounterVec,
}

impl Families {
    fn register(registry: &Registry) -> Result<Families, prometheus::Error> {
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                &["group", "function"],
            )
        };
        let families = Families {
            started: IntCounterVec::new(
                Opts::new("jobfleet_jobs_started_total", "Jobs this worker started."),
                &["group", "function"],
            )?,
            completed: IntCounterVec::new(
                Opts::new(
                    "jobfleet_jobs_completed_total",
                    "Jobs this worker ended, by terminal status.",
                ),
                &["group", "function", "status"],
            )?,
            duration: histogram(
                "jobfleet_job_duration_seconds",
                "Execution time of a job's attempt in its sandbox.",
            )?,
            queue: histogram(
                "jobfleet_job_queue_seconds",
                "Time from a job's submission to its first start.",
            )?,
            running: IntGaugeVec::new(
                Opts::new("jobfleet_jobs_running", "Jobs running on this worker now."),
                &["group"],
            )?,
            crashes: IntCounterVec::new(
                Opts::new(
                    "jobfleet_sandbox_crashes_total",
                    "Job attempts whose sandbox crashed.",
                ),
                &["group", "function"],
            )?,
            redeliveries: IntCounterVec::new(
                Opts::new(
                    "jobfleet_redeliveries_total",
                    "Deliveries the broker flagged as redelivered.",
                ),
                &["group"],
            )?,
            held_back: IntCounterVec::new(
                Opts::new(
                    "jobfleet_jobs_held_back_total",
                    "Starts flow control held back, by reason (paused, max_running, rate_limit).",
                ),
                &["group", "reason"],
            )?,
        };
        registry.register(Box::new(families.started.clone()))?;
        registry.register(Box::new(families.completed.clone()))?;
        registry.register(Box::new(families.duration.clone()))?;
        registry.register(Box::new(families.queue.clone()))?;
        registry.register(Box::new(families.running.clone()))?;
        registry.register(Box::new(families.crashes.clone()))?;
        registry.register(Box::new(families.redeliveries.clone()))?;
        registry.register(Box::new(families.held_back.clone()))?;
        Ok(families)
    }
}

/// The series of one (group, function) pair.
pub(crate) struct FunctionMetrics {
    started: IntCounter,
    finished: IntCounter,
    failed: IntCounter,
    canceled: IntCounter,
    duration: Histogram,
    queue: Histogram,
    crashes: IntCounter,
    running: IntGauge,
}

impl FunctionMetrics {
    fn new(families: &Families, group: &str, function: &str, running: &IntGauge) -> FunctionMetrics {
        let pair = [group, function];
        let completed = |status: JobStatus| {
            families
                .completed
                .with_label_values(&[group, function, status.as_str()])
        };
        FunctionMetrics {
            started: families.started.with_label_values(&pair),
            finished: completed(JobStatus::Finished),
            failed: completed(JobStatus::Failed),
            canceled: completed(JobStatus::Canceled),
            duration: families.duration.with_label_values(&pair),
            queue: families.queue.with_label_values(&pair),
            crashes: families.crashes.with_label_values(&pair),
            running: running.clone(),
        }
    }

    /// Counts a start and returns the guard that keeps the job in `jobs_running` until
    /// dropped. `queued` is the wait since submission, on a job's first start only.
    pub(crate) fn start(&self, queued: Option<Duration>) -> RunningGuard {
        self.started.inc();
        if let Some(queued) = queued {
            self.queue.observe(queued.as_secs_f64());
        }
        self.running.inc();
        RunningGuard(self.running.clone())
    }

    /// Records how an attempt's execution ended: its duration and, when its sandbox
    /// crashed, a crash.
    pub(crate) fn executed(&self, duration: Duration, error: Option<&JobError>) {
        self.duration.observe(duration.as_secs_f64());
        if error.is_some_and(|e| e.kind == ErrorKind::Crashed) {
            self.crashes.inc();
        }
    }

    /// Counts a job this worker ended with `status` (terminal statuses only).
    pub(crate) fn completed(&self, status: JobStatus) {
        match status {
            JobStatus::Finished => self.finished.inc(),
            JobStatus::Failed => self.failed.inc(),
            JobStatus::Canceled => self.canceled.inc(),
            JobStatus::Queued | JobStatus::Started => {}
        }
    }
}

/// Keeps one job in `jobfleet_jobs_running` while it lives.
pub(crate) struct RunningGuard(IntGauge);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The series of one group, with its known functions resolved up front.
struct GroupMetrics {
    name: String,
    running: IntGauge,
    redeliveries: IntCounter,
    functions: HashMap<String, FunctionMetrics>,
    /// Created on the first job of a function this worker does not know.
    unknown: OnceLock<FunctionMetrics>,
}

impl GroupMetrics {
    fn new<'a>(
        families: &Families,
        group: &str,
        functions: impl IntoIterator<Item = &'a str>,
    ) -> GroupMetrics {
        let running = families.running.with_label_values(&[group]);
        // Every reason's series exists at 0 from the start, as the others do.
        for reason in [Waiting::Paused, Waiting::MaxRunning, Waiting::RateLimit] {
            families.held_back.with_label_values(&[group, reason.as_str()]);
        }
        let functions = functions
            .into_iter()
            .map(|f| (f.to_string(), FunctionMetrics::new(families, group, f, &running)))
            .collect();
        GroupMetrics {
            name: group.to_string(),
            redeliveries: families.redeliveries.with_label_values(&[group]),
            running,
            functions,
            unknown: OnceLock::new(),
        }
    }
}

/// The worker's metrics on their registry.
pub struct WorkerMetrics {
    registry: Registry,
    families: Families,
    groups: HashMap<String, GroupMetrics>,
    /// Created on the first delivery routed with a group this worker does not consume.
    unknown_group: OnceLock<GroupMetrics>,
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics")
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WorkerMetrics {
    /// Registers the worker metrics on `registry`, with series for every group and each of
    /// its known functions (so that they read 0 before the first job).
    pub fn new(
        registry: Registry,
        groups: &[(String, BTreeSet<String>)],
    ) -> Result<WorkerMetrics, prometheus::Error> {
        let families = Families::register(&registry)?;
        let groups = groups
            .iter()
            .map(|(group, functions)| {
                (
                    group.clone(),
                    GroupMetrics::new(&families, group, functions.iter().map(String::as_str)),
                )
            })
            .collect();
        Ok(WorkerMetrics {
            registry,
            families,
            groups,
            unknown_group: OnceLock::new(),
        })
    }

    /// The registry the metrics live on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn group(&self, group: &str) -> &GroupMetrics {
        self.groups.get(group).unwrap_or_else(|| {
            self.unknown_group
                .get_or_init(|| GroupMetrics::new(&self.families, UNKNOWN_LABEL, []))
        })
    }

    /// The series of a job's group and function, `_unknown` standing in for names this
    /// worker does not know.
    pub(crate) fn function(&self, group: &str, function: &str) -> &FunctionMetrics {
        let group = self.group(group);
        group.functions.get(function).unwrap_or_else(|| {
            group.unknown.get_or_init(|| {
                FunctionMetrics::new(&self.families, &group.name, UNKNOWN_LABEL, &group.running)
            })
        })
    }

    /// Counts a delivery the broker flagged as redelivered.
    pub(crate) fn redelivered(&self, group: &str) {
        self.group(group).redeliveries.inc();
    }

    /// Counts a start flow control held back (SPEC §9).
    pub(crate) fn held_back(&self, group: &str, reason: Waiting) {
        let group = &self.group(group).name;
        self.families
            .held_back
            .with_label_values(&[group.as_str(), reason.as_str()])
            .inc();
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer)
            .map_err(|e| prometheus::Error::Msg(format!("metrics text is not UTF-8: {e}")))
    }
}

/// The metrics endpoint: `GET /metrics` answers the text format.
pub fn router(metrics: Arc<WorkerMetrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<WorkerMetrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not encode the metrics\n",
            )
                .into_response()
        }
    }
}

/// Serves [`router`] on `listener` until `stop` is cancelled; open scrapes get a moment to
/// finish after that.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<WorkerMetrics>,
    stop: CancellationToken,
) {
    let server =
        axum::serve(listener, router(metrics)).with_graceful_shutdown(stop.clone().cancelled_owned());
    let finished = tokio::spawn(async move { server.await });
    stop.cancelled().await;
    // A keep-alive connection of a scraper must not hold the worker's exit.
    match tokio::time::timeout(Duration::from_secs(2), finished).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "the metrics server failed"),
        Ok(Err(e)) => warn!(error = %e, "the metrics server task failed"),
        Err(_) => warn!("the metrics server did not stop in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> WorkerMetrics {
        let functions: BTreeSet<String> = ["echo", "crash"].into_iter().map(String::from).collect();
        WorkerMetrics::new(Registry::new(), &[("etl".to_string(), functions)]).unwrap()
    }

    /// Asserts that `text` has each of the lines `name{labels} value`.
    fn assert_series(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn every_spec_metric_is_exported_after_a_job() {
        let metrics = metrics();
        let echo = metrics.function("etl", "echo");
        let running = echo.start(Some(Duration::from_millis(1500)));
        echo.executed(Duration::from_millis(20), None);
        drop(running);
        echo.completed(JobStatus::Finished);
        let crash = metrics.function("etl", "crash");
        drop(crash.start(None));
        let crashed = JobError::new(ErrorKind::Crashed, "panic");
        crash.executed(Duration::from_millis(5), Some(&crashed));
        crash.completed(JobStatus::Failed);
        metrics.redelivered("etl");

        let text = metrics.render().unwrap();
        for name in [
            "jobfleet_jobs_started_total",
            "jobfleet_jobs_completed_total",
            "jobfleet_job_duration_seconds",
            "jobfleet_job_queue_seconds",
            "jobfleet_jobs_running",
            "jobfleet_sandbox_crashes_total",
            "jobfleet_redeliveries_total",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from\n{text}"
            );
        }
        assert_series(
            &text,
            &[
                r#"jobfleet_jobs_started_total{function="echo",group="etl"} 1"#,
                r#"jobfleet_jobs_completed_total{function="echo",group="etl",status="finished"} 1"#,
                r#"jobfleet_jobs_completed_total{function="crash",group="etl",status="failed"} 1"#,
                r#"jobfleet_sandbox_crashes_total{function="crash",group="etl"} 1"#,
                r#"jobfleet_sandbox_crashes_total{function="echo",group="etl"} 0"#,
                r#"jobfleet_job_queue_seconds_count{function="echo",group="etl"} 1"#,
                r#"jobfleet_job_queue_seconds_sum{function="echo",group="etl"} 1.5"#,
                r#"jobfleet_job_duration_seconds_count{function="crash",group="etl"} 1"#,
                r#"jobfleet_jobs_running{group="etl"} 0"#,
                r#"jobfleet_redeliveries_total{group="etl"} 1"#,
            ],
        );
    }

    #[test]
    fn unknown_names_share_one_bounded_label() {
        let metrics = metrics();
        for i in 0..50 {
            let function = metrics.function("etl", &format!("made_up_{i}"));
            let _running = function.start(None);
            function.completed(JobStatus::Failed);
            metrics.function(&format!("group_{i}"), "echo").start(None);
            metrics.redelivered(&format!("group_{i}"));
        }
        let text = metrics.render().unwrap();
        assert!(!text.contains("made_up_") && !text.contains("group_"), "{text}");
        assert_series(
            &text,
            &[
                r#"jobfleet_jobs_completed_total{function="_unknown",group="etl",status="failed"} 50"#,
                r#"jobfleet_jobs_started_total{function="_unknown",group="_unknown"} 50"#,
                r#"jobfleet_redeliveries_total{group="_unknown"} 50"#,
                r#"jobfleet_jobs_running{group="etl"} 0"#,
            ],
        );
    }

    #[test]
    fn registering_twice_on_one_registry_is_an_error() {
        let registry = Registry::new();
        WorkerMetrics::new(registry.clone(), &[]).unwrap();
        assert!(WorkerMetrics::new(registry, &[]).is_err());
    }
}
