//! The seeded workload: clients that submit a mix of jobs (echo, sleep, process functions
//! in exclusive and shared mode, crashes, retries) through the masters' HTTP API and the
//! client library's `Producer`, cancel some, delete some once ended, and publish some ids
//! twice, and submit workflows (a diamond of steps, each step job judged like any job).
//! Every request and its answer goes to the [`History`].

use super::api::{Answer, Api};
use super::history::{CancelOutcome, DeleteOutcome, Event, History, SubmitOutcome, Via};
use super::rng::Rng;
use jobfleet_common::client::Producer;
use jobfleet_common::message::JobMessage;
use jobfleet_common::now_ms;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a client keeps retrying a submission that got no answer or a 503.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(20);
/// How long a follow-up waits for a job to end before deleting it.
const END_PATIENCE: Duration = Duration::from_secs(45);

/// One job as the workload submits it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The id (unique per run, deterministic per seed).
    pub id: String,
    /// `steady` or `crashy`.
    pub group: &'static str,
    /// The function.
    pub function: &'static str,
    /// The args.
    pub args: Value,
    /// The door it goes through first.
    pub via: Via,
}

/// What a client does next.
#[derive(Debug, Clone)]
enum Op {
    /// Submit a job.
    Run(Job),
    /// Submit a job, cancel it after a while, and maybe delete it right after.
    Cancel { job: Job, after: Duration, delete: bool },
    /// Submit a job and delete it once it ended.
    DeleteAfterEnd(Job),
    /// Submit a job, then the same id again (maybe through the other door).
    Duplicate { job: Job, again: Via, gap: Duration },
    /// Submit a workflow (a diamond whose steps pass results on; a failing root now and
    /// then); each step's job is judged like any job.
    Workflow { id: String, fail: bool, sleep_ms: u64 },
}

/// The job kinds with their weights: (group, function, weight).
const KINDS: [(&str, &str, u64); 8] = [
    ("steady", "echo", 25),
    ("steady", "sleep", 15),
    ("steady", "wc", 10),
    ("steady", "wc_shared", 15),
    ("steady", "fail", 5),
    ("crashy", "crash", 4),
    ("crashy", "pcrash", 3),
    ("crashy", "echo", 5),
];

fn via(rng: &mut Rng) -> Via {
    if rng.percent(70) {
        Via::Http
    } else {
        Via::Producer
    }
}

fn job(rng: &mut Rng, id: String) -> Job {
    let (group, function, _) = KINDS[rng.weighted(&KINDS.map(|k| k.2))];
    let n = rng.below(1_000_000);
    let args = match function {
        "sleep" => json!({"ms": rng.between(50, 1500)}),
        "wc" | "wc_shared" => json!({"text": format!("nemesis {n} says {n} twice")}),
        "fail" => json!({"message": format!("planned failure {n}")}),
        _ => json!({"n": n}),
    };
    Job {
        id,
        group,
        function,
        args,
        via: via(rng),
    }
}

fn op(rng: &mut Rng, id: String) -> Op {
    match rng.weighted(&[66, 8, 8, 8, 10, 5]) {
        0 => Op::Run(job(rng, id)),
        pick @ (1 | 2) => {
            let (job, after) = cancel_target(rng, id);
            Op::Cancel {
                job,
                after,
                delete: pick == 2,
            }
        }
        3 => Op::DeleteAfterEnd(job(rng, id)),
        5 => Op::Workflow {
            id: format!("w{id}"),
            fail: rng.percent(20),
            sleep_ms: rng.between(50, 1500),
        },
        _ => Op::Duplicate {
            job: job(rng, id),
            again: via(rng),
            gap: rng.millis(0, 1000),
        },
    }
}

/// A job to cancel and when: mostly a sleep job, half of those at once while its message
/// most likely still waits in the queue; sometimes a retried failure, canceled while its
/// retry copy waits in a delay queue. (Deleting such a job right after the cancel is the
/// case where an ended job could run again from its waiting copy.)
fn cancel_target(rng: &mut Rng, id: String) -> (Job, Duration) {
    let via = via(rng);
    if rng.percent(30) {
        let args = json!({"message": format!("retried until canceled {id}")});
        let job = Job {
            id,
            group: "steady",
            function: "fail",
            args,
            via,
        };
        return (job, rng.millis(100, 700));
    }
    let job = Job {
        id,
        group: "steady",
        function: "sleep",
        args: json!({"ms": rng.between(500, 4000)}),
        via,
    };
    let after = if rng.percent(50) {
        rng.millis(0, 30)
    } else {
        rng.millis(0, 1500)
    };
    (job, after)
}

/// What an answer to a submit (of a job or a workflow) says.
fn submit_outcome(answer: &Answer) -> SubmitOutcome {
    match answer.status {
        202 => SubmitOutcome::Accepted,
        200 => SubmitOutcome::Existing,
        status => SubmitOutcome::Rejected {
            status,
            kind: answer.kind(),
        },
    }
}

/// The clients' shared means: the API, a producer, the log, and the follow-up tasks.
#[derive(Debug)]
pub struct Workload {
    api: Arc<Api>,
    producer: Producer,
    history: Arc<History>,
    follow_ups: Mutex<Vec<JoinHandle<()>>>,
}

impl Workload {
    /// A workload over these means.
    pub fn new(api: Arc<Api>, producer: Producer, history: Arc<History>) -> Arc<Workload> {
        Arc::new(Workload {
            api,
            producer,
            history,
            follow_ups: Mutex::new(Vec::new()),
        })
    }

    /// Runs `clients` clients until `stop`, each drawing its operations from its own
    /// stream of `seed` and pausing `pace` (a range in ms) between them; then waits for
    /// the follow-ups (deletes) to finish.
    pub async fn run(self: &Arc<Self>, seed: u64, clients: usize, pace: (u64, u64), stop: CancellationToken) {
        let mut tasks = Vec::new();
        for client in 0..clients {
            let workload = self.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::fork(seed, 100 + client as u64);
                let mut n = 0;
                while !stop.is_cancelled() {
                    let id = format!("j{client}-{n:06}");
                    n += 1;
                    workload.execute(op(&mut rng, id)).await;
                    let pause = rng.millis(pace.0, pace.1);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("workload client");
        }
        let follow_ups = std::mem::take(&mut *self.follow_ups.lock().expect("lock"));
        for task in follow_ups {
            task.await.expect("workload follow-up");
        }
    }

    async fn execute(self: &Arc<Self>, op: Op) {
        match op {
            Op::Run(job) => {
                self.submit(&job, job.via).await;
            }
            Op::Cancel { job, after, delete } => {
                if self.submit(&job, job.via).await {
                    tokio::time::sleep(after).await;
                    self.cancel(&job.id, delete).await;
                }
            }
            Op::DeleteAfterEnd(job) => {
                if self.submit(&job, job.via).await {
                    let workload = self.clone();
                    let task = tokio::spawn(async move { workload.delete_when_ended(&job.id).await });
                    self.follow_ups.lock().expect("lock").push(task);
                }
            }
            Op::Duplicate { job, again, gap } => {
                self.submit(&job, job.via).await;
                tokio::time::sleep(gap).await;
                self.submit(&job, again).await;
            }
            Op::Workflow { id, fail, sleep_ms } => self.submit_workflow(&id, fail, sleep_ms).await,
        }
    }

    /// Submits a diamond workflow `id` over HTTP, retrying with the same id like a job's
    /// submit; every answer is recorded for each of its step jobs (`<id>.<step>`), whose
    /// outcomes the checker then judges like any job's.
    async fn submit_workflow(&self, id: &str, fail: bool, sleep_ms: u64) {
        let root = if fail {
            ("fail", json!({"message": format!("planned failure of {id}")}))
        } else {
            ("sleep", json!({"ms": sleep_ms}))
        };
        let steps = [
            ("a", root.0, json!([]), root.1),
            ("b", "echo", json!(["a"]), json!({"from": {"$result": "a"}})),
            ("c", "echo", json!(["a"]), json!([{"$result": "a"}])),
            (
                "d",
                "echo",
                json!(["b", "c"]),
                json!({"b": {"$result": "b"}, "c": {"$result": "c"}}),
            ),
        ];
        let body = json!({"id": id, "steps": steps.iter().map(|(name, function, after, args)| {
            json!({"name": name, "group": "steady", "function": function, "after": after, "args": args})
        }).collect::<Vec<_>>()});
        let deadline = Instant::now() + SUBMIT_PATIENCE;
        let mut attempt = 0u32;
        loop {
            let sent_at = now_ms();
            let (outcome, unanswered) = match self.api.submit_workflow(&body).await {
                Ok(answer) => (submit_outcome(&answer), answer.unanswered),
                Err(error) => (SubmitOutcome::Uncertain { error }, Vec::new()),
            };
            let retry = matches!(&outcome, SubmitOutcome::Uncertain { .. })
                || matches!(&outcome, SubmitOutcome::Rejected { status: 503, .. });
            let accepted = outcome.is_accepted();
            for (name, function, _, _) in &steps {
                self.history.record(&Event::Submit {
                    id: format!("{id}.{name}"),
                    group: "steady".into(),
                    function: (*function).into(),
                    via: Via::Http,
                    sent_at,
                    at: now_ms(),
                    outcome: outcome.clone(),
                    unanswered: unanswered.clone(),
                });
            }
            if accepted || !retry || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(3))).await;
            attempt += 1;
        }
    }

    /// Submits `job` through `via`, retrying with the same id while the answer is a 503
    /// (not `group_broken`) or missing; returns whether it was accepted.
    pub async fn submit(&self, job: &Job, via: Via) -> bool {
        let deadline = Instant::now() + SUBMIT_PATIENCE;
        let mut attempt = 0u32;
        loop {
            let sent_at = now_ms();
            let (outcome, unanswered) = match via {
                Via::Http => self.submit_http(job).await,
                Via::Producer => (self.submit_producer(job).await, Vec::new()),
            };
            let retry = match &outcome {
                SubmitOutcome::Rejected { status, kind } => *status == 503 && kind != "group_broken",
                SubmitOutcome::Uncertain { .. } => true,
                _ => false,
            };
            let accepted = outcome.is_accepted();
            self.history.record(&Event::Submit {
                id: job.id.clone(),
                group: job.group.into(),
                function: job.function.into(),
                via,
                sent_at,
                at: now_ms(),
                outcome,
                unanswered,
            });
            if accepted || !retry || Instant::now() > deadline {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(3))).await;
            attempt += 1;
        }
    }

    /// Submits over HTTP; also returns the masters that did not answer before one did.
    async fn submit_http(&self, job: &Job) -> (SubmitOutcome, Vec<String>) {
        let body = json!({"id": job.id, "group": job.group, "function": job.function, "args": job.args});
        match self.api.submit(&body).await {
            Ok(answer) => (submit_outcome(&answer), answer.unanswered),
            Err(error) => (SubmitOutcome::Uncertain { error }, Vec::new()),
        }
    }

    async fn submit_producer(&self, job: &Job) -> SubmitOutcome {
        let message = JobMessage::new(job.group, job.function, job.args.clone()).with_id(&job.id);
        match self.producer.publish(&message).await {
            Ok(()) => SubmitOutcome::Accepted,
            Err(e) => SubmitOutcome::Uncertain { error: e.to_string() },
        }
    }

    /// Cancels `id` (up to three tries while unanswered or 503); on a 200, deletes the
    /// canceled record at once when `delete` is set.
    async fn cancel(&self, id: &str, delete: bool) {
        for _ in 0..3 {
            let sent_at = now_ms();
            let answer = self.api.cancel(id).await;
            let at = now_ms();
            let (outcome, again) = match answer {
                Ok(Answer {
                    status: 200, body, ..
                }) => (CancelOutcome::Canceled { record: body }, false),
                Ok(answer) => (
                    CancelOutcome::Refused {
                        status: answer.status,
                    },
                    answer.status == 503,
                ),
                Err(_) => (CancelOutcome::Refused { status: 0 }, true),
            };
            let canceled = match &outcome {
                CancelOutcome::Canceled { record } => Some(record.clone()),
                CancelOutcome::Refused { .. } => None,
            };
            self.history.record(&Event::Cancel {
                id: id.into(),
                sent_at,
                at,
                outcome,
            });
            if let (Some(record), true) = (canceled, delete) {
                self.delete(id, record).await;
            }
            if !again {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until `id` is seen ended, then deletes it.
    async fn delete_when_ended(&self, id: &str) {
        if let Some(record) = self.wait_ended(id, END_PATIENCE).await {
            self.delete(id, record).await;
        }
    }

    /// Deletes `id` (up to three tries while unanswered or 503).
    async fn delete(&self, id: &str, record: Value) {
        for _ in 0..3 {
            let (outcome, again) = match self.api.delete(id).await {
                Ok(Answer { status: 204, .. }) => (
                    DeleteOutcome::Deleted {
                        record: record.clone(),
                    },
                    false,
                ),
                Ok(answer) => (
                    DeleteOutcome::Refused {
                        status: answer.status,
                    },
                    answer.status == 503,
                ),
                Err(_) => (DeleteOutcome::Refused { status: 0 }, true),
            };
            self.history.record(&Event::Delete {
                id: id.into(),
                at: now_ms(),
                outcome,
            });
            if !again {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Polls `GET /v1/jobs/{id}` until the job is ended; its record, or `None` in time.
    pub async fn wait_ended(&self, id: &str, patience: Duration) -> Option<Value> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Answer {
                status: 200, body, ..
            }) = self.api.get(id).await
            {
                if matches!(body["status"].as_str(), Some("finished" | "failed" | "canceled")) {
                    return Some(body);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// Runs probe `n`: an echo job submitted over HTTP after a fault healed at
    /// `healed_at`; logs and returns when it was seen ended.
    pub async fn probe(&self, n: u32, healed_at: i64, patience: Duration) -> Option<i64> {
        let job = Job {
            id: format!("probe-{n:04}"),
            group: "steady",
            function: "echo",
            args: json!({"probe": n}),
            via: Via::Http,
        };
        let deadline = Instant::now() + patience;
        let mut done_at = None;
        while done_at.is_none() && Instant::now() < deadline {
            if self.submit(&job, Via::Http).await {
                let left = deadline.saturating_duration_since(Instant::now());
                done_at = self.wait_ended(&job.id, left).await.map(|_| now_ms());
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.history.record(&Event::Probe {
            id: job.id,
            healed_at,
            done_at,
        });
        done_at
    }
}
