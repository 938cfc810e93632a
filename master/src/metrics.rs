//! The master's Prometheus metrics (SPEC §7), labels bounded by the configuration.

use jobfleet_common::config::Config;
use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every master metric, registered on its own registry.
pub struct MasterMetrics {
    registry: Registry,
    /// `jobfleet_jobs_submitted_total{group,function}`.
    pub jobs_submitted: IntCounterVec,
    /// `jobfleet_queue_depth{group}`.
    pub queue_depth: IntGaugeVec,
    /// `jobfleet_workers{group}`.
    pub workers: IntGaugeVec,
    /// `jobfleet_group_broken{group}`.
    pub group_broken: IntGaugeVec,
    /// `jobfleet_http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `jobfleet_http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `jobfleet_jobs_corrected_total{group,kind}`: jobs the run-record corrector
    /// republished (`kind` = `queued`, `started` or `unlisted`) or whose owed result it
    /// published (`owed`).
    pub jobs_corrected: IntCounterVec,
    /// `jobfleet_http_waiting_requests`: synchronous submits waiting for their job to end.
    pub waiting_requests: IntGauge,
    /// `jobfleet_master_result_feed`: 1 while this master subscribes to the result topic
    /// (only while submits wait, and for a while after).
    pub result_feed: IntGauge,
    /// `jobfleet_audit_write_failures_total`: audit entries Redis did not take (each is
    /// still logged).
    pub audit_write_failures: IntCounter,
    /// `jobfleet_jobs_delayed{group}`: delayed jobs waiting for their `run_at`.
    pub jobs_delayed: IntGaugeVec,
    /// `jobfleet_delayed_published_total{group}`: delayed jobs the leader published when due.
    pub delayed_published: IntCounterVec,
    /// `jobfleet_schedule_firings_total{schedule}`: jobs the leader's schedules fired.
    pub schedule_firings: IntCounterVec,
    /// `jobfleet_group_paused{group}`: 1 while the group is paused.
    pub group_paused: IntGaugeVec,
    /// `jobfleet_group_running{group}`: the group's started jobs, fleet-wide.
    pub group_running: IntGaugeVec,
    /// `jobfleet_group_max_running{group}`: its `max_running` in force (0: no cap).
    pub group_max_running: IntGaugeVec,
    /// `jobfleet_jobs_held{group}`: queued jobs flow control holds back (paused, or at
    /// `max_running`).
    pub jobs_held: IntGaugeVec,
}

impl MasterMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGaugeVec::new(Opts::new(name, help), &["group"]).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let jobs_submitted = counter(
            "jobfleet_jobs_submitted_total",
            "Jobs accepted by POST /v1/jobs.",
            &["group", "function"],
        );
        let http_requests = counter(
            "jobfleet_http_requests_total",
            "HTTP requests answered.",
            &["method", "route", "status"],
        );
        let jobs_corrected = counter(
            "jobfleet_jobs_corrected_total",
            "Jobs the run-record corrector repaired: queued with no message left, started by a dead worker or by a live one that no longer runs it, or a result owed.",
            &["group", "kind"],
        );
        let delayed_published = counter(
            "jobfleet_delayed_published_total",
            "Delayed jobs the leader master published when they became due.",
            &["group"],
        );
        let schedule_firings = counter(
            "jobfleet_schedule_firings_total",
            "Jobs the leader master's cron schedules fired.",
            &["schedule"],
        );
        let jobs_delayed = gauge(
            "jobfleet_jobs_delayed",
            "Delayed jobs waiting for their run_at in the group's delayed set.",
        );
        let group_paused = gauge("jobfleet_group_paused", "1 while the group is paused.");
        let group_running = gauge(
            "jobfleet_group_running",
            "The group's started jobs, fleet-wide (what max_running caps).",
        );
        let group_max_running = gauge(
            "jobfleet_group_max_running",
            "The group's max_running in force; 0 when it has no cap.",
        );
        let jobs_held = gauge(
            "jobfleet_jobs_held",
            "Queued jobs flow control holds back (the group paused or at max_running).",
        );
        let queue_depth = gauge("jobfleet_queue_depth", "Jobs waiting in the group's queue.");
        let workers = gauge("jobfleet_workers", "Live workers serving the group.");
        let group_broken = gauge(
            "jobfleet_group_broken",
            "1 when the failure policy broke the group.",
        );
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let http_duration = HistogramVec::new(
            HistogramOpts::new("jobfleet_http_request_duration_seconds", "HTTP request latency.")
                .buckets(buckets),
            &["method", "route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        let waiting_requests = register(
            &registry,
            IntGauge::new(
                "jobfleet_http_waiting_requests",
                "Synchronous submits (?wait=) waiting for their job to end.",
            ),
        );
        let result_feed = register(
            &registry,
            IntGauge::new(
                "jobfleet_master_result_feed",
                "1 while this master subscribes to the result topic (only while submits wait).",
            ),
        );
        let audit_write_failures = register(
            &registry,
            IntCounter::new(
                "jobfleet_audit_write_failures_total",
                "Audit entries Redis did not take (each is still in the master's log).",
            ),
        );
        MasterMetrics {
            group_paused,
            group_running,
            group_max_running,
            jobs_held,
            jobs_delayed,
            delayed_published,
            schedule_firings,
            audit_write_failures,
            waiting_requests,
            result_feed,
            registry,
            jobs_submitted,
            queue_depth,
            workers,
            group_broken,
            http_requests,
            http_duration,
            jobs_corrected,
        }
    }

    /// The metrics with a submission counter at 0 for every configured group and function
    /// (and a delayed-published counter for every group),
    /// so that `rate()` sees a pair's first submissions (a series born at 1 shows no
    /// increase). The gauges appear with the first scrape that could read them.
    pub fn for_config(config: &Config) -> Self {
        let metrics = MasterMetrics::new();
        for (group, group_config) in &config.groups {
            metrics.delayed_published.with_label_values(&[group.as_str()]);
            for function in group_config.functions.keys() {
                metrics
                    .jobs_submitted
                    .with_label_values(&[group.as_str(), function.as_str()]);
            }
        }
        metrics
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Registers a newly made metric on `registry` and returns it.
fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Default for MasterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_pair_has_series_at_zero_before_any_job() {
        let config = Config::from_toml("[groups.etl.functions.echo]\n[groups.etl.functions.fail]\n").unwrap();
        let text = MasterMetrics::for_config(&config).render();
        for series in [
            r#"jobfleet_jobs_submitted_total{function="echo",group="etl"} 0"#,
            r#"jobfleet_jobs_submitted_total{function="fail",group="etl"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == series), "{series} missing from\n{text}");
        }
    }
}
