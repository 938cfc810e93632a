//! The nemesis: on a schedule drawn from the seed it SIGKILLs and SIGSTOPs workers and
//! masters, restarts the private RabbitMQ, restarts or freezes the private Redis, and adds
//! latency or cuts connections at the proxies in front of both. One fault at a time: each
//! is healed, then a probe job times how long the fleet takes to serve again.

use super::fleet::{Fleet, Role};
use super::history::{Event, History};
use super::rng::Rng;
use super::workload::Workload;
use crate::private::{PrivateRabbit, PrivateRedis};
use crate::proxy::Proxy;
use jobfleet_common::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a probe may take before the fleet counts as not recovered.
const PROBE_PATIENCE: Duration = Duration::from_secs(30);

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL a worker; the supervisor starts it again after the hold.
    WorkerKill,
    /// SIGSTOP a worker for the hold, then SIGCONT (past the heartbeat TTL it looks dead).
    WorkerPause,
    /// SIGKILL a master; started again after the hold.
    MasterKill,
    /// SIGSTOP a master for the hold (past the 5 s lease, another master leads).
    MasterPause,
    /// `rabbitmqctl stop_app`, the hold, `start_app`: every AMQP connection drops.
    RabbitRestart,
    /// A clean Redis shutdown, the hold, a start from the append-only file.
    RedisRestart,
    /// SIGSTOP Redis for the hold, then SIGCONT: heartbeat keys may expire meanwhile.
    RedisPause,
    /// Adds a one-way delay at the Redis proxy, the RabbitMQ proxy or both, for the hold.
    Latency,
    /// The proxy closes every open connection to Redis, RabbitMQ or both.
    Cut,
}

impl FaultKind {
    /// Every kind; a run starts with each once, in a seeded order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::WorkerKill,
        FaultKind::WorkerPause,
        FaultKind::MasterKill,
        FaultKind::MasterPause,
        FaultKind::RabbitRestart,
        FaultKind::RedisRestart,
        FaultKind::RedisPause,
        FaultKind::Latency,
        FaultKind::Cut,
    ];
    /// How often each kind comes up after the first round.
    const WEIGHTS: [u64; 9] = [3, 3, 2, 2, 1, 1, 2, 3, 2];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker_kill",
            FaultKind::WorkerPause => "worker_pause",
            FaultKind::MasterKill => "master_kill",
            FaultKind::MasterPause => "master_pause",
            FaultKind::RabbitRestart => "rabbit_restart",
            FaultKind::RedisRestart => "redis_restart",
            FaultKind::RedisPause => "redis_pause",
            FaultKind::Latency => "latency",
            FaultKind::Cut => "cut",
        }
    }

    /// The range of its hold in milliseconds.
    fn hold_ms(self) -> (u64, u64) {
        match self {
            FaultKind::WorkerKill | FaultKind::MasterKill => (200, 2000),
            FaultKind::WorkerPause => (500, 4000),
            FaultKind::MasterPause => (500, 6000),
            FaultKind::RabbitRestart | FaultKind::RedisRestart | FaultKind::RedisPause => (500, 3000),
            FaultKind::Latency => (2000, 6000),
            FaultKind::Cut => (0, 0),
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Its kind.
    pub kind: FaultKind,
    /// Which target (taken modulo the number of candidates).
    pub target: u64,
    /// How long it lasts before it is healed.
    pub hold: Duration,
    /// The one-way delay of a latency fault.
    pub delay: Duration,
}

/// The seeded schedule: every kind once in a shuffled order, then weighted picks.
#[derive(Debug)]
pub struct Plan {
    rng: Rng,
    first: Vec<FaultKind>,
}

impl Plan {
    /// The schedule of `seed`.
    pub fn new(seed: u64) -> Plan {
        let mut rng = Rng::fork(seed, 1);
        let first = rng.shuffled(FaultKind::ALL.to_vec());
        Plan { rng, first }
    }

    /// The next fault.
    pub fn next_fault(&mut self) -> Fault {
        let kind = if self.first.is_empty() {
            FaultKind::ALL[self.rng.weighted(&FaultKind::WEIGHTS)]
        } else {
            self.first.remove(0)
        };
        let (low, high) = kind.hold_ms();
        Fault {
            kind,
            target: self.rng.next_u64(),
            hold: self.rng.millis(low, high),
            delay: self.rng.millis(20, 250),
        }
    }

    /// Whether every kind came up once.
    pub fn covered_every_kind(&self) -> bool {
        self.first.is_empty()
    }

    /// The quiet time before the next fault.
    pub fn gap(&mut self) -> Duration {
        self.rng.millis(500, 3000)
    }
}

/// The private services and the proxies the fleet reaches them through.
#[derive(Debug)]
pub struct Services {
    /// The private broker.
    pub rabbit: Arc<PrivateRabbit>,
    /// The private Redis (AOF on).
    pub redis: Arc<Mutex<PrivateRedis>>,
    /// The proxy in front of the broker.
    pub rabbit_proxy: Proxy,
    /// The proxy in front of Redis.
    pub redis_proxy: Proxy,
}

/// What the nemesis acts on.
#[derive(Debug)]
pub struct Nemesis {
    /// The fleet's processes.
    pub fleet: Arc<Mutex<Fleet>>,
    /// The services.
    pub services: Arc<Services>,
    /// The log.
    pub history: Arc<History>,
    /// For the probes.
    pub workload: Arc<Workload>,
}

impl Nemesis {
    /// Injects faults from `plan` until `until` and every kind came up once, but never
    /// past `limit` (a fleet that does not recover makes each probe wait its patience);
    /// the last fault is healed and probed before returning.
    pub async fn run(&self, mut plan: Plan, until: Instant, limit: Instant) {
        let mut probes = 0;
        while (Instant::now() < until || !plan.covered_every_kind()) && Instant::now() < limit {
            tokio::time::sleep(plan.gap()).await;
            let fault = plan.next_fault();
            let start = now_ms();
            let target = self.inject(&fault).await;
            let end = now_ms();
            self.history.record(&Event::Fault {
                kind: fault.kind,
                target,
                start,
                end,
            });
            self.workload.probe(probes, end, PROBE_PATIENCE).await;
            probes += 1;
        }
    }

    /// Injects `fault`, waits its hold, heals it; returns what it hit.
    async fn inject(&self, fault: &Fault) -> String {
        match fault.kind {
            FaultKind::WorkerKill | FaultKind::MasterKill => self.kill(fault, role_of(fault.kind)).await,
            FaultKind::WorkerPause | FaultKind::MasterPause => self.pause(fault, role_of(fault.kind)).await,
            FaultKind::RabbitRestart => {
                let (rabbit, hold) = (self.services.rabbit.clone(), fault.hold);
                blocking(move || rabbit.restart(hold)).await;
                "rabbitmq".into()
            }
            FaultKind::RedisRestart => {
                let (redis, hold) = (self.services.redis.clone(), fault.hold);
                blocking(move || redis.lock().expect("redis lock").restart(hold)).await;
                "redis".into()
            }
            FaultKind::RedisPause => {
                self.services.redis.lock().expect("redis lock").pause();
                tokio::time::sleep(fault.hold).await;
                self.services.redis.lock().expect("redis lock").resume();
                "redis".into()
            }
            FaultKind::Latency => {
                let (proxies, target) = self.proxies(fault.target);
                for proxy in &proxies {
                    proxy.set_delay(fault.delay);
                }
                tokio::time::sleep(fault.hold).await;
                for proxy in &proxies {
                    proxy.set_delay(Duration::ZERO);
                }
                format!("{target} +{}ms", fault.delay.as_millis())
            }
            FaultKind::Cut => {
                let (proxies, target) = self.proxies(fault.target);
                for proxy in proxies {
                    proxy.cut();
                }
                target.into()
            }
        }
    }

    async fn kill(&self, fault: &Fault, role: Role) -> String {
        let (name, index) = self.pick(role, fault.target);
        self.fleet.lock().expect("fleet lock").kill(role, index);
        tokio::time::sleep(fault.hold).await;
        self.fleet.lock().expect("fleet lock").restart(role, index);
        name
    }

    async fn pause(&self, fault: &Fault, role: Role) -> String {
        let (name, index) = self.pick(role, fault.target);
        self.fleet.lock().expect("fleet lock").freeze(role, index, true);
        tokio::time::sleep(fault.hold).await;
        self.fleet.lock().expect("fleet lock").freeze(role, index, false);
        name
    }

    fn pick(&self, role: Role, target: u64) -> (String, usize) {
        let mut fleet = self.fleet.lock().expect("fleet lock");
        let index = (target % fleet.count(role) as u64) as usize;
        (fleet.name(role, index), index)
    }

    fn proxies(&self, target: u64) -> (Vec<&Proxy>, &'static str) {
        let services = &self.services;
        match target % 3 {
            0 => (vec![&services.redis_proxy], "redis"),
            1 => (vec![&services.rabbit_proxy], "rabbitmq"),
            _ => (
                vec![&services.redis_proxy, &services.rabbit_proxy],
                "redis+rabbitmq",
            ),
        }
    }
}

fn role_of(kind: FaultKind) -> Role {
    match kind {
        FaultKind::MasterKill | FaultKind::MasterPause => Role::Master,
        _ => Role::Worker,
    }
}

async fn blocking(work: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(work).await.expect("blocking fault");
}
