//! A private Redis Sentinel set on one machine: a primary, a replica and three sentinels
//! (quorum 2, down after 1 s), each a [`PrivateRedis`] on a free port, with the failovers
//! the tests need: `SENTINEL FAILOVER`, a SIGKILL of the primary (and its restart as a
//! replica), and a replica made to lag behind; and the measures of what a failover lost
//! ([`WriteProbe`], [`progress`]).

use crate::private::PrivateRedis;
use jobfleet_common::coordinator::{Coordinator, Keys};
use jobfleet_common::message::JobMessage;
use jobfleet_common::redis::{self, FromRedisValue};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "jobfleet";

/// A primary, a replica and three sentinels, torn down when dropped.
pub struct PrivateSentinelSet {
    /// The data nodes (the first started as the primary, the second as its replica).
    nodes: Vec<PrivateRedis>,
    sentinels: Vec<PrivateRedis>,
}

/// How long the set may take to settle after a change (a start, a failover).
const SETTLE: Duration = Duration::from_secs(30);

impl PrivateSentinelSet {
    /// Starts the primary, its replica (in sync) and three sentinels that all know the
    /// replica and each other.
    pub fn start() -> PrivateSentinelSet {
        let primary = PrivateRedis::start();
        let replica = PrivateRedis::start_with(&replica_of(primary.port()));
        wait_for_link(replica.port());
        let config = monitor_config(primary.port(), 2);
        let sentinels = (0..3).map(|_| PrivateRedis::start_sentinel(&config)).collect();
        let set = PrivateSentinelSet {
            nodes: vec![primary, replica],
            sentinels,
        };
        set.wait_until_settled();
        set
    }

    /// The fleet's Redis URL: `redis+sentinel://` the three sentinels, database 0.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}/0", sentinels.join(","))
    }

    /// A plain URL of one data node (reads of a replica; a fleet pinned to one node).
    pub fn node_url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/0")
    }

    /// The primary's port, as the first sentinel that answers names it.
    pub fn primary_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|s| primary_named_by(s.port()))
            .expect("no sentinel names a primary")
    }

    /// The port of the data node that is not the primary.
    pub fn replica_port(&self) -> u16 {
        let primary = self.primary_port();
        self.nodes
            .iter()
            .map(PrivateRedis::port)
            .find(|&port| port != primary)
            .expect("a replica")
    }

    /// `SENTINEL FAILOVER` (asked again while the sentinel has no good replica yet), then
    /// waits until every sentinel names the new primary and it says so itself. Returns the
    /// new primary's port.
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let sentinel = self.sentinels[0].port();
        let deadline = Instant::now() + SETTLE;
        while let Err(e) = query::<String>(sentinel, redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME))
        {
            assert!(Instant::now() < deadline, "SENTINEL FAILOVER refused: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
        self.wait_for_primary_other_than(old)
    }

    /// Waits until every sentinel names a primary other than `old` and that node is a
    /// primary by its own `ROLE`; returns its port.
    pub fn wait_for_primary_other_than(&self, old: u16) -> u16 {
        wait_until(SETTLE, "the sentinels to name a new primary", || {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| primary_named_by(s.port()))
                .collect();
            let new = named[0].filter(|&port| port != old)?;
            let agreed = named.iter().all(|&port| port == Some(new));
            (agreed && role(new).as_deref() == Some("master")).then_some(new)
        })
    }

    /// Kills the primary (SIGKILL); returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        self.node_mut(port).kill();
        port
    }

    /// Starts the killed node on `port` again, as a replica of the current primary, and
    /// waits until it is in sync.
    pub fn restart_as_replica(&mut self, port: u16) {
        let primary = self.primary_port();
        self.node_mut(port).start_again_with(&replica_of(primary));
        wait_for_link(port);
    }

    /// Makes the replica fall behind from now on: it is frozen (SIGSTOP) and the primary
    /// drops its replication link, so no write from now on reaches it (a frozen replica
    /// alone would still read what its socket buffered). [`PrivateSentinelSet::thaw_replica`]
    /// lets it go on.
    pub fn freeze_replica(&self) -> u16 {
        let (primary, replica) = (self.primary_port(), self.replica_port());
        self.node(replica).pause();
        let dropped: i64 = query(
            primary,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        )
        .expect("CLIENT KILL TYPE replica");
        assert_eq!(dropped, 1, "the primary had one replica link");
        replica
    }

    /// Lets the frozen replica go on (SIGCONT).
    pub fn thaw_replica(&self, port: u16) {
        self.node(port).resume();
    }

    fn node(&self, port: u16) -> &PrivateRedis {
        self.nodes.iter().find(|n| n.port() == port).expect("a data node")
    }

    fn node_mut(&mut self, port: u16) -> &mut PrivateRedis {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("a data node")
    }

    /// Waits until every sentinel names the same primary, knows a replica of it in sync
    /// and the two other sentinels.
    fn wait_until_settled(&self) {
        wait_until(SETTLE, "the sentinels to settle", || {
            self.sentinels
                .iter()
                .all(|s| sentinel_settled(s.port()))
                .then_some(())
        });
    }
}

/// A sentinel's configuration: it monitors the primary on `port` as [`MASTER_NAME`] with
/// `quorum`, down after 1 s without an answer, a failover given 5 s.
pub fn monitor_config(port: u16, quorum: u32) -> String {
    format!(
        "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} {quorum}\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
}

/// `--replicaof 127.0.0.1 <port>`.
fn replica_of(port: u16) -> [String; 3] {
    ["--replicaof".into(), "127.0.0.1".into(), port.to_string()]
}

/// Runs `cmd` on the server on `port` (1 s to connect and to answer).
pub fn query<T: FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(PrivateSentinelSet::node_url(port))?;
    let timeout = Duration::from_secs(1);
    let mut conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    cmd.query(&mut conn)
}

/// The port of the primary the sentinel on `sentinel` names.
fn primary_named_by(sentinel: u16) -> Option<u16> {
    let address: Vec<String> = query(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME),
    )
    .ok()?;
    address.get(1)?.parse().ok()
}

/// `master` or `slave`, as the node on `port` says (`ROLE`).
fn role(port: u16) -> Option<String> {
    let role: Vec<redis::Value> = query(port, &redis::cmd("ROLE")).ok()?;
    redis::from_redis_value(role.into_iter().next()?).ok()
}

/// Whether the sentinel on `port` sees a replica in sync and two other sentinels.
fn sentinel_settled(port: u16) -> bool {
    let Ok(master) =
        query::<HashMap<String, String>>(port, redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME))
    else {
        return false;
    };
    let count = |field: &str| master.get(field).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    if count("num-slaves") < 1 || count("num-other-sentinels") < 2 {
        return false;
    }
    let Ok(replicas) =
        query::<Vec<HashMap<String, String>>>(port, redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME))
    else {
        return false;
    };
    replicas.iter().any(|r| {
        r.get("master-link-status").map(String::as_str) == Some("ok")
            && r.get("flags")
                .is_some_and(|f| !f.contains("down") && !f.contains("disconnected"))
    })
}

/// Waits until the replica on `port` has its link to its primary up.
fn wait_for_link(port: u16) {
    wait_until(SETTLE, "the replica's link to its primary", || {
        let info: String = query(port, redis::cmd("INFO").arg("replication")).ok()?;
        info.contains("master_link_status:up").then_some(())
    });
}

/// Polls `check` every 100 ms until it answers, panicking after `timeout`.
fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Steady writes through a coordinator, one queued record per write in a group no worker
/// serves, each timed when acknowledged: afterwards, which acknowledged writes a failover
/// lost, and how long no write got through.
pub struct WriteProbe {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Vec<(String, i64)>>,
    keys: Keys,
}

/// The group of the probe's records.
pub const PROBE_GROUP: &str = "probe";

/// What a [`WriteProbe`] found.
#[derive(Debug, Clone, Copy)]
pub struct ProbeReport {
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Acknowledged writes the final primary does not have.
    pub lost: usize,
    /// From the first to the last acknowledgement of a lost write, ms.
    pub lost_span_ms: i64,
    /// The longest time between two acknowledged writes, ms.
    pub longest_gap_ms: i64,
}

impl WriteProbe {
    /// Writes through `coordinator` every `every` until [`WriteProbe::finish`].
    pub fn start(coordinator: Coordinator, every: Duration) -> WriteProbe {
        let stop = tokio_util::sync::CancellationToken::new();
        let keys = coordinator.keys().clone();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0.. {
                let job = JobMessage::new(PROBE_GROUP, "probe", serde_json::Value::Null)
                    .with_id(format!("probe-{n:06}"));
                if coordinator
                    .record_queued(std::slice::from_ref(&job))
                    .await
                    .is_ok()
                {
                    acknowledged.push((job.id, jobfleet_common::now_ms()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = token.cancelled() => break,
                }
            }
            acknowledged
        });
        WriteProbe { stop, handle, keys }
    }

    /// Stops writing and checks the acknowledged writes on the node on `primary`.
    pub async fn finish(self, primary: u16) -> ProbeReport {
        self.stop.cancel();
        let acknowledged = self.handle.await.expect("probe task");
        let keys: Vec<String> = acknowledged
            .iter()
            .map(|(id, _)| self.keys.job(PROBE_GROUP, id))
            .collect();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.exists(key);
        }
        let exists: Vec<bool> =
            tokio::task::block_in_place(|| query_pipe(primary, &pipe)).expect("probe records");
        let lost: Vec<i64> = acknowledged
            .iter()
            .zip(&exists)
            .filter(|(_, &exists)| !exists)
            .map(|((_, at), _)| *at)
            .collect();
        let longest_gap_ms = acknowledged
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or(0);
        ProbeReport {
            acknowledged: acknowledged.len(),
            lost: lost.len(),
            lost_span_ms: lost
                .last()
                .zip(lost.first())
                .map_or(0, |(last, first)| last - first),
            longest_gap_ms,
        }
    }
}

/// Sends `pipe` to the server on `port`.
fn query_pipe<T: FromRedisValue>(port: u16, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
    let client = redis::Client::open(PrivateSentinelSet::node_url(port))?;
    let timeout = Duration::from_secs(5);
    let mut conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    pipe.query(&mut conn)
}

/// How far each job got on the node on `port`: (attempts, status rank: 0 no record,
/// 1 queued, 2 started, 3 ended), read in one pipeline.
pub fn progress(port: u16, keys: &Keys, group: &str, ids: &[String]) -> HashMap<String, (u32, u8)> {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hmget(keys.job(group, id), &["status", "attempts"]);
    }
    let fields: Vec<(Option<String>, Option<u32>)> = query_pipe(port, &pipe).expect("job records");
    ids.iter()
        .cloned()
        .zip(fields)
        .map(|(id, (status, attempts))| {
            let rank = match status.as_deref() {
                None => 0,
                Some("queued") => 1,
                Some("started") => 2,
                Some(_) => 3,
            };
            (id, (attempts.unwrap_or(0), rank))
        })
        .collect()
}

/// Jobs further on `ahead` than on `behind`: each one at least one acknowledged transition
/// that `behind` does not have.
pub fn transitions_missing(ahead: &HashMap<String, (u32, u8)>, behind: &HashMap<String, (u32, u8)>) -> usize {
    ahead
        .iter()
        .filter(|(id, progress)| behind.get(*id).is_none_or(|other| other < progress))
        .count()
}
