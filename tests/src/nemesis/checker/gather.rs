//! Collecting the evidence: every result message (a durable queue of the checker's own on
//! `NS.results`), and once the faults stopped, the records, keys, set entries, registry
//! and group states read straight from Redis, polled until everything settled or the
//! bound passed.

use super::{Evidence, GroupState, KeyInfo, Member};
use crate::nemesis::history::{self, Event};
use jobfleet_common::client::ResultSubscriber;
use jobfleet_common::coordinator::{Coordinator, JobRecord, Keys};
use jobfleet_common::message::ResultMessage;
use jobfleet_common::redis::{self, aio::MultiplexedConnection, AsyncCommands};
use jobfleet_common::topology::Topology;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Every result message published during the run, in arrival order.
#[derive(Debug)]
pub struct ResultLog {
    results: Arc<Mutex<(Vec<ResultMessage>, Instant)>>,
    task: JoinHandle<()>,
}

impl ResultLog {
    /// Binds a durable queue `NS.nemesis.results` to every result (`#`) and records what
    /// arrives. The queue keeps results while the broker restarts.
    pub async fn start(amqp_url: &str, topology: Topology) -> ResultLog {
        let queue = format!("{}.nemesis.results", topology.namespace());
        let mut subscriber = ResultSubscriber::durable(amqp_url, topology, &queue, &["#"])
            .await
            .expect("result subscriber");
        let results = Arc::new(Mutex::new((Vec::new(), Instant::now())));
        let sink = results.clone();
        let task = tokio::spawn(async move {
            loop {
                match subscriber.next().await {
                    Ok(result) => {
                        let mut sink = sink.lock().expect("results lock");
                        sink.0.push(result);
                        sink.1 = Instant::now();
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable result message"),
                }
            }
        });
        ResultLog { results, task }
    }

    /// What arrived so far.
    pub fn snapshot(&self) -> Vec<ResultMessage> {
        self.results.lock().expect("results lock").0.clone()
    }

    /// Waits until no result arrived for `quiet` (at most `max`), to catch late copies.
    pub async fn settle(&self, quiet: Duration, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            let last = self.results.lock().expect("results lock").1;
            if last.elapsed() >= quiet || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for ResultLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the checker looks: nothing here goes through the fleet's proxies.
#[derive(Debug)]
pub struct Sources<'a> {
    /// A coordinator on the real Redis (records by id).
    pub coordinator: &'a Coordinator,
    /// The real Redis, for raw key reads.
    pub redis_url: &'a str,
    /// The workload's log.
    pub history: &'a Path,
    /// The result messages.
    pub results: &'a ResultLog,
    /// The fleet's groups.
    pub groups: &'a [String],
}

/// Polls until every job the log names settled (ended, with a result message; an
/// accepted job has an outcome) and the sets and registry hold only live entries, or
/// until `quiet_at + bound`; then reads everything once more. Returns the evidence and
/// how long settling took after `quiet_at` (`None` if the bound passed first).
pub async fn gather(
    sources: &Sources<'_>,
    quiet_at: Instant,
    bound: Duration,
) -> (Evidence, Option<Duration>) {
    let events = history::read(sources.history);
    let keys = sources.coordinator.keys().clone();
    let mut conn = redis::Client::open(sources.redis_url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("the checker reaches Redis");
    let ids: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Submit { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let (accepted, deleted) = accepted_and_deleted(&events);
    let mut pending: Vec<String> = ids.iter().cloned().collect();
    let settled_after = loop {
        let with_result: HashSet<String> = sources.results.snapshot().into_iter().map(|r| r.id).collect();
        let records = read_records(sources.coordinator, &pending).await;
        pending.retain(|id| {
            let done = match records.get(id) {
                Some(r) => r.status.is_terminal() && with_result.contains(id),
                None if deleted.contains(id) => with_result.contains(id),
                None => !accepted.contains(id),
            };
            !done
        });
        let clean = members(&mut conn, &keys, sources.groups)
            .await
            .iter()
            .all(|m| matches!(m.status.as_deref(), Some("queued" | "started")))
            && unreaped(&mut conn, &keys).await.is_empty();
        if pending.is_empty() && clean {
            break Some(quiet_at.elapsed());
        }
        if quiet_at.elapsed() >= bound {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    sources
        .results
        .settle(Duration::from_secs(3), Duration::from_secs(15))
        .await;
    let all: Vec<String> = ids.into_iter().collect();
    let mut groups = Vec::new();
    for name in sources.groups {
        let (failures, broken) = sources
            .coordinator
            .group_health(name)
            .await
            .expect("group health");
        groups.push(GroupState {
            name: name.clone(),
            failures,
            broken,
        });
    }
    let evidence = Evidence {
        records: read_records(sources.coordinator, &all).await,
        results: sources.results.snapshot(),
        keys: scan_keys(&mut conn, &keys, sources.groups).await,
        members: members(&mut conn, &keys, sources.groups).await,
        unreaped: unreaped(&mut conn, &keys).await,
        groups,
        key_names: Some(keys),
        events,
    };
    (evidence, settled_after)
}

/// The accepted ids, and the ids a delete may have removed.
fn accepted_and_deleted(events: &[Event]) -> (HashSet<String>, HashSet<String>) {
    let mut accepted = HashSet::new();
    let mut deleted = HashSet::new();
    for event in events {
        match event {
            Event::Submit { id, outcome, .. } if outcome.is_accepted() => {
                accepted.insert(id.clone());
            }
            Event::Delete { id, outcome, .. } if outcome.may_have_deleted() => {
                deleted.insert(id.clone());
            }
            _ => {}
        }
    }
    (accepted, deleted)
}

/// The records of `ids` that exist, through `Coordinator::jobs` (one id at a time for a
/// batch that fails, so one unreadable record hides no others; it counts as absent and
/// is logged).
async fn read_records(coordinator: &Coordinator, ids: &[String]) -> HashMap<String, JobRecord> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(500) {
        match coordinator.jobs(chunk).await {
            Ok(records) => found.extend(
                chunk
                    .iter()
                    .cloned()
                    .zip(records)
                    .filter_map(|(id, r)| Some((id, r?))),
            ),
            Err(_) => {
                for id in chunk {
                    match coordinator.job(id).await {
                        Ok(Some(record)) => {
                            found.insert(id.clone(), record);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(%id, error = %e, "unreadable record"),
                    }
                }
            }
        }
    }
    found
}

/// Every key of the namespace with its time to live (and a record's status).
async fn scan_keys(conn: &mut MultiplexedConnection, keys: &Keys, groups: &[String]) -> Vec<KeyInfo> {
    let mut names: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(keys.everything()).await.expect("SCAN");
    while let Some(item) = iter.next_item().await {
        names.push(item.expect("SCAN item"));
    }
    drop(iter);
    let record_prefixes: Vec<String> = groups.iter().map(|g| keys.job(g, "")).collect();
    let mut infos = Vec::with_capacity(names.len());
    for chunk in names.chunks(500) {
        // HGET on a key of another type is an error: read statuses of records only.
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("PTTL").arg(key);
            if record_prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                pipe.cmd("HGET").arg(key).arg("status");
            } else {
                pipe.cmd("ECHO").arg("");
            }
        }
        let replies: Vec<(i64, Option<String>)> = pipe.query_async(conn).await.expect("PTTL");
        for (key, (ttl, status)) in chunk.iter().zip(replies) {
            if ttl == -2 {
                continue; // expired between the scan and now
            }
            infos.push(KeyInfo {
                key: key.clone(),
                ttl_ms: (ttl >= 0).then_some(ttl),
                status: status.filter(|s| !s.is_empty()),
            });
        }
    }
    infos
}

/// The entries of every group's `queued` and `running` sets with their records' status.
async fn members(conn: &mut MultiplexedConnection, keys: &Keys, groups: &[String]) -> Vec<Member> {
    let mut members = Vec::new();
    for group in groups {
        let queued: Vec<String> = conn.zrange(keys.queued(group), 0, -1).await.expect("ZRANGE");
        let running: Vec<String> = conn.smembers(keys.running(group)).await.expect("SMEMBERS");
        let entries: Vec<(String, String)> = queued
            .into_iter()
            .map(|id| (keys.queued(group), id))
            .chain(running.into_iter().map(|id| (keys.running(group), id)))
            .collect();
        if entries.is_empty() {
            continue; // an empty pipeline is an error
        }
        let mut pipe = redis::pipe();
        for (_, id) in &entries {
            pipe.hget(keys.job(group, id), "status");
        }
        let statuses: Vec<Option<String>> = pipe.query_async(conn).await.expect("HGET status");
        members.extend(
            entries
                .into_iter()
                .zip(statuses)
                .map(|((key, id), status)| Member { key, id, status }),
        );
    }
    members
}

/// Registry entries whose worker's liveness key is gone.
async fn unreaped(conn: &mut MultiplexedConnection, keys: &Keys) -> Vec<String> {
    let registered: Vec<String> = conn.hkeys(keys.workers()).await.expect("HKEYS");
    if registered.is_empty() {
        return Vec::new();
    }
    let mut pipe = redis::pipe();
    for id in &registered {
        pipe.exists(keys.worker(id));
    }
    let alive: Vec<bool> = pipe.query_async(conn).await.expect("EXISTS");
    registered
        .into_iter()
        .zip(alive)
        .filter_map(|(id, alive)| (!alive).then_some(id))
        .collect()
}
