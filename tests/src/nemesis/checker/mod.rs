//! The independent checker: it judges a run only from what it can see outside the fleet
//! (the workload's log, the result messages on `NS.results`, and Redis read directly, not
//! through the proxies) and lists every broken invariant. [`gather`] collects the evidence
//! once the faults stopped; [`judge`] is pure, so its rules are unit-tested.

mod gather;
mod jobs;
mod keys;
#[cfg(test)]
mod tests;

pub use gather::{gather, ResultLog, Sources};

use super::history::Event;
use jobfleet_common::coordinator::JobRecord;
use jobfleet_common::message::ResultMessage;
use std::collections::HashMap;
use std::fmt;

/// A key of the namespace as the scan found it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// Its time to live in ms; `None` without an expiry.
    pub ttl_ms: Option<i64>,
    /// For a job record, its `status` field.
    pub status: Option<String>,
}

/// An entry of a group's `queued` or `running` set with the status of its record.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The set's key.
    pub key: String,
    /// The job id.
    pub id: String,
    /// The record's status, `None` without a record.
    pub status: Option<String>,
}

/// A group's failure policy state at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    /// The group.
    pub name: String,
    /// Consecutive infrastructure failures.
    pub failures: u32,
    /// Whether it is broken.
    pub broken: bool,
}

/// Everything the checker looked at.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The workload's log.
    pub events: Vec<Event>,
    /// Every result message received, duplicates included.
    pub results: Vec<ResultMessage>,
    /// The records that exist at the end, by id.
    pub records: HashMap<String, JobRecord>,
    /// Every key of the namespace.
    pub keys: Vec<KeyInfo>,
    /// Every entry of the groups' `queued` and `running` sets.
    pub members: Vec<Member>,
    /// Registry entries whose worker's liveness key is gone (dead, not reaped).
    pub unreaped: Vec<String>,
    /// The groups' failure policy state.
    pub groups: Vec<GroupState>,
    /// The key names to classify keys with.
    pub key_names: Option<jobfleet_common::coordinator::Keys>,
}

/// What the checker holds the run to.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Groups whose jobs never crash on purpose: the nemesis alone must not break them.
    pub steady_groups: Vec<String>,
    /// Every group of the fleet.
    pub groups: Vec<String>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// An accepted job without any terminal outcome (no record, no result), or whose
    /// record vanished although nobody deleted it.
    Lost {
        /// The job.
        id: String,
        /// What is missing.
        detail: String,
    },
    /// Two different outcomes for one id (results, record, the answers of a cancel or the
    /// record read before a delete).
    Doubled {
        /// The job.
        id: String,
        /// The distinct outcomes seen.
        outcomes: Vec<String>,
    },
    /// A record still `queued` or `started` after the faults stopped plus the bound.
    Stuck {
        /// The job.
        id: String,
        /// Its record's status, attempts and worker.
        record: String,
        /// Whether any submission of it was accepted (else: a refused submit left it).
        accepted: bool,
    },
    /// A terminal job without any result message.
    Silent {
        /// The job.
        id: String,
        /// Its terminal status.
        status: String,
    },
    /// An attempt started after the cancel of the job was acknowledged.
    StartedAfterCancel {
        /// The job.
        id: String,
        /// When the cancel's 200 arrived.
        acked_at: i64,
        /// The later start.
        started_at: i64,
        /// Where the start was seen (`record`, `result`).
        source: &'static str,
    },
    /// A deleted (ended) job ran again or its record came back.
    Resurrected {
        /// The job.
        id: String,
        /// When the delete was acknowledged.
        deleted_at: i64,
        /// What came back.
        detail: String,
    },
    /// A key without an expiry that is not a live structure.
    KeyWithoutExpiry {
        /// The key.
        key: String,
        /// Why it should expire.
        why: String,
    },
    /// A `queued`/`running` set entry whose record is ended or gone.
    StaleMember {
        /// The set.
        key: String,
        /// The entry.
        id: String,
        /// The record's status (`none` without one).
        status: String,
    },
    /// A registry entry of a dead worker nobody reaped.
    Unreaped {
        /// The worker id.
        worker: String,
    },
    /// A group without intentional crashes that the faults broke.
    GroupBroken {
        /// The group.
        group: String,
        /// What shows it.
        detail: String,
    },
}

impl Violation {
    /// The category, as the report counts them.
    pub fn category(&self) -> &'static str {
        match self {
            Violation::Lost { .. } => "lost",
            Violation::Doubled { .. } => "doubled",
            Violation::Stuck { .. } => "stuck",
            Violation::Silent { .. } => "silent (terminal, no result message)",
            Violation::StartedAfterCancel { .. } => "started after cancel ack",
            Violation::Resurrected { .. } => "ran again after delete",
            Violation::KeyWithoutExpiry { .. } => "key without expiry",
            Violation::StaleMember { .. } => "stale queued/running entry",
            Violation::Unreaped { .. } => "unreaped dead worker",
            Violation::GroupBroken { .. } => "group broken by infrastructure faults",
        }
    }

    /// The job concerned, if it is about one.
    pub fn job(&self) -> Option<&str> {
        match self {
            Violation::Lost { id, .. }
            | Violation::Doubled { id, .. }
            | Violation::Stuck { id, .. }
            | Violation::Silent { id, .. }
            | Violation::StartedAfterCancel { id, .. }
            | Violation::Resurrected { id, .. } => Some(id),
            Violation::StaleMember { id, .. } => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Lost { id, detail } => write!(f, "{id}: lost ({detail})"),
            Violation::Doubled { id, outcomes } => {
                write!(f, "{id}: {} outcomes: {}", outcomes.len(), outcomes.join(" | "))
            }
            Violation::Stuck { id, record, accepted } => {
                let how = if *accepted {
                    "accepted"
                } else {
                    "submit refused/unanswered"
                };
                write!(f, "{id}: stuck {record} ({how})")
            }
            Violation::Silent { id, status } => write!(f, "{id}: {status} but no result message"),
            Violation::StartedAfterCancel {
                id,
                acked_at,
                started_at,
                source,
            } => write!(
                f,
                "{id}: cancel acked at {acked_at}, {source} says started at {started_at} (+{} ms)",
                started_at - acked_at
            ),
            Violation::Resurrected {
                id,
                deleted_at,
                detail,
            } => {
                write!(f, "{id}: deleted at {deleted_at}, then {detail}")
            }
            Violation::KeyWithoutExpiry { key, why } => write!(f, "{key}: no expiry ({why})"),
            Violation::StaleMember { key, id, status } => {
                write!(f, "{key} holds {id} whose record is {status}")
            }
            Violation::Unreaped { worker } => write!(f, "registry keeps dead worker {worker}"),
            Violation::GroupBroken { group, detail } => write!(f, "group {group}: {detail}"),
        }
    }
}

/// The checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Every broken invariant.
    pub violations: Vec<Violation>,
    /// Accepted jobs (distinct ids).
    pub accepted: usize,
    /// Ids whose every submission was refused or unanswered.
    pub refused: usize,
    /// Extra result messages with the same content as the first (allowed).
    pub duplicates: usize,
    /// Result messages for ids the log does not know.
    pub foreign_results: usize,
    /// Terminal statuses of the accepted jobs.
    pub statuses: HashMap<String, usize>,
}

impl Findings {
    /// How many violations of `category`.
    pub fn count(&self, category: &str) -> usize {
        self.violations
            .iter()
            .filter(|v| v.category() == category)
            .count()
    }
}

/// Judges the evidence.
pub fn judge(evidence: &Evidence, rules: &Rules) -> Findings {
    let mut findings = Findings::default();
    jobs::judge_jobs(evidence, &mut findings);
    jobs::judge_groups(evidence, rules, &mut findings);
    keys::judge_keys(evidence, rules, &mut findings);
    findings
}
