//! Job priorities (SPEC §9) in the records of jobs a producer published: the master's
//! submit stores a job's `priority` with its record, a worker's deferral of a delayed job
//! too; [`Coordinator::record_priorities`] does it for the jobs of
//! [`Producer`](crate::client::Producer) once their records exist.

use super::{Coordinator, CoordinatorError};
use crate::message::JobMessage;
use deadpool_redis::redis::{self, Script};
use std::sync::LazyLock;

static PRIORITY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/priority.lua")));

impl Coordinator {
    /// Stores the `priority` of each of `jobs` that has one in its record, if the record
    /// exists, in one round trip; nothing when none has one.
    pub async fn record_priorities(&self, jobs: &[JobMessage]) -> Result<(), CoordinatorError> {
        let mut pipe = redis::pipe();
        let mut any = None;
        for job in jobs {
            if let Some(priority) = job.priority {
                let mut call = PRIORITY.key(self.keys.job(&job.group, &job.id));
                call.arg(priority);
                pipe.invoke_script(&call);
                any.get_or_insert(call);
            }
        }
        match any {
            Some(reload) => self.transitions(&mut pipe, &reload).await.map(drop),
            None => Ok(()),
        }
    }
}
