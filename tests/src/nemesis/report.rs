//! A run's figures (jobs, faults by kind, lost, doubled, stuck, longest recovery) and its
//! violations, each job-level one with the faults around that job's life.

use super::checker::{Findings, Violation};
use super::faults::FaultKind;
use super::history::Event;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How many violations of one category the report spells out.
const SHOWN_PER_CATEGORY: usize = 15;
/// A fault counts as "around" a job if it ended less than this before the job's first
/// logged request or began less than this after its last.
const FAULT_REACH_MS: i64 = 5_000;

/// A fault as the log recorded it.
#[derive(Debug, Clone)]
struct FaultSpan {
    kind: FaultKind,
    target: String,
    start: i64,
    end: i64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Where the log and the process logs are.
    pub dir: PathBuf,
    /// The checker's verdict.
    pub findings: Findings,
    /// Submission attempts logged.
    pub submissions: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, usize>,
    /// The longest time from a fault's healing to its probe job ending.
    pub longest_recovery: Option<Duration>,
    /// Probes that did not end in time.
    pub unrecovered: usize,
    /// How long after the faults stopped everything had settled (`None`: not within the bound).
    pub settled_after: Option<Duration>,
    /// The bound.
    pub bound: Duration,
    /// Processes that exited without being told to (restarted by the supervisor).
    pub exits: Vec<(String, Option<i32>)>,
    /// The run's wall clock time.
    pub wall: Duration,
    started_at: i64,
    spans: Vec<FaultSpan>,
    windows: HashMap<String, (i64, i64)>,
    /// Per job, what the workload did and was answered, in order.
    trails: HashMap<String, Vec<(i64, String)>>,
}

impl Report {
    /// Builds the report of a run that started at `started_at` (unix ms).
    pub fn new(seed: u64, dir: PathBuf, events: &[Event], findings: Findings, started_at: i64) -> Report {
        let mut report = Report {
            seed,
            dir,
            findings,
            submissions: 0,
            faults: BTreeMap::new(),
            longest_recovery: None,
            unrecovered: 0,
            settled_after: None,
            bound: Duration::ZERO,
            exits: Vec::new(),
            wall: Duration::ZERO,
            started_at,
            spans: Vec::new(),
            windows: HashMap::new(),
            trails: HashMap::new(),
        };
        for event in events {
            report.add(event);
        }
        report
    }

    fn add(&mut self, event: &Event) {
        let (id, at, what) = match event {
            Event::Submit {
                id,
                via,
                sent_at,
                at,
                outcome,
                unanswered,
                ..
            } => {
                self.submissions += 1;
                self.widen(id, *sent_at);
                let mut what = format!("submit {via:?} {}", brief(&serde_json::to_value(outcome)));
                if !unanswered.is_empty() {
                    what.push_str(&format!(" (after no answer from {})", unanswered.join("; ")));
                }
                (id, *at, what)
            }
            Event::Cancel { id, at, outcome, .. } => (id, *at, format!("cancel {}", answer(outcome))),
            Event::Delete { id, at, outcome } => (id, *at, format!("delete {}", answer(outcome))),
            Event::Fault {
                kind,
                target,
                start,
                end,
            } => {
                *self.faults.entry(*kind).or_default() += 1;
                self.spans.push(FaultSpan {
                    kind: *kind,
                    target: target.clone(),
                    start: *start,
                    end: *end,
                });
                return;
            }
            Event::Probe {
                healed_at, done_at, ..
            } => {
                match done_at {
                    Some(done) => {
                        let took = Duration::from_millis((done - healed_at).max(0) as u64);
                        self.longest_recovery = self.longest_recovery.max(Some(took));
                    }
                    None => self.unrecovered += 1,
                }
                return;
            }
            Event::Exit { process, code, .. } => {
                self.exits.push((process.clone(), *code));
                return;
            }
            Event::Quiet { .. } => return,
        };
        self.widen(id, at);
        self.trails.entry(id.clone()).or_default().push((at, what));
    }

    fn widen(&mut self, id: &str, at: i64) {
        let window = self.windows.entry(id.to_string()).or_insert((at, at));
        window.0 = window.0.min(at);
        window.1 = window.1.max(at);
    }

    /// Whether the run kept every invariant.
    pub fn passed(&self) -> bool {
        self.findings.violations.is_empty()
    }

    /// The violations of `category`.
    pub fn count(&self, category: &str) -> usize {
        self.findings.count(category)
    }

    /// The headline figures, one per line.
    pub fn figures(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        let total: usize = self.faults.values().sum();
        let statuses: BTreeMap<_, _> = self.findings.statuses.iter().collect();
        let secs = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
        let mut lines = vec![
            format!(
                "seed {}  wall {:.0} s  logs {}",
                self.seed,
                self.wall.as_secs_f64(),
                self.dir.display()
            ),
            format!(
                "jobs {} accepted ({} submission attempts, {} ids refused), ended: {statuses:?}",
                self.findings.accepted, self.submissions, self.findings.refused
            ),
            format!("faults {total}: {}", faults.join(", ")),
            format!(
                "lost {}  doubled {}  stuck {}  (same-content duplicate results {}, allowed)",
                self.count("lost"),
                self.count("doubled"),
                self.count("stuck"),
                self.findings.duplicates
            ),
            format!(
                "longest recovery {} ({} probes unrecovered)  settled {} after the faults (bound {:.0} s)",
                secs(self.longest_recovery),
                self.unrecovered,
                secs(self.settled_after),
                self.bound.as_secs_f64()
            ),
            format!(
                "violations {}  unplanned process exits {}",
                self.findings.violations.len(),
                self.exits.len()
            ),
        ];
        if self.findings.foreign_results > 0 {
            lines.push(format!(
                "results for ids not in the log: {}",
                self.findings.foreign_results
            ));
        }
        lines.join("\n")
    }

    /// The faults around `id`'s life, as text.
    fn faults_around(&self, id: &str) -> String {
        let Some((first, last)) = self.windows.get(id) else {
            return String::new();
        };
        let near: Vec<String> = self
            .spans
            .iter()
            .filter(|f| f.end + FAULT_REACH_MS >= *first && f.start <= last + FAULT_REACH_MS)
            .map(|f| {
                format!(
                    "{} {} @{:+.1}s..{:+.1}s",
                    f.kind.as_str(),
                    f.target,
                    (f.start - first) as f64 / 1000.0,
                    (f.end - first) as f64 / 1000.0
                )
            })
            .collect();
        let trail: Vec<String> = self.trails[id]
            .iter()
            .map(|(at, what)| format!("{what} @{:+.1}s", (at - first) as f64 / 1000.0))
            .collect();
        let at = (first - self.started_at) as f64 / 1000.0;
        let faults = match near.is_empty() {
            true => format!("no fault within {FAULT_REACH_MS} ms"),
            false => format!("faults: {}", near.join(", ")),
        };
        format!(
            "\n      first request at run+{at:.1}s; log: {}\n      {faults}",
            trail.join(", ")
        )
    }
}

/// An outcome from the log in a few words: `"accepted"`, `{"rejected":{"status":503,..}}`.
fn brief(value: &Result<serde_json::Value, serde_json::Error>) -> String {
    match value {
        Ok(serde_json::Value::String(s)) => s.clone(),
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(name, detail)| match detail {
                serde_json::Value::Object(fields) if name == "rejected" => {
                    format!("{} {}", fields["status"], fields["kind"].as_str().unwrap_or(""))
                }
                serde_json::Value::Object(fields) => match fields.get("error") {
                    Some(error) => format!("{name} ({})", error.as_str().unwrap_or("")),
                    None => name.clone(),
                },
                _ => name.clone(),
            })
            .collect(),
        _ => "?".into(),
    }
}

/// A cancel's or delete's answer in a few words.
fn answer(outcome: &impl serde::Serialize) -> String {
    match serde_json::to_value(outcome) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(name, detail)| match detail.get("status") {
                Some(status) if name == "refused" => format!("refused {status}"),
                _ => name.clone(),
            })
            .collect(),
        _ => "?".into(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.figures())?;
        let mut by_category: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
        for violation in &self.findings.violations {
            by_category
                .entry(violation.category())
                .or_default()
                .push(violation);
        }
        for (category, violations) in by_category {
            writeln!(f, "-- {category}: {}", violations.len())?;
            for violation in violations.iter().take(SHOWN_PER_CATEGORY) {
                let around = violation
                    .job()
                    .map(|id| self.faults_around(id))
                    .unwrap_or_default();
                writeln!(f, "   {violation}{around}")?;
            }
            if violations.len() > SHOWN_PER_CATEGORY {
                writeln!(
                    f,
                    "   … and {} more (see the log)",
                    violations.len() - SHOWN_PER_CATEGORY
                )?;
            }
        }
        for (process, code) in &self.exits {
            writeln!(f, "-- {process} exited on its own (status {code:?}); restarted")?;
        }
        Ok(())
    }
}
