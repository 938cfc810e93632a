//! The stall watchdog of a broker session: notices a consumer the broker stopped
//! delivering to while jobs wait in its queues, or a broker that stops answering, so the
//! worker reconnects.

use crate::error::WorkerError;
use std::time::Duration;
use tokio::time::{Instant, Interval};

/// Idle checks in a row that find jobs waiting after which the session counts as stalled.
const STALLED_CHECKS: u32 = 2;

/// The shortest time a session may take to start before it counts as stalled.
const MIN_SETUP_BOUND: Duration = Duration::from_secs(5);

/// How long a broker session may take to start (declare, consume) before it counts as
/// stalled: as long as a running session may go without noticing a stall, at least 5 s.
pub(crate) fn setup_bound(every: Duration) -> Duration {
    (every * STALLED_CHECKS).max(MIN_SETUP_BOUND)
}

/// Checks every `every` whether an idle session has jobs waiting that are not delivered.
pub(crate) struct StallWatchdog {
    every: Duration,
    ticks: Interval,
    last_delivery: Instant,
    stalled_checks: u32,
}

impl StallWatchdog {
    /// A watchdog that checks every `every`, the first time after `every`.
    pub(crate) fn new(every: Duration) -> StallWatchdog {
        let now = Instant::now();
        StallWatchdog {
            every,
            ticks: tokio::time::interval_at(now + every, every),
            last_delivery: now,
            stalled_checks: 0,
        }
    }

    /// Waits for the next check.
    pub(crate) async fn tick(&mut self) {
        self.ticks.tick().await;
    }

    /// Notes a delivery: the session is alive.
    pub(crate) fn delivered(&mut self) {
        self.last_delivery = Instant::now();
    }

    /// Whether nothing was delivered for a whole check interval.
    pub(crate) fn idle(&self) -> bool {
        self.last_delivery.elapsed() >= self.every
    }

    /// Takes a check's count of jobs `waiting` undelivered (0 when the session was not
    /// idle); an error once the session counts as stalled.
    pub(crate) fn check(&mut self, waiting: u64) -> Result<(), WorkerError> {
        self.stalled_checks = if waiting > 0 { self.stalled_checks + 1 } else { 0 };
        if self.stalled_checks >= STALLED_CHECKS {
            return Err(WorkerError::Stalled(format!(
                "{waiting} jobs wait in the queues but none were delivered for {:?}",
                self.last_delivery.elapsed()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stalls_after_two_checks_in_a_row_with_jobs_waiting() {
        let mut watchdog = StallWatchdog::new(Duration::from_secs(15));
        assert!(watchdog.check(3).is_ok(), "one check is not a stall");
        assert!(watchdog.check(0).is_ok(), "an empty queue resets the count");
        assert!(watchdog.check(3).is_ok());
        let stalled = watchdog.check(3).expect_err("two checks in a row stall");
        assert!(matches!(stalled, WorkerError::Stalled(_)), "{stalled:?}");
    }

    #[test]
    fn a_session_may_take_two_check_intervals_to_start_and_at_least_five_seconds() {
        assert_eq!(setup_bound(Duration::from_secs(15)), Duration::from_secs(30));
        assert_eq!(setup_bound(Duration::from_millis(300)), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn idle_after_a_quiet_interval() {
        let mut watchdog = StallWatchdog::new(Duration::from_millis(20));
        assert!(!watchdog.idle());
        watchdog.tick().await;
        assert!(watchdog.idle(), "no delivery for the whole interval");
        watchdog.delivered();
        assert!(!watchdog.idle());
    }
}
