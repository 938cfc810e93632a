//! Reading records: lookups by job id (searching the fleet's groups), newest-first
//! listings merged across the groups' indexes under a cursor and a budget, index expiry,
//! and the per-group queued/running sets the monitor reads.

use super::record::JobRecord;
use super::{Coordinator, CoordinatorError};
use crate::message::JobStatus;
use deadpool_redis::redis::{self, AsyncCommands};
use std::collections::{HashMap, VecDeque};

/// How many index entries one listing call examines at most; a page that reaches it is
/// returned short, with a cursor to go on from.
const LIST_BUDGET: usize = 10_000;
/// Index entries read per round trip while listing.
const LIST_BATCH: usize = 200;

/// Which jobs a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this group.
    pub group: Option<String>,
    /// Only this function.
    pub function: Option<String>,
    /// Only this status.
    pub status: Option<JobStatus>,
}

impl ListFilter {
    /// Whether a record passes the filter.
    pub fn matches(&self, record: &JobRecord) -> bool {
        self.group.as_ref().is_none_or(|g| *g == record.group)
            && self.function.as_ref().is_none_or(|f| *f == record.function)
            && self.status.is_none_or(|s| s == record.status)
    }
}

/// A position in the newest-first listing: the last entry examined (its index score, the
/// submission time in ms, and its id). Stays valid while jobs are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Index score of the last entry examined.
    pub score: i64,
    /// Id of the last entry examined.
    pub id: String,
}

impl Cursor {
    /// The opaque text form used in the HTTP API.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.score, self.id)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn decode(text: &str) -> Option<Cursor> {
        let (score, id) = text.split_once('.')?;
        let score = score.parse().ok()?;
        crate::message::is_valid_job_id(id).then(|| Cursor {
            score,
            id: id.to_string(),
        })
    }
}

/// One group's index, read newest first from a cursor, a batch at a time.
struct IndexStream {
    key: String,
    buffer: VecDeque<(i64, String)>,
    offset: usize,
    exhausted: bool,
}

impl IndexStream {
    /// Reads batches while the buffer is dry and the index goes on. Equal scores come in
    /// reverse id order, so "after the cursor" is a lower score, or the same score and a
    /// lower id: a whole batch can lie before the cursor (more than a batch of jobs
    /// submitted in one millisecond, as a batch submit does), and the next one is read.
    async fn refill(
        &mut self,
        conn: &mut impl redis::aio::ConnectionLike,
        cursor: Option<&Cursor>,
    ) -> Result<(), CoordinatorError> {
        while self.buffer.is_empty() && !self.exhausted {
            self.read_batch(conn, cursor).await?;
        }
        Ok(())
    }

    /// Reads one batch from the index into the buffer, leaving out entries before the cursor.
    async fn read_batch(
        &mut self,
        conn: &mut impl redis::aio::ConnectionLike,
        cursor: Option<&Cursor>,
    ) -> Result<(), CoordinatorError> {
        let max = cursor.map_or_else(|| "+inf".to_string(), |c| c.score.to_string());
        let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&self.key)
            .arg(max)
            .arg("-inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(self.offset)
            .arg(LIST_BATCH)
            .query_async(conn)
            .await?;
        self.offset += entries.len();
        self.exhausted = entries.len() < LIST_BATCH;
        self.buffer.extend(
            entries
                .into_iter()
                .map(|(id, score)| (score as i64, id))
                .filter(|(score, id)| {
                    cursor.is_none_or(|c| (*score, id.as_str()) < (c.score, c.id.as_str()))
                }),
        );
        Ok(())
    }
}

impl Coordinator {
    /// The group holding job `id`, searching the fleet's groups in one round trip.
    pub async fn group_of(&self, id: &str) -> Result<Option<String>, CoordinatorError> {
        Ok(self.groups_of(&[id]).await?.pop().flatten())
    }

    /// [`Coordinator::group_of`] for many ids, in one pipelined round trip, in their order.
    pub async fn groups_of(&self, ids: &[&str]) -> Result<Vec<Option<String>>, CoordinatorError> {
        if self.groups.is_empty() || ids.is_empty() {
            return Ok(vec![None; ids.len()]);
        }
        let mut pipe = redis::pipe();
        for id in ids {
            for group in self.groups.iter() {
                pipe.exists(self.keys.job(group, id));
            }
        }
        let mut conn = self.connection().await?;
        let found: Vec<bool> = pipe.query_async(&mut *conn).await?;
        Ok(found
            .chunks(self.groups.len())
            .map(|found| {
                self.groups
                    .iter()
                    .zip(found)
                    .find(|(_, f)| **f)
                    .map(|(g, _)| g.clone())
            })
            .collect())
    }

    /// A job's record, or `None` for an unknown id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, CoordinatorError> {
        Ok(self.jobs(&[id.to_string()]).await?.pop().flatten())
    }

    /// Many records in pipelined round trips, in the order of `ids`.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>, CoordinatorError> {
        let mut records = Vec::with_capacity(ids.len());
        let groups = self.groups.len().max(1);
        let mut conn = self.connection().await?;
        // Chunks keep each reply well inside the response timeout.
        for chunk in ids.chunks((500 / groups).max(1)) {
            let mut pipe = redis::pipe();
            for id in chunk {
                for group in self.groups.iter() {
                    pipe.hgetall(self.keys.job(group, id));
                }
            }
            let all: Vec<HashMap<String, String>> = if self.groups.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut *conn).await?
            };
            let mut per_id = all.into_iter();
            for _ in chunk {
                // Take all of this id's replies (one per group) before looking among them.
                let replies: Vec<HashMap<String, String>> = per_id.by_ref().take(self.groups.len()).collect();
                let found = replies.into_iter().find(|f| !f.is_empty());
                records.push(found.map(JobRecord::from_fields).transpose()?);
            }
        }
        Ok(records)
    }

    /// Jobs newest first from the groups' indexes, filtered, after `cursor` (an opaque
    /// position from a previous page). Returns the page and the cursor of the next one. A
    /// call examines at most a bounded number of entries, so a page can come back short
    /// with a cursor when few jobs match.
    pub async fn list(
        &self,
        filter: &ListFilter,
        limit: usize,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<JobRecord>, Option<Cursor>), CoordinatorError> {
        let groups: Vec<&String> = match &filter.group {
            Some(group) => self.groups.iter().filter(|g| *g == group).collect(),
            None => self.groups.iter().collect(),
        };
        let mut streams: Vec<(&String, IndexStream)> = groups
            .into_iter()
            .map(|group| {
                let stream = IndexStream {
                    key: self.keys.index(group),
                    buffer: VecDeque::new(),
                    offset: 0,
                    exhausted: false,
                };
                (group, stream)
            })
            .collect();
        let mut conn = self.connection().await?;
        let mut page = Vec::with_capacity(limit);
        let mut examined = 0;
        let mut last: Option<Cursor> = None;
        while examined < LIST_BUDGET {
            let chunk = next_entries(&mut streams, &mut *conn, cursor, LIST_BATCH).await?;
            if chunk.is_empty() {
                return Ok((page, None));
            }
            examined += chunk.len();
            for ((score, id), record) in self.matching(&mut *conn, filter, &chunk).await? {
                last = Some(Cursor { score, id });
                if let Some(record) = record {
                    page.push(record);
                    if page.len() == limit {
                        return Ok((page, last));
                    }
                }
            }
        }
        Ok((page, last))
    }

    /// The records of `entries` (group, (score, id)) that pass `filter`, each entry with its
    /// record or `None`. With a status or function filter only those fields are read first,
    /// so records that do not match cost no args or results.
    async fn matching(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        filter: &ListFilter,
        entries: &[(&String, (i64, String))],
    ) -> Result<Vec<((i64, String), Option<JobRecord>)>, CoordinatorError> {
        let wanted: Vec<bool> = if filter.function.is_none() && filter.status.is_none() {
            vec![true; entries.len()]
        } else {
            let mut pipe = redis::pipe();
            for (group, (_, id)) in entries {
                pipe.cmd("HMGET")
                    .arg(self.keys.job(group, id))
                    .arg("status")
                    .arg("function");
            }
            let fields: Vec<(Option<String>, Option<String>)> = pipe.query_async(conn).await?;
            fields
                .into_iter()
                .map(|(status, function)| {
                    let status = status.and_then(|s| s.parse::<JobStatus>().ok());
                    filter.status.is_none_or(|s| Some(s) == status)
                        && filter
                            .function
                            .as_ref()
                            .is_none_or(|f| Some(f) == function.as_ref())
                })
                .collect()
        };
        let mut pipe = redis::pipe();
        for ((group, (_, id)), _) in entries.iter().zip(&wanted).filter(|(_, w)| **w) {
            pipe.hgetall(self.keys.job(group, id));
        }
        let mut loaded: VecDeque<HashMap<String, String>> = if wanted.iter().any(|w| *w) {
            pipe.query_async::<Vec<_>>(conn).await?.into()
        } else {
            VecDeque::new()
        };
        let mut out = Vec::with_capacity(entries.len());
        for ((_, entry), wanted) in entries.iter().zip(wanted) {
            // An empty record expired; the sweep removes its index entry.
            let fields = if wanted {
                loaded.pop_front().filter(|f| !f.is_empty())
            } else {
                None
            };
            // One unreadable record (an unknown status written by hand) must not fail the
            // page for everyone: it is left out, with a warning.
            let record = fields.and_then(|fields| match JobRecord::from_fields(fields) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!(job_id = %entry.1, error = %e, "unreadable record left out of a listing");
                    None
                }
            });
            out.push((entry.clone(), record.filter(|r| filter.matches(r))));
        }
        Ok(out)
    }

    /// Removes the index entries older than `older_than_ms` whose record has expired,
    /// group by group, oldest first in batches of `batch`, past entries whose records live
    /// on (jobs still queued or running), examining at most `max_examined` in all. Returns
    /// how many were removed.
    pub async fn sweep_index(
        &self,
        older_than_ms: i64,
        batch: usize,
        max_examined: usize,
    ) -> Result<usize, CoordinatorError> {
        let mut conn = self.connection().await?;
        let (mut removed, mut examined) = (0, 0);
        for group in self.groups.iter() {
            let index = self.keys.index(group);
            let mut alive = 0;
            while examined < max_examined {
                let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&index)
                    .arg("-inf")
                    .arg(older_than_ms)
                    .arg("LIMIT")
                    .arg(alive)
                    .arg(batch)
                    .query_async(&mut *conn)
                    .await?;
                examined += ids.len();
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.exists(self.keys.job(group, id));
                }
                let exists: Vec<bool> = if ids.is_empty() {
                    Vec::new()
                } else {
                    pipe.query_async(&mut *conn).await?
                };
                let gone: Vec<&String> = ids
                    .iter()
                    .zip(&exists)
                    .filter(|(_, e)| !**e)
                    .map(|(id, _)| id)
                    .collect();
                alive += exists.iter().filter(|e| **e).count();
                if !gone.is_empty() {
                    let _: () = conn.zrem(&index, gone.clone()).await?;
                    removed += gone.len();
                }
                if ids.len() < batch {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Ids of a group's queued jobs enqueued before `before_ms`, oldest first.
    pub async fn queued_before(
        &self,
        group: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, CoordinatorError> {
        let mut conn = self.connection().await?;
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.queued(group))
            .arg("-inf")
            .arg(before_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut *conn)
            .await?)
    }

    /// How many of a group's jobs are started now.
    pub async fn running(&self, group: &str) -> Result<u64, CoordinatorError> {
        let mut conn = self.connection().await?;
        Ok(conn.scard(self.keys.running(group)).await?)
    }

    /// Deletes every Redis key of this namespace (tests and `jobfleet` tooling).
    pub async fn purge_namespace(&self) -> Result<u64, CoordinatorError> {
        let mut conn = self.connection().await?;
        let (mut cursor, mut deleted) = (0, 0u64);
        loop {
            let (next, keys) = self.scan_namespace(&mut *conn, cursor).await?;
            if !keys.is_empty() {
                let n: u64 = conn.del(&keys).await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// The bytes every key of this namespace takes in Redis (`MEMORY USAGE … SAMPLES 0`:
    /// each element counted; the benchmark's figure of bytes per job).
    pub async fn namespace_bytes(&self) -> Result<u64, CoordinatorError> {
        let mut conn = self.connection().await?;
        let (mut cursor, mut total) = (0, 0u64);
        loop {
            let (next, keys) = self.scan_namespace(&mut *conn, cursor).await?;
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0);
            }
            if !keys.is_empty() {
                let sizes: Vec<Option<u64>> = pipe.query_async(&mut *conn).await?;
                total += sizes.into_iter().flatten().sum::<u64>();
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    /// One `SCAN` page of this namespace's keys from `cursor`: the next cursor (0: done)
    /// and the keys.
    async fn scan_namespace(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        cursor: u64,
    ) -> Result<(u64, Vec<String>), CoordinatorError> {
        Ok(redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(self.keys.everything())
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?)
    }
}

/// The next up to `count` index entries newest first across `streams`, merged.
async fn next_entries<'g>(
    streams: &mut [(&'g String, IndexStream)],
    conn: &mut impl redis::aio::ConnectionLike,
    cursor: Option<&Cursor>,
    count: usize,
) -> Result<Vec<(&'g String, (i64, String))>, CoordinatorError> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        for (_, stream) in streams.iter_mut() {
            stream.refill(conn, cursor).await?;
        }
        let newest = streams
            .iter_mut()
            .filter_map(|(group, s)| s.buffer.front().cloned().map(|head| (head, *group, s)))
            .max_by(|a, b| a.0.cmp(&b.0));
        let Some((_, group, stream)) = newest else {
            break;
        };
        let entry = stream.buffer.pop_front().expect("a head");
        out.push((group, entry));
    }
    Ok(out)
}
