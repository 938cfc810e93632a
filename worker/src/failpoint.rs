//! Fail points: named places where a test makes the worker wait, to open a race window on
//! purpose (the `fail` crate, TiKV's fail points). They exist only with the `failpoints`
//! feature, which the end-to-end tests turn on; in every other build a point is nothing.

/// Before an attempt settles its outcome (after its function returned, before the
/// outcome is recorded and published).
pub(crate) const BEFORE_SETTLE: &str = "worker-before-settle";

/// Waits at the point `name` for as many milliseconds as a test configured it to return
/// (`fail::cfg(name, "return(1500)")`); does nothing when it is not configured.
#[cfg(feature = "failpoints")]
pub(crate) async fn pause(name: &str) {
    let configured = || -> Option<u64> {
        fail::fail_point!(name, |arg| arg.and_then(|ms| ms.parse().ok()));
        None
    };
    if let Some(ms) = configured() {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Without the `failpoints` feature a point is nothing.
#[cfg(not(feature = "failpoints"))]
pub(crate) async fn pause(_name: &str) {}
