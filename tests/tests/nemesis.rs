//! The fault-injection suite's short seeded run: a mixed workload against real worker and
//! master processes while the nemesis kills, freezes and restarts them and the services,
//! then the independent checker. Every violation it finds fails the test with the job ids,
//! what happened and the faults around it. `JOBFLEET_NEMESIS_SEED` picks another seed.

use jobfleet_tests::nemesis::{self, faults::FaultKind, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_run_under_faults_keeps_every_job_to_one_outcome() {
    let seed = std::env::var("JOBFLEET_NEMESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let report = nemesis::run(&Settings::short(seed)).await;
    println!("{}", report.figures());

    // The run itself must have done its job before its verdict means anything.
    for kind in FaultKind::ALL {
        assert!(
            report.faults.contains_key(&kind),
            "the nemesis never injected {kind:?}:\n{report}"
        );
    }
    assert!(
        report.findings.accepted >= 100,
        "too few jobs to judge:\n{report}"
    );
    assert!(report.passed(), "the checker found violations:\n{report}");
    let _ = std::fs::remove_dir_all(&report.dir);
}
