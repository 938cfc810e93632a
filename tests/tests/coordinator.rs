//! The coordinator's transitions against the real Redis: racing claims, fencing of stale
//! owners, takeover of a dead owner's job, hand-back, and the group failure policy.

use jobfleet_common::coordinator::{Claim, Completion, Copy, Outcome};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::now_ms;
use jobfleet_tests::TestEnv;
use serde_json::json;
use std::time::Duration;

fn next_token() -> String {
    jobfleet_common::message::new_job_id()
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
            c.claim(&job, &format!("w{w}"), Copy::Fresh, true, now_ms(), &next_token())
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
    let first = c
        .claim(&retried, "w", Copy::Fresh, true, now_ms(), "token-1")
        .await
        .unwrap();
    assert!(matches!(first, Claim::Run { attempts: 1, .. }));
    assert_eq!(
        c.claim(&retried, "w", Copy::Fresh, true, now_ms(), "token-1")
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        c.claim(&retried, "w", Copy::Fresh, true, now_ms(), "token-2")
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Started)
    );

    // Only the owner's attempt can end the job, and only once.
    assert_eq!(
        c.complete(&job, "intruder", 1, &finished(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Stale(Some(JobStatus::Started))
    );
    assert_eq!(
        c.complete(&job, &owner, 2, &finished(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Stale(Some(JobStatus::Started))
    );
    assert_eq!(
        c.complete(&job, &owner, 1, &finished(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Recorded
    );
    // The same attempt completing again is a retry after a lost reply: acknowledged, but
    // it changes nothing.
    assert_eq!(
        c.complete(&job, &owner, 1, &crashed(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Recorded
    );
    assert_eq!(
        c.complete(&job, "intruder", 1, &crashed(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Stale(Some(JobStatus::Finished))
    );
    let record = c.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.result.clone(), record.attempts),
        (JobStatus::Finished, Some(json!(1)), 1)
    );

    assert_eq!(
        c.claim(&job, "late", Copy::Fresh, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Finished)
    );
    match c
        .claim(&job, "late", Copy::Redelivered, true, now_ms(), &next_token())
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
            .arg(env.topology.job_key(&job.id))
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
            c.claim(&job, "alive", Copy::Fresh, false, now_ms(), &next_token())
                .await
                .unwrap(),
            Claim::Missing
        ),
        "a job without a record asks for its args"
    );
    assert!(matches!(
        c.claim(&job, "alive", Copy::Fresh, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 1, .. }
    ));
    c.heartbeat("alive", &json!({}), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        c.claim(&job, "other", Copy::Redelivered, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Hold
    );

    c.deregister("alive").await.unwrap();
    assert!(matches!(
        c.claim(&job, "other", Copy::Redelivered, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 2, .. }
    ));
    // The old owner's late outcome is fenced off.
    assert!(matches!(
        c.complete(&job, "alive", 1, &finished(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Stale(_)
    ));
    // A draining owner hands the job back; the next start is attempt 3.
    assert!(!c.requeue(&job.id, "alive", 1).await.unwrap());
    assert!(c.requeue(&job.id, "other", 2).await.unwrap());
    assert_eq!(c.job(&job.id).await.unwrap().unwrap().status, JobStatus::Queued);
    assert!(matches!(
        c.claim(&job, "third", Copy::Redelivered, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Run { attempts: 3, .. }
    ));
    assert_eq!(
        c.complete(&job, "third", 3, &finished(), 5, now_ms())
            .await
            .unwrap(),
        Completion::Recorded
    );
    // A parked copy meeting the ended job republishes only when the owner is gone.
    c.heartbeat("third", &json!({}), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        c.claim(&job, "other", Copy::Parked, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Drop(JobStatus::Finished)
    );
    c.deregister("third").await.unwrap();
    assert!(matches!(
        c.claim(&job, "other", Copy::Parked, true, now_ms(), &next_token())
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
        match c
            .claim(&job, "w", Copy::Fresh, true, now_ms(), &next_token())
            .await
            .unwrap()
        {
            Claim::Run { attempts, .. } => {
                c.complete(&job, "w", attempts, &outcome, 3, now_ms())
                    .await
                    .unwrap();
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
        .record_bad_message("b1", "default", "", "missing field `function`", now_ms())
        .await
        .unwrap());
    assert!(
        c.record_bad_message("b1", "default", "", "retried after a lost reply", now_ms())
            .await
            .unwrap(),
        "a retry publishes again"
    );
    let record = c.job("b1").await.unwrap().unwrap();
    assert_eq!(record.status, JobStatus::Failed);
    assert_eq!(record.error.unwrap().kind, ErrorKind::BadMessage);
    let running = JobMessage::new("default", "echo", json!(1));
    assert!(matches!(
        c.claim(&running, "w", Copy::Fresh, true, now_ms(), &next_token())
            .await
            .unwrap(),
        Claim::Run { .. }
    ));
    assert!(
        !c.record_bad_message(&running.id, "default", "", "late copy", now_ms())
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
            .arg(env.topology.job_key(&job.id))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(c.sweep_index(2_000, 2, 1_000).await.unwrap(), 4);
    let left: Vec<String> = jobfleet_common::redis::cmd("ZRANGE")
        .arg(format!("{}:index", env.namespace()))
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
    for retry in [false, true] {
        let job = JobMessage::new("default", "sleep", json!({"ms": 1}));
        assert!(matches!(
            c.claim(&job, "w", Copy::Fresh, true, now_ms(), &next_token())
                .await
                .unwrap(),
            Claim::Run { attempts: 1, .. }
        ));
        let cancel = JobError::new(ErrorKind::Canceled, "by request");
        assert!(matches!(
            c.end_early(&job.id, JobStatus::Canceled, &cancel, &[JobStatus::Started])
                .await
                .unwrap(),
            jobfleet_common::coordinator::EndEarly::Ended { .. }
        ));
        let ended = if retry {
            c.retry(&job, "w", 1, &JobError::function("x"), now_ms(), 5)
                .await
                .unwrap()
        } else {
            c.complete(&job, "w", 1, &crashed(), 5, now_ms()).await.unwrap()
        };
        match ended {
            Completion::Announce(record) => assert_eq!(record.status, JobStatus::Canceled),
            other => panic!("{other:?}"),
        }
        c.announced(&job.id).await.unwrap();
        let again = if retry {
            c.retry(&job, "w", 1, &JobError::function("x"), now_ms(), 5)
                .await
                .unwrap()
        } else {
            c.complete(&job, "w", 1, &crashed(), 5, now_ms()).await.unwrap()
        };
        assert_eq!(
            again,
            Completion::Stale(Some(JobStatus::Canceled)),
            "announced: nothing to publish"
        );
    }
}
