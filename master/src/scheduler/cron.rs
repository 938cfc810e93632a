//! Firing the cron schedules (SPEC §9), a leader duty. Each firing is recorded as a job
//! with the id `<name>:<fire time>`, due at once in its group's delayed set, so that the
//! same tick publishes it (and a leader that dies between recording and publishing leaves
//! it for the next). Two masters firing the same time get the one job (the second submit
//! answers `existing`), and the schedule's last fire time only moves forward. Missed fire
//! times follow [`Timing::to_fire`](jobfleet_common::schedule::Timing::to_fire).

use crate::state::AppState;
use jobfleet_common::coordinator::{CoordinatorError, NewJob, Submitted};
use jobfleet_common::message::JobMessage;
use jobfleet_common::now_ms;
use jobfleet_common::schedule::{firing_id, ScheduleConfig};
use std::collections::HashMap;
use tracing::{info, warn};

/// The schedules' firing state between ticks.
#[derive(Debug, Default)]
pub struct Firing {
    /// When this master first saw each config-file schedule that never fired: it fires
    /// for times after that.
    first_seen: HashMap<String, i64>,
}

impl Firing {
    /// Fires every schedule whose time has come. Returns how many jobs were fired.
    pub async fn fire_due(&mut self, state: &AppState) -> Result<usize, CoordinatorError> {
        let now = now_ms();
        let mut fired = state.coordinator.fired().await?;
        let mut count = 0;
        for (name, schedule, since) in self.schedules(state, now).await? {
            let timing = match schedule.timing() {
                Ok(timing) => timing,
                Err(e) => {
                    warn!(schedule = %name, error = %e, "schedule cannot fire");
                    continue;
                }
            };
            let last = fired.remove(&name).unwrap_or(since);
            for fire_ms in timing.to_fire(last, now) {
                count += usize::from(fire(state, &name, &schedule, fire_ms).await?);
                state.coordinator.advance_fired(&name, fire_ms).await?;
            }
        }
        Ok(count)
    }

    /// Every schedule with the time it fires after when it never fired: the config file's
    /// (since this master first saw it) and the API's (since its creation; a name the
    /// config file uses is the file's).
    async fn schedules(
        &mut self,
        state: &AppState,
        now: i64,
    ) -> Result<Vec<(String, ScheduleConfig, i64)>, CoordinatorError> {
        let mut all: Vec<(String, ScheduleConfig, i64)> = state
            .config
            .schedules
            .iter()
            .map(|(name, schedule)| {
                let since = *self.first_seen.entry(name.clone()).or_insert(now);
                (name.clone(), schedule.clone(), since)
            })
            .collect();
        for (name, stored) in state.coordinator.stored_schedules().await? {
            if !state.config.schedules.contains_key(&name) {
                all.push((name, stored.schedule, stored.created_at));
            }
        }
        Ok(all)
    }
}

/// Records the firing of `name` for `fire_ms` as a job due now; whether it was new.
async fn fire(
    state: &AppState,
    name: &str,
    schedule: &ScheduleConfig,
    fire_ms: i64,
) -> Result<bool, CoordinatorError> {
    let job = JobMessage {
        id: firing_id(name, fire_ms),
        group: schedule.group.clone(),
        function: schedule.function.clone(),
        args: schedule.args.clone(),
        submitted_at: Some(now_ms()),
        timeout_ms: None,
        run_at: Some(fire_ms),
        delay_ms: None,
        priority: None,
        member: Default::default(),
    };
    let fields = [("schedule", name)];
    let new = NewJob {
        job: &job,
        idempotency_key: None,
        delay_until: Some(fire_ms),
        fields: &fields,
    };
    match state.coordinator.submit_job(new).await? {
        Submitted::Created => {
            state.metrics.schedule_firings.with_label_values(&[name]).inc();
            info!(schedule = %name, job_id = %job.id, "schedule fired");
            Ok(true)
        }
        Submitted::Existing(_) => Ok(false),
        Submitted::GroupBroken => {
            warn!(schedule = %name, group = %job.group, "schedule firing skipped: its group is broken");
            Ok(false)
        }
    }
}
