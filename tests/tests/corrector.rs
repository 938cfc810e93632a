//! The run-record corrector: records left `queued` with no message anywhere (a submit whose
//! reply was lost after the record was written) or `started` by a worker that died with no
//! copy of its message left are repaired within the bound: the job runs and ends once.

use jobfleet_common::coordinator::{Claim, ClaimRequest, CopyKind, EndEarly, EndRequest, Forget, Submitted};
use jobfleet_common::message::{ErrorKind, JobError, JobMessage, JobStatus};
use jobfleet_common::now_ms;
use jobfleet_tests::{eventually, TestEnv};
use serde_json::json;
use std::time::Duration;

const FLEET: &str = r#"
corrector_bound = "2s"
[groups.default.functions.echo]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranded_queued_and_orphaned_started_records_are_republished_and_end_once() {
    let mut env = TestEnv::with_config("corrector", FLEET);
    env.start_master().await;
    env.start_worker(env.worker().concurrency(2)).await;
    let c = env.coordinator.clone();

    // Recorded as queued, but its message was never published.
    let lost = JobMessage::new("default", "echo", json!({"lost": true}));
    assert_eq!(c.submit(&lost, None).await.unwrap(), Submitted::Created);
    // Started by a worker that died (it has no liveness key) and took the message with it.
    let orphan = JobMessage::new("default", "echo", json!({"orphan": true}));
    c.record_queued(std::slice::from_ref(&orphan)).await.unwrap();
    let claim = c
        .claim(ClaimRequest {
            job: &orphan,
            worker_id: "ghost",
            copy: CopyKind::Fresh,
            with_args: false,
            now_ms: now_ms(),
            token: "ghost-1",
            max_takeovers: 3,
            max_failures: 5,
            limits: &Default::default(),
        })
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Run { attempts: 1, .. }));

    for (job, attempts) in [(&lost, 1), (&orphan, 2)] {
        let record = eventually(Duration::from_secs(30), || async {
            let record = c.job(&job.id).await.ok().flatten()?;
            record.status.is_terminal().then_some(record)
        })
        .await;
        assert_eq!(record.status, JobStatus::Finished, "{record:?}");
        assert_eq!(record.result, Some(job.args.clone()));
        assert_eq!(record.attempts, attempts, "{}", job.id);
    }
    env.stop_workers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_master_owes_for_a_job_with_no_message_is_published_within_the_bound() {
    let mut env = TestEnv::with_config("corrector-owed", FLEET);
    let c = env.coordinator.clone();
    let mut results = env.subscriber(&["#"]).await;
    // A submit whose message was never published (refused after another request was
    // answered `existing`), then a cancel whose result the master could not publish (the
    // broker was down): no worker will ever meet a copy of this job.
    let job = JobMessage::new("default", "echo", json!({"owed": true}));
    assert_eq!(c.submit(&job, None).await.unwrap(), Submitted::Created);
    let cancel = JobError::new(ErrorKind::Canceled, "canceled by request");
    let ended = c
        .end_early(EndRequest {
            id: &job.id,
            group: None,
            status: JobStatus::Canceled,
            error: &cancel,
            allowed_from: &[JobStatus::Queued],
        })
        .await
        .unwrap();
    assert!(matches!(ended, EndEarly::Ended { .. }));
    assert!(matches!(c.forget(&job.id).await.unwrap(), Forget::Unannounced(_)));

    env.start_master().await;
    let result = tokio::time::timeout(Duration::from_secs(30), results.next())
        .await
        .expect("the owed result within the bound")
        .unwrap();
    assert_eq!(
        (result.id.as_str(), result.status),
        (job.id.as_str(), JobStatus::Canceled)
    );
    // Published and marked so: the record can be deleted now.
    eventually(Duration::from_secs(10), || async {
        (c.forget(&job.id).await.ok()? == Forget::Deleted).then_some(())
    })
    .await;
}
