//! The checker's rules on hand-made evidence: each rule flags its violation and lets the
//! allowed cases (same-content duplicates, live keys, crashes in the crashy group) pass.

use super::*;
use crate::nemesis::history::{CancelOutcome, DeleteOutcome, SubmitOutcome, Via};
use jobfleet_common::coordinator::Keys;
use jobfleet_common::message::{ErrorKind, JobError, JobStatus};
use serde_json::{json, Value};

fn submit(id: &str, outcome: SubmitOutcome) -> Event {
    Event::Submit {
        id: id.into(),
        group: "steady".into(),
        function: "echo".into(),
        via: Via::Http,
        sent_at: 1000,
        at: 1010,
        outcome,
        unanswered: Vec::new(),
    }
}

/// The delete of job `a` at 4000 with `outcome`.
fn delete(outcome: DeleteOutcome) -> Event {
    Event::Delete {
        id: "a".into(),
        at: 4000,
        outcome,
    }
}

fn record(id: &str, status: JobStatus, started_at: Option<i64>) -> JobRecord {
    JobRecord {
        id: id.into(),
        group: "steady".into(),
        function: "echo".into(),
        status,
        args: Value::Null,
        result: (status == JobStatus::Finished).then(|| json!({"ok": 1})),
        error: (status == JobStatus::Canceled)
            .then(|| JobError::new(ErrorKind::Canceled, "canceled by request")),
        attempts: 1,
        worker: Some("w".into()),
        submitted_at: Some(1000),
        started_at,
        finished_at: Some(3000),
        duration_ms: Some(1),
        timeout_ms: None,
        progress: None,
        run_at: None,
        retry_of: None,
        traceparent: None,
        priority: None,
        member: Default::default(),
    }
}

fn result_of(record: &JobRecord) -> ResultMessage {
    record.to_result_message().expect("a terminal record")
}

fn rules() -> Rules {
    Rules {
        steady_groups: vec!["steady".into()],
        groups: vec!["steady".into(), "crashy".into()],
    }
}

fn evidence(events: Vec<Event>, records: Vec<JobRecord>, results: Vec<ResultMessage>) -> Evidence {
    Evidence {
        events,
        records: records.into_iter().map(|r| (r.id.clone(), r)).collect(),
        results,
        key_names: Some(Keys::new("ns")),
        ..Evidence::default()
    }
}

fn categories(findings: &Findings) -> Vec<&'static str> {
    findings.violations.iter().map(Violation::category).collect()
}

#[test]
fn same_content_duplicates_are_counted_not_flagged() {
    let done = record("a", JobStatus::Finished, Some(1500));
    let e = evidence(
        vec![submit("a", SubmitOutcome::Accepted)],
        vec![done.clone()],
        vec![result_of(&done), result_of(&done)],
    );
    let findings = judge(&e, &rules());
    assert!(findings.violations.is_empty(), "{:?}", findings.violations);
    assert_eq!((findings.accepted, findings.duplicates), (1, 1));
}

#[test]
fn a_finished_run_after_an_acknowledged_cancel_is_two_outcomes_and_a_late_start() {
    let canceled = record("a", JobStatus::Canceled, None);
    let answer = json!({"id": "a", "status": "canceled",
                        "error": {"kind": "canceled", "message": "canceled by request"}});
    let mut rerun = record("a", JobStatus::Finished, Some(2500));
    rerun.error = None;
    let e = evidence(
        vec![
            submit("a", SubmitOutcome::Accepted),
            Event::Cancel {
                id: "a".into(),
                sent_at: 1900,
                at: 2000,
                outcome: CancelOutcome::Canceled { record: answer },
            },
        ],
        vec![rerun.clone()],
        vec![result_of(&canceled), result_of(&rerun)],
    );
    let found = categories(&judge(&e, &rules()));
    assert!(found.contains(&"doubled"), "{found:?}");
    assert!(found.contains(&"started after cancel ack"), "{found:?}");
}

#[test]
fn a_deleted_job_whose_record_comes_back_ran_again() {
    let done = record("a", JobStatus::Finished, Some(1500));
    let e = evidence(
        vec![
            submit("a", SubmitOutcome::Accepted),
            delete(DeleteOutcome::Deleted {
                record: json!({"id": "a", "status": "finished", "result": {"ok": 1}}),
            }),
        ],
        vec![record("a", JobStatus::Finished, Some(5000))],
        vec![result_of(&done)],
    );
    assert_eq!(categories(&judge(&e, &rules())), vec!["ran again after delete"]);
}

#[test]
fn lost_stuck_and_silent_jobs_are_told_apart() {
    let e = evidence(
        vec![
            submit("lost", SubmitOutcome::Accepted),
            submit(
                "stranded",
                SubmitOutcome::Rejected {
                    status: 503,
                    kind: "unavailable".into(),
                },
            ),
            submit("quiet", SubmitOutcome::Accepted),
            submit(
                "refused",
                SubmitOutcome::Rejected {
                    status: 503,
                    kind: "unavailable".into(),
                },
            ),
        ],
        vec![
            record("stranded", JobStatus::Queued, None),
            record("quiet", JobStatus::Finished, Some(1500)),
        ],
        vec![],
    );
    let findings = judge(&e, &rules());
    let mut found = categories(&findings);
    found.sort();
    assert_eq!(
        found,
        vec!["lost", "silent (terminal, no result message)", "stuck"]
    );
    assert!(findings.violations.contains(&Violation::Stuck {
        id: "stranded".into(),
        record: "queued attempts=1 worker=w".into(),
        accepted: false,
    }));
}

#[test]
fn only_steady_groups_must_stay_unbroken() {
    let mut e = evidence(vec![], vec![], vec![]);
    e.groups = vec![
        GroupState {
            name: "steady".into(),
            failures: 10,
            broken: true,
        },
        GroupState {
            name: "crashy".into(),
            failures: 7,
            broken: true,
        },
    ];
    let findings = judge(&e, &rules());
    assert_eq!(
        categories(&findings),
        vec!["group broken by infrastructure faults"]
    );
}

#[test]
fn keys_without_expiry_are_allowed_only_for_live_structures() {
    let keys = Keys::new("ns");
    let key = |key: String, ttl_ms: Option<i64>, status: Option<&str>| KeyInfo {
        key,
        ttl_ms,
        status: status.map(String::from),
    };
    let mut e = evidence(vec![], vec![], vec![]);
    e.keys = vec![
        key(keys.job("steady", "live"), None, Some("started")),
        key(keys.job("steady", "ended"), None, Some("finished")),
        key(keys.job("steady", "kept"), Some(1000), Some("finished")),
        key(keys.index("steady"), None, None),
        key(keys.workers(), None, None),
        key(keys.idempotency("steady", "k"), None, None),
        key("ns:{steady}:mystery".into(), None, None),
    ];
    e.members = vec![Member {
        key: keys.running("steady"),
        id: "ended".into(),
        status: Some("finished".into()),
    }];
    let findings = judge(&e, &rules());
    let flagged: Vec<String> = findings.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(flagged.len(), 4, "{flagged:#?}");
    assert!(flagged[0].starts_with("ns:{steady}:job:ended"), "{flagged:#?}");
    assert!(flagged[1].starts_with("ns:{steady}:idem:k"), "{flagged:#?}");
    assert!(flagged[2].starts_with("ns:{steady}:mystery"), "{flagged:#?}");
    assert!(flagged[3].contains("holds ended"), "{flagged:#?}");
}

#[test]
fn a_delete_without_a_clear_answer_may_have_deleted() {
    let done = record("a", JobStatus::Finished, Some(1500));
    let e = evidence(
        vec![
            submit("a", SubmitOutcome::Accepted),
            delete(DeleteOutcome::Refused { status: 503 }),
        ],
        vec![],
        vec![result_of(&done)],
    );
    assert!(judge(&e, &rules()).violations.is_empty());
}
