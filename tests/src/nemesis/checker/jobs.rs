//! The rules about jobs: exactly one terminal outcome per accepted job, a result message
//! for each, nothing stuck, no start after an acknowledged cancel, nothing back after a
//! delete; and the rule about groups the faults must not break.

use super::{Evidence, Findings, Rules, Violation};
use crate::nemesis::history::{CancelOutcome, DeleteOutcome, Event, SubmitOutcome};
use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::message::{ErrorKind, JobError, JobStatus, ResultMessage};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// A terminal outcome as the checker compares them: status, result, error kind and message.
/// Attempts, worker and times may differ between copies; these may not.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    status: String,
    result: Value,
    error: Option<(String, String)>,
    /// Where it was seen (for the report).
    seen_in: &'static str,
}

impl Outcome {
    fn same(&self, other: &Outcome) -> bool {
        (&self.status, &self.result, &self.error) == (&other.status, &other.result, &other.error)
    }

    fn describe(&self) -> String {
        let content = match (&self.error, self.status.as_str()) {
            (Some((kind, message)), _) => format!("{kind}: {message}"),
            (None, "finished") => self.result.to_string(),
            (None, _) => String::new(),
        };
        format!("{} {content} [{}]", self.status, self.seen_in)
    }
}

fn outcome(
    status: JobStatus,
    result: &Option<Value>,
    error: &Option<JobError>,
    seen_in: &'static str,
) -> Outcome {
    Outcome {
        status: status.as_str().into(),
        result: if status == JobStatus::Finished {
            result.clone().unwrap_or(Value::Null)
        } else {
            Value::Null
        },
        error: error
            .as_ref()
            .map(|e| (e.kind.as_str().into(), e.message.clone())),
        seen_in,
    }
}

fn of_record(record: &JobRecord) -> Option<Outcome> {
    record
        .status
        .is_terminal()
        .then(|| outcome(record.status, &record.result, &record.error, "record"))
}

fn of_result(result: &ResultMessage) -> Outcome {
    outcome(result.status, &result.result, &result.error, "result")
}

/// An outcome from a record as the HTTP API rendered it (cancel and delete answers).
fn of_json(record: &Value, seen_in: &'static str) -> Option<Outcome> {
    let status: JobStatus = record["status"].as_str()?.parse().ok()?;
    let result = record.get("result").cloned();
    let error = record
        .get("error")
        .and_then(|e| serde_json::from_value::<JobError>(e.clone()).ok());
    status
        .is_terminal()
        .then(|| outcome(status, &result, &error, seen_in))
}

/// What the log says about one id.
#[derive(Debug, Default)]
struct Story<'e> {
    accepted: bool,
    /// Acknowledged cancels: (ack time, the answer's record).
    cancels: Vec<(i64, &'e Value)>,
    /// Acknowledged deletes: (ack time, the record read before).
    deletes: Vec<(i64, &'e Value)>,
    /// A delete was sent whose answer leaves open whether it deleted (none, 5xx, 404).
    maybe_deleted: bool,
}

fn stories(events: &[Event]) -> BTreeMap<&str, Story<'_>> {
    let mut stories: BTreeMap<&str, Story<'_>> = BTreeMap::new();
    for event in events {
        match event {
            Event::Submit { id, outcome, .. } => {
                stories.entry(id).or_default().accepted |= outcome.is_accepted();
            }
            Event::Cancel {
                id,
                at,
                outcome: CancelOutcome::Canceled { record },
                ..
            } => stories.entry(id).or_default().cancels.push((*at, record)),
            Event::Delete {
                id,
                at,
                outcome: DeleteOutcome::Deleted { record },
            } => stories.entry(id).or_default().deletes.push((*at, record)),
            Event::Delete { id, outcome, .. } => {
                stories.entry(id).or_default().maybe_deleted |= outcome.may_have_deleted();
            }
            _ => {}
        }
    }
    stories
}

/// Applies the job rules to every id the log names.
pub(super) fn judge_jobs(evidence: &Evidence, findings: &mut Findings) {
    let mut results: HashMap<&str, Vec<&ResultMessage>> = HashMap::new();
    for result in &evidence.results {
        results.entry(&result.id).or_default().push(result);
    }
    let stories = stories(&evidence.events);
    findings.foreign_results = results.keys().filter(|id| !stories.contains_key(*id)).count();
    for (id, story) in &stories {
        let record = evidence.records.get(*id);
        let got = results.get(id).map(Vec::as_slice).unwrap_or_default();
        findings.duplicates += got.len().saturating_sub(1);
        if story.accepted {
            findings.accepted += 1;
        } else {
            findings.refused += 1;
        }
        let job = Job {
            id,
            story,
            record,
            results: got,
        };
        judge_job(job, &mut findings.violations);
        let terminal = record
            .filter(|r| r.status.is_terminal())
            .map(|r| r.status.as_str().to_string())
            .or_else(|| {
                story
                    .deletes
                    .first()
                    .and_then(|(_, r)| r["status"].as_str().map(String::from))
            });
        if let (true, Some(status)) = (story.accepted, terminal) {
            *findings.statuses.entry(status).or_default() += 1;
        }
    }
}

/// What the checker knows about one job.
struct Job<'a, 'e> {
    id: &'a str,
    story: &'a Story<'e>,
    record: Option<&'a JobRecord>,
    results: &'a [&'a ResultMessage],
}

fn judge_job(job: Job<'_, '_>, out: &mut Vec<Violation>) {
    out.extend(one_outcome(&job));
    out.extend(presence(&job));
    out.extend(no_start_after_cancel(&job));
    out.extend(nothing_after_delete(&job));
}

/// Every outcome anyone was told of must be the same one.
fn one_outcome(job: &Job<'_, '_>) -> Option<Violation> {
    let told = job
        .results
        .iter()
        .map(|r| Some(of_result(r)))
        .chain(std::iter::once(job.record.and_then(of_record)))
        .chain(job.story.cancels.iter().map(|(_, r)| of_json(r, "cancel answer")))
        .chain(
            job.story
                .deletes
                .iter()
                .map(|(_, r)| of_json(r, "read before delete")),
        );
    let mut outcomes: Vec<Outcome> = Vec::new();
    for outcome in told.flatten() {
        if !outcomes.iter().any(|o| o.same(&outcome)) {
            outcomes.push(outcome);
        }
    }
    (outcomes.len() > 1).then(|| Violation::Doubled {
        id: job.id.into(),
        outcomes: outcomes.iter().map(Outcome::describe).collect(),
    })
}

/// An ended record with a result message; an accepted job not deleted has a record.
fn presence(job: &Job<'_, '_>) -> Option<Violation> {
    let id = job.id.to_string();
    let may_be_deleted = !job.story.deletes.is_empty() || job.story.maybe_deleted;
    match job.record {
        Some(r) if !r.status.is_terminal() => Some(Violation::Stuck {
            id,
            record: format!(
                "{} attempts={} worker={}",
                r.status,
                r.attempts,
                r.worker.as_deref().unwrap_or("-")
            ),
            accepted: job.story.accepted,
        }),
        Some(r) if job.results.is_empty() => Some(Violation::Silent {
            id,
            status: r.status.to_string(),
        }),
        None if !may_be_deleted && job.story.accepted => Some(Violation::Lost {
            id,
            detail: match job.results.first() {
                None => "no record, no result message".into(),
                Some(r) => format!("record gone although never deleted; result said {}", r.status),
            },
        }),
        None if may_be_deleted && job.results.is_empty() => Some(Violation::Silent {
            id,
            status: "deleted after it ended".into(),
        }),
        _ => None,
    }
}

/// No attempt starts after the job's cancel was acknowledged.
fn no_start_after_cancel(job: &Job<'_, '_>) -> Option<Violation> {
    let acked_at = job.story.cancels.iter().map(|(at, _)| *at).min()?;
    let starts = job
        .record
        .and_then(|r| r.started_at)
        .map(|s| (s, "record"))
        .into_iter()
        .chain(
            job.results
                .iter()
                .filter_map(|r| r.started_at.map(|s| (s, "result"))),
        );
    let (started_at, source) = starts.filter(|(s, _)| *s > acked_at).max()?;
    Some(Violation::StartedAfterCancel {
        id: job.id.into(),
        acked_at,
        started_at,
        source,
    })
}

/// A deleted job neither runs again nor gets its record back.
fn nothing_after_delete(job: &Job<'_, '_>) -> Option<Violation> {
    let deleted_at = job.story.deletes.iter().map(|(at, _)| *at).min()?;
    let back = job
        .record
        .map(|r| format!("its record is back ({}, attempts {})", r.status, r.attempts));
    let rerun = job
        .results
        .iter()
        .filter_map(|r| r.started_at)
        .filter(|s| *s > deleted_at)
        .max()
        .map(|s| format!("an attempt started {} ms later", s - deleted_at));
    let detail: Vec<String> = back.into_iter().chain(rerun).collect();
    (!detail.is_empty()).then(|| Violation::Resurrected {
        id: job.id.into(),
        deleted_at,
        detail: detail.join("; "),
    })
}

/// A group whose jobs never crash on purpose may see failures from the faults (a killed
/// or frozen worker counts one per group it serves, as designed) but every such burst is
/// followed by finished jobs that reset the count; `max_failures` is set well above what
/// one fault can add. So a broken steady group, a steady job failed `group_broken`, or a
/// steady submit refused `group_broken` means the fleet counted its own faults as the
/// group's failures beyond what the design allows (for instance a takeover loop).
pub(super) fn judge_groups(evidence: &Evidence, rules: &Rules, findings: &mut Findings) {
    for group in &rules.steady_groups {
        let state = evidence.groups.iter().find(|g| &g.name == group);
        let broken_by = |g: &str, error: &Option<JobError>| {
            g == group && error.as_ref().is_some_and(|e| e.kind == ErrorKind::GroupBroken)
        };
        let failed = evidence
            .records
            .values()
            .filter(|r| broken_by(&r.group, &r.error))
            .count()
            + evidence
                .results
                .iter()
                .filter(|r| broken_by(&r.group, &r.error))
                .count();
        let refused = evidence
            .events
            .iter()
            .filter(|e| match e {
                Event::Submit {
                    group: g,
                    outcome: SubmitOutcome::Rejected { kind, .. },
                    ..
                } => g == group && kind == "group_broken",
                _ => false,
            })
            .count();
        let broken = state.is_some_and(|s| s.broken);
        if broken || failed > 0 || refused > 0 {
            let failures = state.map_or(0, |s| s.failures);
            findings.violations.push(Violation::GroupBroken {
                group: group.clone(),
                detail: format!(
                    "broken at the end: {broken} (failures {failures}); {failed} group_broken \
                     records/results; {refused} submits refused group_broken"
                ),
            });
        }
    }
}
