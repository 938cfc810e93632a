//! The run's own log: every submission, cancel and delete the workload made (with what it
//! was answered), every fault the nemesis injected, every probe and every unplanned process
//! exit, as JSON lines in a file. The checker reads the file back, not the workload's memory.

use super::faults::FaultKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a job was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `POST /v1/jobs` on a master.
    Http,
    /// The client library's `Producer` (broker first, then the record).
    Producer,
}

/// What one submission attempt was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitOutcome {
    /// 202, or the producer's publish returned `Ok`: a new job.
    Accepted,
    /// 200: the id already named a job (a duplicate or a retried submission).
    Existing,
    /// An HTTP error answer (`status`, the error's `kind`): nothing should run.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The error kind of the answer.
        kind: String,
    },
    /// No answer (connection cut, timeout, a paused master) or a producer error: the job
    /// may or may not exist.
    Uncertain {
        /// What failed.
        error: String,
    },
}

impl SubmitOutcome {
    /// Whether the fleet took the job on (it must then end exactly once).
    pub fn is_accepted(&self) -> bool {
        matches!(self, SubmitOutcome::Accepted | SubmitOutcome::Existing)
    }
}

/// What a cancel request was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// 200 with the canceled record: acknowledged.
    Canceled {
        /// The record the answer carried.
        record: Value,
    },
    /// Any other answer (409 ended, 404 unknown, 503) or none.
    Refused {
        /// The HTTP status, 0 for no answer.
        status: u16,
    },
}

/// What a delete request was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// 204: the record is forgotten. `record` is the terminal record read just before.
    Deleted {
        /// The record as last read (or as the cancel answered it).
        record: Value,
    },
    /// Any other answer or none.
    Refused {
        /// The HTTP status, 0 for no answer.
        status: u16,
    },
}

impl DeleteOutcome {
    /// Whether the record may be gone because of this request: a 204, or an answer that
    /// leaves it open (none, a 5xx: the delete may have run), or a 404 (already gone).
    /// Only a 409 says it certainly did not delete.
    pub fn may_have_deleted(&self) -> bool {
        match self {
            DeleteOutcome::Deleted { .. } => true,
            DeleteOutcome::Refused { status } => *status != 409,
        }
    }
}

/// One line of the log. Times are unix milliseconds on this machine's clock (the fleet's
/// processes run here too, so they compare with the records' and results' times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A submission attempt.
    Submit {
        /// The job id.
        id: String,
        /// Its group.
        group: String,
        /// Its function.
        function: String,
        /// Through which door.
        via: Via,
        /// When the request left.
        sent_at: i64,
        /// When the answer came.
        at: i64,
        /// The answer.
        outcome: SubmitOutcome,
        /// Masters tried first that did not answer (they may have acted on the request).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unanswered: Vec<String>,
    },
    /// A cancel request.
    Cancel {
        /// The job id.
        id: String,
        /// When the request left.
        sent_at: i64,
        /// When the answer came (the acknowledgement time of a 200).
        at: i64,
        /// The answer.
        outcome: CancelOutcome,
    },
    /// A delete request of an ended job.
    Delete {
        /// The job id.
        id: String,
        /// When the answer came.
        at: i64,
        /// The answer.
        outcome: DeleteOutcome,
    },
    /// A fault, from injection to healing.
    Fault {
        /// What kind.
        kind: FaultKind,
        /// What it hit (a process name, a service).
        target: String,
        /// When it began.
        start: i64,
        /// When it was healed.
        end: i64,
    },
    /// A probe job submitted after a fault healed, to time the recovery.
    Probe {
        /// The probe job's id.
        id: String,
        /// When the fault before it healed.
        healed_at: i64,
        /// When the probe was seen ended; `None` if it did not end in time.
        done_at: Option<i64>,
    },
    /// A process the supervisor found exited without being told to (and restarted).
    Exit {
        /// The process (`worker-1`, `master-0`).
        process: String,
        /// When it was found.
        at: i64,
        /// Its exit status, if it exited normally.
        code: Option<i32>,
    },
    /// The end of the fault phase: every fault healed, no new submissions.
    Quiet {
        /// When.
        at: i64,
    },
}

/// The log being written (shared by the workload's clients and the nemesis).
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl History {
    /// Creates (truncates) the log at `path`.
    pub fn create(path: &Path) -> History {
        let file = std::fs::File::create(path).expect("history file");
        History {
            path: path.to_path_buf(),
            file: Mutex::new(std::io::BufWriter::new(file)),
        }
    }

    /// Appends one event and flushes it.
    pub fn record(&self, event: &Event) {
        let line = serde_json::to_string(event).expect("event as JSON");
        let mut file = self.file.lock().expect("history lock");
        writeln!(file, "{line}").expect("write history");
        file.flush().expect("flush history");
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a log back.
pub fn read(path: &Path) -> Vec<Event> {
    let file = std::fs::File::open(path).expect("history file");
    std::io::BufReader::new(file)
        .lines()
        .map(|line| {
            let line = line.expect("read history");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("history line {line:?}: {e}"))
        })
        .collect()
}
