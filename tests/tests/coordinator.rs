//! The coordinator's transitions against the real Redis: racing claims, fencing of stale
//! owners, takeover of a dead owner's job, hand-back, and the group failure policy.

use jobfleet_common::coordinator::{
    AttemptKey, BadMessage, Claim, ClaimRequest, CompleteRequest, Completion, Coordinator, CoordinatorError,
    CopyKind, EndEarly, EndRequest, Forget, ListFilter, Outcome, RetryRequest, Submitted,
};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::now_ms;
use jobfleet_tests::TestEnv;
use serde_json::json;
use std::time::Duration;

fn next_token() -> String {
    jobfleet_common::message::new_job_id()
}

fn groups() -> Vec<String> {
    vec!["default".to_string()]
}

async fn claim(
    c: &Coordinator,
    job: &JobMessage,
    worker: &str,
    copy: CopyKind,
    with_args: bool,
    token: &str,
) -> Result<Claim, CoordinatorError> {
    let request = ClaimRequest {
        job,
        worker_id: worker,
        copy,
        with_args,
        now_ms: now_ms(),
        token,
        max_takeovers: 3,
        max_failures: 5,
        limits: &Default::default(),
    };
    c.claim(request).await
}

async fn complete(
    c: &Coordinator,
    job: &JobMessage,
    worker: &str,
    attempt: u32,
    outcome: &Outcome,
    max_failures: u32,
) -> Result<Completion, CoordinatorError> {
    let attempt = AttemptKey {
        job,
        worker_id: worker,
        attempt,
    };
    let request = CompleteRequest {
        attempt,
        outcome,
        max_failures,
        now_ms: now_ms(),
    };
    c.complete(request).await
}

async fn retry(
    c: &Coordinator,
    job: &JobMessage,
    worker: &str,
    attempt: u32,
    error: &JobError,
    max_failures: u32,
) -> Result<Completion, CoordinatorError> {
    let attempt = AttemptKey {
        job,
        worker_id: worker,
        attempt,
    };
    let request = RetryRequest {
        attempt,
        error,
        available_at_ms: now_ms(),
        max_failures,
    };
    c.retry(request).await
}

fn finished() -> Outcome {
    Outcome {
        status: JobStatus::Finished,
        result: Some(json!(1)),
        error: None,
        duration_ms: 3,
    }
}

fn crashed() -> Outcome {
    Outcome {
        status: JobStatus::Failed,
        result: None,
        error: Some(JobError::new(ErrorKind::Crashed, "boom")),
        duration_ms: 1,
    }
}

#[tokio::test]
async fn racing_claims_start_a_job_once_and_a_terminal_job_never_changes() {
    let env = TestEnv::new("claims");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "echo", json!({"x": 1}));
    assert_eq!(c.record_queued(std::slice::from_ref(&job)).await.unwrap(), 1);
    assert_eq!(
        c.record_queued(std::slice::from_ref(&job)).await.unwrap(),
        0,
        "a second record is refused"
    );
    assert_eq!(c.job(&job.id).await.unwrap().unwrap().status, JobStatus::Queued);

    let claims = futures::future::join_all((0..20).map(|w| {
        let c = c.clone();
        let job = job.clone();
        async move {
            claim(&c, &job, &format!("w{w}"), CopyKind::Fresh, true, &next_token())
                .await
                .unwrap()
        }
    }))
    .await;
    let runs: Vec<usize> = claims
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Claim::Run { attempts: 1, .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(runs.len(), 1, "{claims:?}");
    assert!(claims
        .iter()
        .filter(|c| !matches!(c, Claim::Run { .. }))
        .all(|c| *c == Claim::Drop(JobStatus::Started)));
    let owner = format!("w{}", runs[0]);
    // A claim retried after its reply was lost gets the same answer; another one does not.
    let retried = JobMessage::new("default", "echo", json!(2));
    let first = claim(c, &retried, "w", CopyKind::Fresh, true, "token-1")
        .await
        .unwrap();
    assert!(matches!(first, Claim::Run { attempts: 1, .. }));
    assert_eq!(
        claim(c, &retried, "w", CopyKind::Fresh, true, "token-1")
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        claim(c, &retried, "w", CopyKind::Fresh, true, "token-2")
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Started)
    );

    // Only the owner's attempt can end the job, and only once.
    assert_eq!(
        complete(c, &job, "intruder", 1, &finished(), 5).await.unwrap(),
        Completion::Stale(Some(JobStatus::Started))
    );
    assert_eq!(
        complete(c, &job, &owner, 2, &finished(), 5).await.unwrap(),
        Completion::Stale(Some(JobStatus::Started))
    );
    assert_eq!(
        complete(c, &job, &owner, 1, &finished(), 5).await.unwrap(),
        Completion::Recorded
    );
    // The same attempt completing again is a retry after a lost reply: acknowledged, but
    // it changes nothing.
    assert_eq!(
        complete(c, &job, &owner, 1, &crashed(), 5).await.unwrap(),
        Completion::Recorded
    );
    assert_eq!(
        complete(c, &job, "intruder", 1, &crashed(), 5).await.unwrap(),
        Completion::Stale(Some(JobStatus::Finished))
    );
    let record = c.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.result.clone(), record.attempts),
        (JobStatus::Finished, Some(json!(1)), 1)
    );

    assert_eq!(
        claim(c, &job, "late", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Finished)
    );
    match claim(c, &job, "late", CopyKind::Redelivered, true, &next_token())
        .await
        .unwrap()
    {
        Claim::Ended(ended) => assert_eq!(ended.to_result_message().unwrap().result, Some(json!(1))),
        other => panic!("a redelivered terminal job republishes its result, got {other:?}"),
    }
    let ttl: i64 = {
        let client = jobfleet_common::redis::Client::open(env.config.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        jobfleet_common::redis::cmd("TTL")
            .arg(env.coordinator.keys().job(&job.group, &job.id))
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    assert!(
        ttl > 0 && ttl <= 86400,
        "terminal records expire after the retention, ttl {ttl}"
    );
}

#[tokio::test]
async fn a_redelivered_job_is_held_while_its_owner_lives_and_taken_over_when_it_is_gone() {
    let env = TestEnv::new("takeover");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "sleep", json!({"ms": 1}));
    assert!(
        matches!(
            claim(c, &job, "alive", CopyKind::Fresh, false, &next_token())
                .await
                .unwrap(),
            Claim::Missing
        ),
        "a job without a record asks for its args"
    );
    assert!(matches!(
        claim(c, &job, "alive", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 1, .. }
    ));
    c.heartbeat("alive", &groups(), &json!({}), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        claim(c, &job, "other", CopyKind::Redelivered, true, &next_token())
            .await
            .unwrap(),
        Claim::Hold
    );

    c.deregister("alive", &groups()).await.unwrap();
    assert!(matches!(
        claim(c, &job, "other", CopyKind::Redelivered, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 2, .. }
    ));
    // The old owner's late outcome is fenced off.
    assert!(matches!(
        complete(c, &job, "alive", 1, &finished(), 5).await.unwrap(),
        Completion::Stale(_)
    ));
    // A draining owner hands the job back; the next start is attempt 3.
    assert!(!c
        .requeue(AttemptKey {
            job: &job,
            worker_id: "alive",
            attempt: 1
        })
        .await
        .unwrap());
    assert!(c
        .requeue(AttemptKey {
            job: &job,
            worker_id: "other",
            attempt: 2
        })
        .await
        .unwrap());
    assert_eq!(c.job(&job.id).await.unwrap().unwrap().status, JobStatus::Queued);
    assert!(matches!(
        claim(c, &job, "third", CopyKind::Redelivered, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 3, .. }
    ));
    assert_eq!(
        complete(c, &job, "third", 3, &finished(), 5).await.unwrap(),
        Completion::Recorded
    );
    // A parked copy meeting the ended job republishes only when the owner is gone.
    c.heartbeat("third", &groups(), &json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        claim(c, &job, "other", CopyKind::Parked, true, &next_token())
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Finished)
    );
    c.deregister("third", &groups()).await.unwrap();
    assert!(matches!(
        claim(c, &job, "other", CopyKind::Parked, true, &next_token())
            .await
            .unwrap(),
        Claim::Ended(_)
    ));
}

#[tokio::test]
async fn consecutive_crashes_break_the_group_and_a_reset_restores_it() {
    let env = TestEnv::new("policy");
    let c = &env.coordinator;
    let run = |outcome: Outcome| async move {
        let job = JobMessage::new("default", "crash", json!(null));
        match claim(c, &job, "w", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap()
        {
            Claim::Run { attempts, .. } => {
                complete(c, &job, "w", attempts, &outcome, 3).await.unwrap();
                None
            }
            Claim::Ended(record) => Some(*record),
            other => panic!("{other:?}"),
        }
    };
    assert!(run(crashed()).await.is_none());
    assert!(run(crashed()).await.is_none());
    assert!(run(finished()).await.is_none(), "a finished job resets the count");
    assert_eq!(c.group_health("default").await.unwrap(), (0, false));
    let own_error = Outcome {
        status: JobStatus::Failed,
        result: None,
        error: Some(JobError::function("mine")),
        duration_ms: 1,
    };
    assert!(run(own_error).await.is_none());
    assert_eq!(
        c.group_health("default").await.unwrap(),
        (0, false),
        "a function's own error does not count"
    );
    for _ in 0..3 {
        assert!(run(crashed()).await.is_none());
    }
    assert_eq!(c.group_health("default").await.unwrap(), (3, true));
    let failed_fast = run(finished())
        .await
        .expect("a broken group fails jobs at pickup");
    assert_eq!(failed_fast.status, JobStatus::Failed);
    assert_eq!(failed_fast.error.unwrap().kind, ErrorKind::GroupBroken);
    c.reset_group("default").await.unwrap();
    assert!(run(finished()).await.is_none());
}

#[tokio::test]
async fn an_undecodable_job_is_recorded_once_as_bad_message() {
    let env = TestEnv::new("badmsg");
    let c = &env.coordinator;
    assert!(c
        .record_bad_message(BadMessage {
            id: "b1",
            group: "default",
            function: "",
            reason: "missing field `function`",
            now_ms: now_ms()
        })
        .await
        .unwrap());
    assert!(
        c.record_bad_message(BadMessage {
            id: "b1",
            group: "default",
            function: "",
            reason: "retried after a lost reply",
            now_ms: now_ms()
        })
        .await
        .unwrap(),
        "a retry publishes again"
    );
    let record = c.job("b1").await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert_eq!(record.error.unwrap().kind, ErrorKind::BadMessage);
    let running = JobMessage::new("default", "echo", json!(1));
    assert!(matches!(
        claim(c, &running, "w", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { .. }
    ));
    assert!(
        !c.record_bad_message(BadMessage {
            id: &running.id,
            group: "default",
            function: "",
            reason: "late copy",
            now_ms: now_ms()
        })
        .await
        .unwrap(),
        "a started job is not overwritten"
    );
}

#[tokio::test]
async fn the_index_sweep_walks_past_live_records_to_remove_expired_ones() {
    let env = TestEnv::new("sweep");
    let c = &env.coordinator;
    let old: Vec<JobMessage> = (0..7)
        .map(|i| {
            let mut job = JobMessage::new("default", "echo", json!(i));
            job.submitted_at = Some(1_000 + i);
            job
        })
        .collect();
    c.record_queued(&old).await.unwrap();
    let fresh = JobMessage::new("default", "echo", json!("new"));
    c.record_queued(std::slice::from_ref(&fresh)).await.unwrap();
    // Records 0, 2, 4, 6 expire; 1, 3, 5 are still queued, interleaved with them.
    let client = jobfleet_common::redis::Client::open(env.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for job in old.iter().step_by(2) {
        let _: () = jobfleet_common::redis::cmd("DEL")
            .arg(env.coordinator.keys().job(&job.group, &job.id))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(c.sweep_index(2_000, 2, 1_000).await.unwrap(), 4);
    let left: Vec<String> = jobfleet_common::redis::cmd("ZRANGE")
        .arg(env.coordinator.keys().index("default"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut expected: Vec<String> = old.iter().skip(1).step_by(2).map(|j| j.id.clone()).collect();
    expected.push(fresh.id.clone());
    assert_eq!(left, expected, "live and recent entries stay, in order");
    assert_eq!(c.sweep_index(2_000, 2, 1_000).await.unwrap(), 0);
}

#[tokio::test]
async fn an_attempt_ending_after_an_unannounced_cancel_is_told_to_publish_it() {
    let env = TestEnv::new("announce");
    let c = &env.coordinator;
    for retried in [false, true] {
        let job = JobMessage::new("default", "sleep", json!({"ms": 1}));
        assert!(matches!(
            claim(c, &job, "w", CopyKind::Fresh, true, &next_token())
                .await
                .unwrap(),
            Claim::Run { attempts: 1, .. }
        ));
        let cancel = JobError::new(ErrorKind::Canceled, "by request");
        assert!(matches!(
            c.end_early(EndRequest {
                id: &job.id,
                group: None,
                status: JobStatus::Canceled,
                error: &cancel,
                allowed_from: &[JobStatus::Started]
            })
            .await
            .unwrap(),
            jobfleet_common::coordinator::EndEarly::Ended { .. }
        ));
        let ended = if retried {
            retry(c, &job, "w", 1, &JobError::function("x"), 5).await.unwrap()
        } else {
            complete(c, &job, "w", 1, &crashed(), 5).await.unwrap()
        };
        match ended {
            Completion::Announce(record) => {
                assert_eq!(record.status, JobStatus::Canceled);
                c.announced(&record.group, &record.id).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
        let again = if retried {
            retry(c, &job, "w", 1, &JobError::function("x"), 5).await.unwrap()
        } else {
            complete(c, &job, "w", 1, &crashed(), 5).await.unwrap()
        };
        assert_eq!(
            again,
            Completion::Stale(Some(JobStatus::Canceled)),
            "announced: nothing to publish"
        );
    }
}

#[tokio::test]
async fn lookups_by_id_and_listings_span_every_group_of_the_fleet() {
    let env = TestEnv::with_config("spread", "[groups.a.functions.echo]\n[groups.b.functions.echo]\n");
    let c = &env.coordinator;
    let jobs: Vec<JobMessage> = (0..10)
        .map(|i| {
            let mut job = JobMessage::new(if i % 3 == 0 { "a" } else { "b" }, "echo", json!(i));
            job.submitted_at = Some(1_000 + i / 2); // pairs share a score: ties break by id
            job
        })
        .collect();
    c.record_queued(&jobs).await.unwrap();
    for job in &jobs {
        assert_eq!(c.job(&job.id).await.unwrap().unwrap().group, job.group);
    }
    let mut expected: Vec<(i64, String)> = jobs
        .iter()
        .map(|j| (j.submitted_at.unwrap(), j.id.clone()))
        .collect();
    expected.sort_by(|x, y| y.cmp(x));

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = c.list(&ListFilter::default(), 3, cursor.as_ref()).await.unwrap();
        seen.extend(page.iter().map(|r| (r.submitted_at.unwrap(), r.id.clone())));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected, "newest first across groups, each job once");

    let only_a = ListFilter {
        group: Some("a".into()),
        ..ListFilter::default()
    };
    let (page, _) = c.list(&only_a, 100, None).await.unwrap();
    assert_eq!(page.len(), 4);
    assert!(page.iter().all(|r| r.group == "a"));
    let finished = ListFilter {
        status: Some(JobStatus::Finished),
        ..ListFilter::default()
    };
    assert!(c.list(&finished, 100, None).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn a_listing_pages_on_past_more_ties_than_one_index_read_holds() {
    // A batch submit gives its jobs one score; a page that ends inside such a run starts the
    // next one behind more entries of that score than one read of the index returns.
    let env = TestEnv::new("ties");
    let c = &env.coordinator;
    let jobs: Vec<JobMessage> = (0..700)
        .map(|i| {
            let mut job = JobMessage::new("default", "echo", json!(i));
            job.submitted_at = Some(if i < 600 { 2_000 } else { 1_000 });
            job
        })
        .collect();
    c.record_queued(&jobs).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let (page, next) = c
            .list(&ListFilter::default(), 450, cursor.as_ref())
            .await
            .unwrap();
        for record in page {
            assert!(seen.insert(record.id.clone()), "{} listed twice", record.id);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), jobs.len(), "every job listed once");
}

#[tokio::test]
async fn a_job_whose_workers_keep_dying_fails_crashed_after_the_takeover_limit() {
    let env = TestEnv::new("takeovers");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "crash", json!(null));
    assert!(matches!(
        claim(c, &job, "w0", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 1, .. }
    ));
    // Each worker dies with the job (no liveness key): the next one takes it over, 3 times.
    for w in 1..=3 {
        let (worker, token) = (format!("w{w}"), next_token());
        let verdict = claim(c, &job, &worker, CopyKind::Redelivered, true, &token).await;
        assert!(matches!(verdict.unwrap(), Claim::Run { .. }), "takeover {w}");
    }
    match claim(c, &job, "w4", CopyKind::Redelivered, true, &next_token())
        .await
        .unwrap()
    {
        Claim::Ended(record) => {
            assert_eq!(record.status, JobStatus::Failed);
            assert_eq!(record.error.unwrap().kind, ErrorKind::Crashed);
        }
        other => panic!("the fourth takeover fails the job, got {other:?}"),
    }
    assert_eq!(
        c.group_health("default").await.unwrap().0,
        1,
        "it counts as a group failure"
    );
    assert_eq!(c.running("default").await.unwrap(), 0);
}

#[tokio::test]
async fn a_deleted_or_long_expired_job_never_runs_from_a_late_copy() {
    let env = TestEnv::new("tombstone");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "echo", json!(1));
    assert!(matches!(
        claim(c, &job, "w", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { .. }
    ));
    complete(c, &job, "w", 1, &finished(), 5).await.unwrap();
    assert_eq!(c.forget(&job.id).await.unwrap(), Forget::Deleted);
    assert!(c.job(&job.id).await.unwrap().is_none(), "the record is gone");
    for copy in [CopyKind::Fresh, CopyKind::Redelivered, CopyKind::Parked] {
        let verdict = claim(c, &job, "late", copy, true, &next_token()).await.unwrap();
        assert_eq!(verdict, Claim::Gone, "{copy:?}");
    }
    assert!(c.job(&job.id).await.unwrap().is_none(), "no record comes back");

    // A copy with no record, submitted longer than the retention ago (24 h here).
    let mut old = JobMessage::new("default", "echo", json!(2));
    old.submitted_at = Some(now_ms() - 25 * 3600 * 1000);
    let verdict = claim(c, &old, "w", CopyKind::Fresh, true, &next_token())
        .await
        .unwrap();
    assert_eq!(verdict, Claim::Expired);
    assert!(c.job(&old.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_parked_copy_waits_while_its_live_owner_has_not_published_a_handed_off_result() {
    let env = TestEnv::new("parkedresult");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "sleep", json!({"ms": 1}));
    assert!(matches!(
        claim(c, &job, "owner", CopyKind::Fresh, true, &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 1, .. }
    ));
    c.heartbeat("owner", &groups(), &json!({}), Duration::from_secs(30))
        .await
        .unwrap();
    let attempt = AttemptKey {
        job: &job,
        worker_id: "owner",
        attempt: 1,
    };
    c.mark_handoff(attempt).await.unwrap();
    complete(c, &job, "owner", 1, &finished(), 5).await.unwrap();
    // Recorded but not yet published: the parked copy is the only copy left; keep it.
    let parked = || claim(c, &job, "other", CopyKind::Parked, true, "t");
    assert_eq!(parked().await.unwrap(), Claim::Hold);
    c.mark_published(&job.group, &job.id).await.unwrap();
    assert_eq!(parked().await.unwrap(), Claim::Drop(JobStatus::Finished));
    // Had the owner died unpublished, the parked copy publishes the result itself.
    c.deregister("owner", &groups()).await.unwrap();
    assert!(matches!(parked().await.unwrap(), Claim::Ended(_)));
}

#[tokio::test]
async fn a_canceled_job_is_not_forgotten_before_its_result_is_published() {
    let env = TestEnv::new("forgetowed");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "sleep", json!({"ms": 1}));
    c.record_queued(std::slice::from_ref(&job)).await.unwrap();
    let cancel = JobError::new(ErrorKind::Canceled, "by request");
    let request = EndRequest {
        id: &job.id,
        group: None,
        status: JobStatus::Canceled,
        error: &cancel,
        allowed_from: &[JobStatus::Queued],
    };
    assert!(matches!(
        c.end_early(request).await.unwrap(),
        EndEarly::Ended { .. }
    ));
    // The master could not publish the cancel's result yet: the record stays.
    match c.forget(&job.id).await.unwrap() {
        Forget::Unannounced(record) => assert_eq!(record.status, JobStatus::Canceled),
        other => panic!("{other:?}"),
    }
    assert!(c.job(&job.id).await.unwrap().is_some());
    c.announced(&job.group, &job.id).await.unwrap();
    assert_eq!(c.forget(&job.id).await.unwrap(), Forget::Deleted);
}

#[tokio::test]
async fn a_refused_submit_discards_only_its_own_record_never_one_another_caller_was_given() {
    let env = TestEnv::new("discard");
    let c = &env.coordinator;
    let submit_at = |job: &JobMessage, at: i64| {
        let mut job = job.clone();
        job.submitted_at = Some(at);
        job
    };
    let now = now_ms();

    // A refused submit whose record nobody else saw: discarded, idempotency key too.
    let alone = submit_at(&JobMessage::new("default", "echo", json!(1)), now);
    c.submit(&alone, Some("k-alone")).await.unwrap();
    c.submit(&alone, Some("k-alone")).await.unwrap(); // its own retry after a lost reply
    assert!(c.discard_refused(&alone, Some("k-alone")).await.unwrap());
    assert!(c.job(&alone.id).await.unwrap().is_none());
    let again = JobMessage::new("default", "echo", json!(1));
    assert_eq!(
        c.submit(&again, Some("k-alone")).await.unwrap(),
        Submitted::Created
    );

    // Another request (another master, a client's retry) was answered `existing` by id.
    let job = submit_at(&JobMessage::new("default", "echo", json!(2)), now);
    c.submit(&job, None).await.unwrap();
    let repeat = submit_at(&job, now + 5);
    assert_eq!(
        c.submit(&repeat, None).await.unwrap(),
        Submitted::Existing(job.id.clone())
    );
    assert!(!c.discard_refused(&job, None).await.unwrap());
    assert!(
        c.job(&job.id).await.unwrap().is_some(),
        "the other caller's job stays"
    );

    // ... or by idempotency key, under a new id.
    let keyed = submit_at(&JobMessage::new("default", "echo", json!(3)), now);
    c.submit(&keyed, Some("k-shared")).await.unwrap();
    let other = submit_at(&JobMessage::new("default", "echo", json!(3)), now + 5);
    assert_eq!(
        c.submit(&other, Some("k-shared")).await.unwrap(),
        Submitted::Existing(keyed.id.clone())
    );
    assert!(!c.discard_refused(&keyed, Some("k-shared")).await.unwrap());
    assert!(c.job(&keyed.id).await.unwrap().is_some());

    // A record that was claimed, or is another submit's (other time), stays as well.
    let claimed = submit_at(&JobMessage::new("default", "echo", json!(4)), now);
    c.submit(&claimed, None).await.unwrap();
    claim(c, &claimed, "w", CopyKind::Fresh, true, &next_token())
        .await
        .unwrap();
    assert!(!c.discard_refused(&claimed, None).await.unwrap());
    let theirs = submit_at(&JobMessage::new("default", "echo", json!(5)), now);
    c.submit(&theirs, None).await.unwrap();
    assert!(!c
        .discard_refused(&submit_at(&theirs, now - 1), None)
        .await
        .unwrap());
    assert!(c.job(&theirs.id).await.unwrap().is_some());
}

#[tokio::test]
async fn an_attempt_whose_complete_reply_was_lost_still_publishes_after_its_record_was_deleted() {
    let env = TestEnv::new("lostreply");
    let c = &env.coordinator;
    let job = JobMessage::new("default", "echo", json!(1));
    let verdict = claim(c, &job, "w", CopyKind::Fresh, true, &next_token())
        .await
        .unwrap();
    assert!(matches!(verdict, Claim::Run { .. }));
    // The worker's complete runs, its reply is lost (a pause, a cut), the caller deletes
    // the ended record, and the worker retries its complete.
    assert_eq!(
        complete(c, &job, "w", 1, &finished(), 5).await.unwrap(),
        Completion::Recorded
    );
    assert_eq!(c.forget(&job.id).await.unwrap(), Forget::Deleted);
    assert_eq!(
        complete(c, &job, "w", 1, &finished(), 5).await.unwrap(),
        Completion::Recorded,
        "the attempt that ended the job learns it did, and publishes its result"
    );
    // Any other attempt stays stale: it never ended the job.
    assert!(matches!(
        complete(c, &job, "other", 1, &finished(), 5).await.unwrap(),
        Completion::Stale(_)
    ));
    assert!(matches!(
        complete(c, &job, "w", 2, &finished(), 5).await.unwrap(),
        Completion::Stale(_)
    ));
    assert!(c.job(&job.id).await.unwrap().is_none(), "no record comes back");
}

/// A job a foreign producer published straight to AMQP has no record until its claim: the
/// record the claim creates keeps the message's priority, so a copy published later from
/// the record (a held job released, the corrector) keeps its place in the priority queue.
#[tokio::test]
async fn a_record_created_by_a_claim_keeps_the_messages_priority() {
    let env = TestEnv::new("claimprio");
    let c = &env.coordinator;
    c.set_paused("default", true).await.unwrap();
    let job = JobMessage::new("default", "echo", json!("urgent")).with_priority(7);
    let held = claim(c, &job, "w1", CopyKind::Fresh, true, "w1:1").await.unwrap();
    assert!(matches!(held, Claim::Waiting(_)), "{held:?}");
    let record = c.job(&job.id).await.unwrap().expect("the claim's record");
    assert_eq!((record.status, record.priority), (JobStatus::Queued, Some(7)));
    assert_eq!(record.to_job_message().priority, Some(7));
}
