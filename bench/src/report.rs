//! The printed table: throughput rows with their ratio to the ceiling, latency, peak RSS,
//! the targets of the benchmark issue, the optional scaling table, and last
//! `e2e/ceiling = R`.

use crate::delayed::Lateness;
use crate::measure::{Latency, Throughput};
use std::fmt;
use std::time::Duration;

/// Targets on the 2-core reference machine (docs/benchmark.md).
const TARGET_RATIO: f64 = 0.6;
const TARGET_P50_OVER_CEILING: Duration = Duration::from_millis(1);
const TARGET_P99: Duration = Duration::from_millis(10);
const TARGET_WORKER_RSS: u64 = 30 * 1024 * 1024;
/// Largest share of POST /v1/jobs throughput that API tokens may cost.
const TARGET_AUTH_COST: f64 = 0.05;
/// Redis bytes an ended small job may cost (issue #16).
const TARGET_ENDED_JOB_BYTES: u64 = 400;

/// Everything one run measured.
pub struct Report {
    jobs: usize,
    concurrency: usize,
    process_concurrency: usize,
    rate: f64,
    namespace: String,
    /// `--redis-min-replicas`: replicas each transition waited for.
    pub redis_min_replicas: u32,
    /// `--link-delay`: ms added each way on the broker and Redis links (0: direct).
    pub link_delay_ms: u64,
    /// `--queue-type` of the echo group and the ceiling: `classic` or `quorum`.
    pub queue_type: &'static str,
    cpus: usize,
    load_before: String,
    load_after: String,
    pub ceiling: Option<Throughput>,
    pub e2e: Option<Throughput>,
    pub http: Option<Throughput>,
    /// POST /v1/jobs on a master with `[auth]`, a token on every request.
    pub http_auth: Option<Throughput>,
    http_rounds: Vec<f64>,
    http_auth_rounds: Vec<f64>,
    /// POST /v1/jobs/batch, 1,000 jobs a request.
    pub batch: Option<Throughput>,
    batch_rounds: Vec<f64>,
    pub exclusive: Option<Throughput>,
    pub shared: Option<Throughput>,
    pub ceiling_latency: Option<Latency>,
    pub e2e_latency: Option<Latency>,
    pub worker_rss: Option<u64>,
    /// The long row's segments (`--long`).
    pub long: Vec<crate::long_row::Segment>,
    /// Celery over the same echo jobs (`--peers`).
    pub celery: Option<Throughput>,
    /// Redis bytes per queued and per ended small job.
    pub memory: Option<crate::memory::PerJob>,
    pub master_rss: Option<u64>,
    pub process_worker_rss: Option<u64>,
    /// (workers, concurrency, ceiling, jobfleet e2e)
    pub scaling: Vec<(usize, usize, Throughput, Throughput)>,
    /// CPU per job by process, per throughput row.
    pub cpu: Vec<(&'static str, Vec<(String, Duration)>)>,
    /// Every round of the ceiling and e2e rows, jobs/s.
    ceiling_rounds: Vec<f64>,
    e2e_rounds: Vec<f64>,
    ceiling_cpu: Vec<(String, Duration)>,
    e2e_cpu: Vec<(String, Duration)>,
    /// Immediate throughput rounds (jobs/s) without and with 100,000 delayed jobs waiting.
    delayed_without: Vec<f64>,
    delayed_with: Vec<f64>,
    /// How long recording the 100,000 delayed jobs took.
    pub delayed_scheduling: Option<Duration>,
    /// Start lateness of delayed jobs under load.
    pub lateness: Option<Lateness>,
    /// E2e throughput rounds (jobs/s) under each flow-control setting, in run order.
    flow: Vec<(&'static str, Vec<f64>)>,
    /// The logs row: throughput logging nothing and logging 10 lines per job.
    pub logs: Option<crate::logs::Rows>,
    /// The steps row: a step's end to its dependents' start, per workflow shape.
    pub steps: Vec<crate::steps::Gaps>,
}

/// Largest share of throughput flow control may cost at a cap of 64 (River's published
/// global limits halved theirs).
const TARGET_FLOW_COST: f64 = 0.15;

/// Largest share of immediate throughput that 100,000 waiting delayed jobs may cost.
const TARGET_DELAYED_COST: f64 = 0.10;
/// Largest p99 start lateness of delayed jobs under load.
const TARGET_LATENESS_P99_MS: i64 = 1000;

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "-".into())
}

/// Jobs/s of each round, `a / b / c`.
fn rounds_text(rounds: &[f64]) -> String {
    rounds
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

impl Report {
    /// An empty report; the load average is read now.
    pub fn new(
        jobs: usize,
        concurrency: usize,
        process_concurrency: usize,
        rate: f64,
        namespace: &str,
    ) -> Report {
        Report {
            jobs,
            concurrency,
            process_concurrency,
            rate,
            namespace: namespace.to_string(),
            redis_min_replicas: 0,
            queue_type: "classic",
            link_delay_ms: 0,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            load_before: load_average(),
            load_after: String::new(),
            ceiling: None,
            e2e: None,
            http: None,
            http_auth: None,
            http_rounds: Vec::new(),
            http_auth_rounds: Vec::new(),
            batch: None,
            batch_rounds: Vec::new(),
            exclusive: None,
            shared: None,
            ceiling_latency: None,
            e2e_latency: None,
            worker_rss: None,
            memory: None,
            celery: None,
            long: Vec::new(),
            master_rss: None,
            process_worker_rss: None,
            scaling: Vec::new(),
            cpu: Vec::new(),
            ceiling_rounds: Vec::new(),
            e2e_rounds: Vec::new(),
            ceiling_cpu: Vec::new(),
            e2e_cpu: Vec::new(),
            delayed_without: Vec::new(),
            delayed_with: Vec::new(),
            delayed_scheduling: None,
            lateness: None,
            flow: Vec::new(),
            logs: None,
            steps: Vec::new(),
        }
    }

    /// A round of immediate throughput, with or without the delayed jobs waiting.
    pub fn add_delayed(&mut self, row: Throughput, waiting: bool) {
        let rounds = if waiting {
            &mut self.delayed_with
        } else {
            &mut self.delayed_without
        };
        rounds.push(row.rate());
    }

    /// A round of e2e throughput under the flow-control setting `label`.
    pub fn add_flow(&mut self, label: &'static str, row: Throughput) {
        match self.flow.iter_mut().find(|(l, _)| *l == label) {
            Some((_, rounds)) => rounds.push(row.rate()),
            None => self.flow.push((label, vec![row.rate()])),
        }
    }

    /// The flow-control lines: each setting's best round and its cost against no limit.
    fn flow_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((_, free)) = self.flow.first() else {
            return Ok(());
        };
        let best = |rounds: &[f64]| rounds.iter().copied().fold(0.0, f64::max);
        let baseline = best(free);
        writeln!(f)?;
        writeln!(
            f,
            "flow control (limits set at run time; a master releasing held jobs)"
        )?;
        for (i, (label, rounds)) in self.flow.iter().enumerate() {
            let rate = best(rounds);
            let cost = 1.0 - rate / baseline;
            let all: Vec<String> = rounds.iter().map(|r| format!("{r:.0}")).collect();
            write!(
                f,
                "  e2e jobs/s, {label:<24} {rate:>8.0}  (rounds {})",
                all.join(" / ")
            )?;
            if i == 0 {
                writeln!(f)?;
            } else {
                let ok = cost < TARGET_FLOW_COST;
                writeln!(
                    f,
                    "  cost {:.1} % (target < {:.0} %): {}",
                    cost * 100.0,
                    TARGET_FLOW_COST * 100.0,
                    verdict(ok)
                )?;
            }
        }
        Ok(())
    }

    /// The logs row's lines: each kind's best round, the ratio, and the lines kept.
    fn logs_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(logs) = &self.logs else { return Ok(()) };
        let Some((quiet, logging)) = logs.best() else {
            return Ok(());
        };
        writeln!(f)?;
        writeln!(
            f,
            "job logs (the built-in chatty, client library, the echo group's worker)"
        )?;
        writeln!(
            f,
            "  e2e jobs/s, no log line                     {quiet:>8.0}  (rounds {})",
            rounds_text(&logs.quiet.rounds)
        )?;
        writeln!(
            f,
            "  e2e jobs/s, {:>2} log lines per job            {logging:>8.0}  (rounds {})",
            crate::logs::LINES,
            rounds_text(&logs.logging.rounds)
        )?;
        let (stored, logged) = logs.stored;
        writeln!(
            f,
            "  with / without logs {:.2}; {stored} of {logged} lines stored for {} jobs of the last logging round",
            logging / quiet,
            logged / crate::logs::LINES as usize
        )
    }

    /// The steps row's lines: per workflow shape, the gaps and steps/s.
    fn steps_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return Ok(());
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<50} {:>7} {:>9} {:>10} {:>10} {:>10}",
            "workflow steps: a step's end -> dependents' start", "gaps", "p50", "p99", "max", "steps/s"
        )?;
        for g in &self.steps {
            writeln!(
                f,
                "{:<50} {:>7} {:>9} {:>10} {:>10} {:>10.0}",
                g.shape,
                g.samples,
                format!("{} ms", g.p50_ms),
                format!("{} ms", g.p99_ms),
                format!("{} ms", g.max_ms),
                g.steps_per_s
            )?;
        }
        Ok(())
    }

    /// The verdict table's lines of the logs and steps rows: reported, no target set.
    fn logs_and_steps_verdicts(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((quiet, logging)) = self.logs.as_ref().and_then(|l| l.best()) {
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  reported",
                format!("cost of {} log lines a job", crate::logs::LINES),
                format!("{:+.1} %", (1.0 - logging / quiet) * 100.0),
                "none"
            )?;
        }
        for g in &self.steps {
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  reported",
                format!("step gap p99, {}", g.kind),
                format!("{} ms", g.p99_ms),
                "none"
            )?;
        }
        Ok(())
    }

    /// The delayed rows' lines: throughput without and with, lateness, and their targets.
    fn delayed_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = |rounds: &[f64]| {
            rounds
                .iter()
                .copied()
                .fold(None, |b: Option<f64>, r| Some(b.map_or(r, |b| b.max(r))))
        };
        if let (Some(without), Some(with)) = (best(&self.delayed_without), best(&self.delayed_with)) {
            writeln!(f)?;
            writeln!(f, "delayed jobs (a master's scheduler running)")?;
            writeln!(
                f,
                "  e2e jobs/s, no delayed job waiting          {without:>8.0}  (rounds {})",
                rounds_text(&self.delayed_without)
            )?;
            writeln!(
                f,
                "  e2e jobs/s, 100,000 delayed jobs waiting    {with:>8.0}  (rounds {})",
                rounds_text(&self.delayed_with)
            )?;
            let cost = 1.0 - with / without;
            writeln!(
                f,
                "  cost {:.1} % (target < {:.0} %): {}",
                cost * 100.0,
                TARGET_DELAYED_COST * 100.0,
                verdict(cost < TARGET_DELAYED_COST)
            )?;
            if let Some(took) = self.delayed_scheduling {
                writeln!(
                    f,
                    "  recording 100,000 delayed jobs took {:.1} s",
                    took.as_secs_f64()
                )?;
            }
        }
        if let Some(l) = self.lateness {
            writeln!(
                f,
                "  start lateness under load ({} jobs): min {} ms, p50 {} ms, p99 {} ms, max {} ms (p99 target <= {TARGET_LATENESS_P99_MS} ms, never early): {}",
                l.jobs,
                l.min_ms,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                verdict(l.p99_ms <= TARGET_LATENESS_P99_MS && l.min_ms >= 0)
            )?;
        }
        Ok(())
    }

    /// A round of the ceiling row: kept when it is the best so far.
    pub fn add_ceiling(&mut self, row: Throughput, cpu: Vec<(String, Duration)>) {
        self.ceiling_rounds.push(row.rate());
        if self.ceiling.is_none_or(|best| row.rate() > best.rate()) {
            self.ceiling = Some(row);
            self.ceiling_cpu = cpu;
        }
    }

    /// A round of POST /v1/jobs, without or with a token: kept when it is the best so far
    /// (with its CPU per job).
    pub fn add_http(&mut self, row: Throughput, with_token: bool, cpu: Vec<(String, Duration)>) {
        let (best, rounds, label) = if with_token {
            (
                &mut self.http_auth,
                &mut self.http_auth_rounds,
                "POST /v1/jobs+token",
            )
        } else {
            (&mut self.http, &mut self.http_rounds, "POST /v1/jobs")
        };
        rounds.push(row.rate());
        if best.is_none_or(|b| row.rate() > b.rate()) {
            *best = Some(row);
            self.cpu.retain(|(name, _)| *name != label);
            self.cpu.push((label, cpu));
        }
    }

    /// A round of POST /v1/jobs/batch: kept when it is the best so far (with its CPU per job).
    pub fn add_batch(&mut self, row: Throughput, cpu: Vec<(String, Duration)>) {
        let label = "POST /v1/jobs/batch";
        self.batch_rounds.push(row.rate());
        if self.batch.is_none_or(|b| row.rate() > b.rate()) {
            self.batch = Some(row);
            self.cpu.retain(|(name, _)| *name != label);
            self.cpu.push((label, cpu));
        }
    }

    /// A round of the jobfleet e2e row: kept when it is the best so far.
    pub fn add_e2e(&mut self, row: Throughput, cpu: Vec<(String, Duration)>) {
        self.e2e_rounds.push(row.rate());
        if self.e2e.is_none_or(|best| row.rate() > best.rate()) {
            self.e2e = Some(row);
            self.e2e_cpu = cpu;
        }
    }

    /// Reads the load average at the end.
    pub fn finish(&mut self) {
        self.load_after = load_average();
    }

    /// The long row: each segment's jobs/s and RSS, and how the last compares with the first.
    fn long_rows(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.long.first(), self.long.last()) else {
            return Ok(());
        };
        writeln!(f)?;
        writeln!(
            f,
            "{:<24} {:>10} {:>12} {:>12}",
            "long row: jobs so far", "jobs/s", "worker RSS", "master RSS"
        )?;
        let mut done = 0;
        for segment in &self.long {
            done += segment.throughput.jobs;
            writeln!(
                f,
                "{done:<24} {:>10.0} {:>12} {:>12}",
                segment.throughput.rate(),
                mb(segment.worker_rss),
                mb(segment.master_rss)
            )?;
        }
        writeln!(
            f,
            "last / first segment: throughput {:.2}, worker RSS {}, master RSS {}",
            last.throughput.rate() / first.throughput.rate(),
            growth(first.worker_rss, last.worker_rss),
            growth(first.master_rss, last.master_rss)
        )
    }

    fn ratio(&self, row: Option<Throughput>) -> Option<f64> {
        Some(row?.rate() / self.ceiling?.rate())
    }

    fn throughput_line(
        &self,
        f: &mut fmt::Formatter<'_>,
        name: &str,
        row: Option<Throughput>,
        rounds: &[f64],
    ) -> fmt::Result {
        let Some(row) = row else { return Ok(()) };
        let ratio = self
            .ratio(Some(row))
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "-".into());
        let rounds = if rounds.len() > 1 {
            format!(
                "  best of {}",
                rounds
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            )
        } else {
            String::new()
        };
        writeln!(
            f,
            "{name:<50} {:>7} {:>9.2} {:>10.0} {:>10}{rounds}",
            row.jobs,
            row.elapsed.as_secs_f64(),
            row.rate(),
            ratio
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "jobfleet benchmark: {} jobs per row, concurrency (prefetch) {}, {} queues, namespace {}",
            self.jobs, self.concurrency, self.queue_type, self.namespace
        )?;
        writeln!(
            f,
            "machine: {} CPUs, load average {} before, {} after",
            self.cpus, self.load_before, self.load_after
        )?;
        if self.link_delay_ms > 0 {
            writeln!(
                f,
                "links: +{} ms each way to RabbitMQ and Redis, through loopback proxies (--link-delay)",
                self.link_delay_ms
            )?;
        }
        if self.redis_min_replicas > 0 {
            writeln!(
                f,
                "redis_min_replicas = {}: WAIT after each transition",
                self.redis_min_replicas
            )?;
        }
        if cfg!(debug_assertions) {
            writeln!(
                f,
                "DEBUG BUILD: a smoke check, the figures say nothing about performance"
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<50} {:>7} {:>9} {:>10} {:>10}",
            "throughput (first publish -> last result)", "jobs", "seconds", "jobs/s", "/ceiling"
        )?;
        self.throughput_line(
            f,
            "ceiling: bare lapin, same flow and guarantees",
            self.ceiling,
            &self.ceiling_rounds,
        )?;
        self.throughput_line(
            f,
            "jobfleet e2e: client library, echo",
            self.e2e,
            &self.e2e_rounds,
        )?;
        self.throughput_line(f, "jobfleet: POST /v1/jobs, echo", self.http, &self.http_rounds)?;
        self.throughput_line(f, "Celery: acks_late, confirms, Redis results", self.celery, &[])?;
        self.throughput_line(
            f,
            "jobfleet: POST /v1/jobs with [auth] and a token",
            self.http_auth,
            &self.http_auth_rounds,
        )?;
        self.throughput_line(
            f,
            "jobfleet: POST /v1/jobs/batch, 1000 a request",
            self.batch,
            &self.batch_rounds,
        )?;
        self.throughput_line(
            f,
            &format!(
                "process sandbox exclusive (python3, conc {})",
                self.process_concurrency
            ),
            self.exclusive,
            &[],
        )?;
        self.throughput_line(
            f,
            &format!(
                "process sandbox shared (python3, conc {})",
                self.process_concurrency
            ),
            self.shared,
            &[],
        )?;
        if self.ceiling_latency.is_some() || self.e2e_latency.is_some() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<50} {:>7} {:>9} {:>10} {:>10}",
                format!("latency at {:.0} jobs/s (publish -> result)", self.rate),
                "jobs",
                "p50",
                "p99",
                "max"
            )?;
            for (name, row) in [
                ("ceiling", self.ceiling_latency),
                ("jobfleet e2e", self.e2e_latency),
            ] {
                if let Some(l) = row {
                    writeln!(
                        f,
                        "{name:<50} {:>7} {:>9} {:>10} {:>10}",
                        l.jobs,
                        ms(l.p50),
                        ms(l.p99),
                        ms(l.max)
                    )?;
                }
            }
        }
        self.delayed_lines(f)?;
        self.flow_lines(f)?;
        self.logs_lines(f)?;
        self.steps_lines(f)?;
        let mut cpu: Vec<(&str, &Vec<(String, Duration)>)> = Vec::new();
        if self.ceiling.is_some() {
            cpu.push(("ceiling", &self.ceiling_cpu));
        }
        if self.e2e.is_some() {
            cpu.push(("jobfleet e2e", &self.e2e_cpu));
        }
        cpu.extend(self.cpu.iter().map(|(row, processes)| (*row, processes)));
        if let Some(logs) = &self.logs {
            let [quiet, logging] = crate::logs::CPU_LABELS;
            cpu.push((quiet, &logs.quiet.cpu));
            cpu.push((logging, &logs.logging.cpu));
        }
        if !cpu.is_empty() {
            writeln!(f)?;
            writeln!(f, "CPU per job (us), by process:")?;
            for (row, processes) in cpu {
                let total: Duration = processes.iter().map(|(_, d)| *d).sum();
                let parts: Vec<String> = processes
                    .iter()
                    .map(|(name, d)| format!("{name} {:.0}", d.as_secs_f64() * 1e6))
                    .collect();
                writeln!(
                    f,
                    "  {row:<18} total {:>6.0}  = {}",
                    total.as_secs_f64() * 1e6,
                    parts.join(", ")
                )?;
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "peak RSS (VmHWM): worker {}, master {}, process-sandbox worker {} (without its children)",
            mb(self.worker_rss),
            mb(self.master_rss),
            mb(self.process_worker_rss)
        )?;
        if let Some(memory) = self.memory {
            writeln!(
                f,
                "Redis memory per small job (wordcount of one sentence): queued {:.0} B, ended {:.0} B \
                 (hash-max-listpack-value {})",
                memory.queued,
                memory.ended,
                memory
                    .listpack_value
                    .map_or_else(|| "unknown".to_string(), |v| v.to_string())
            )?;
        }
        writeln!(f)?;
        writeln!(f, "{:<30} {:>12} {:>12}  verdict", "target", "measured", "target")?;
        if let Some(ratio) = self.ratio(self.e2e) {
            writeln!(
                f,
                "{:<30} {:>12.2} {:>12}  {}",
                "e2e / ceiling",
                ratio,
                format!(">= {TARGET_RATIO}"),
                verdict(ratio >= TARGET_RATIO)
            )?;
        }
        if let (Some(c), Some(e)) = (self.ceiling_latency, self.e2e_latency) {
            let over = e.p50.saturating_sub(c.p50);
            let delta = (e.p50.as_secs_f64() - c.p50.as_secs_f64()) * 1000.0;
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  {}",
                "p50 - ceiling p50",
                format!("{delta:+.2} ms"),
                "<= 1 ms",
                verdict(over <= TARGET_P50_OVER_CEILING)
            )?;
        }
        if let Some(e) = self.e2e_latency {
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  {}",
                "p99",
                ms(e.p99),
                "< 10 ms",
                verdict(e.p99 < TARGET_P99)
            )?;
        }
        if let (Some(plain), Some(auth)) = (self.http, self.http_auth) {
            let cost = 1.0 - auth.rate() / plain.rate();
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  {}",
                "auth cost on POST /v1/jobs",
                format!("{:+.1} %", cost * 100.0),
                format!("< {:.0} %", TARGET_AUTH_COST * 100.0),
                verdict(cost < TARGET_AUTH_COST)
            )?;
        }
        if let Some(rss) = self.worker_rss {
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  {}",
                "worker peak RSS",
                mb(Some(rss)),
                "< 30 MB",
                verdict(rss < TARGET_WORKER_RSS)
            )?;
        }
        if let Some(memory) = self.memory {
            writeln!(
                f,
                "{:<30} {:>12} {:>12}  {}",
                "Redis bytes per ended job",
                format!("{:.0} B", memory.ended),
                format!("<= {TARGET_ENDED_JOB_BYTES}"),
                verdict(memory.ended <= TARGET_ENDED_JOB_BYTES as f64)
            )?;
        }
        self.logs_and_steps_verdicts(f)?;
        if !self.scaling.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<10} {:>12} {:>14} {:>14} {:>10}",
                "workers", "concurrency", "ceiling j/s", "jobfleet j/s", "ratio"
            )?;
            for (workers, concurrency, ceiling, e2e) in &self.scaling {
                writeln!(
                    f,
                    "{workers:<10} {concurrency:>12} {:>14.0} {:>14.0} {:>10.2}",
                    ceiling.rate(),
                    e2e.rate(),
                    e2e.rate() / ceiling.rate()
                )?;
            }
        }
        self.long_rows(f)?;
        if let (Some(e2e), Some(celery)) = (self.e2e, self.celery) {
            writeln!(f, "jobfleet e2e / Celery = {:.1}", e2e.rate() / celery.rate())?;
        }
        writeln!(f)?;
        match self.ratio(self.e2e) {
            Some(ratio) => writeln!(f, "e2e/ceiling = {ratio:.2}"),
            None => writeln!(f, "e2e/ceiling = n/a (rows skipped)"),
        }
    }
}

/// `last / first` of two sizes, as text.
fn growth(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(first), Some(last)) if first > 0 => format!("{:.2}", last as f64 / first as f64),
        _ => "-".into(),
    }
}
