//! Every Redis key name of a namespace, built here and nowhere else (the Lua scripts get
//! theirs as `KEYS`). Keys of one group share the hash tag `{group}`, so each transition
//! touches a single hash slot and a Redis Cluster can spread groups over shards.

use super::flows::FlowId;

/// The key names of one namespace `NS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// The keys of namespace `ns`.
    pub fn new(ns: impl Into<String>) -> Keys {
        Keys { ns: ns.into() }
    }

    /// The common prefix of a group's keys: `NS:{group}:`.
    fn group_prefix(&self, group: &str) -> String {
        format!("{}:{{{group}}}:", self.ns)
    }

    /// A job's record (a hash): `NS:{group}:job:<id>`.
    pub fn job(&self, group: &str, id: &str) -> String {
        format!("{}job:{id}", self.group_prefix(group))
    }

    /// A group's health (failure count, broken flag): `NS:{group}:group`.
    pub fn group(&self, group: &str) -> String {
        format!("{}group", self.group_prefix(group))
    }

    /// A group's jobs by submission time, for listings and expiry: `NS:{group}:index`.
    pub fn index(&self, group: &str) -> String {
        format!("{}index", self.group_prefix(group))
    }

    /// A group's queued jobs by the time they became available: `NS:{group}:queued`.
    pub fn queued(&self, group: &str) -> String {
        format!("{}queued", self.group_prefix(group))
    }

    /// A group's delayed jobs (SPEC §9) by the time they may start, unix ms: the leader
    /// publishes those due and removes them: `NS:{group}:delayed`.
    pub fn delayed(&self, group: &str) -> String {
        format!("{}delayed", self.group_prefix(group))
    }

    /// A group's limits set at run time by admins, over the config file's (a hash:
    /// `paused`, `max_running`, `rate_limit`, `limit_key`): `NS:{group}:limits`.
    pub fn limits(&self, group: &str) -> String {
        format!("{}limits", self.group_prefix(group))
    }

    /// A group's queued jobs held back by its flow control (paused, or at `max_running`)
    /// by the time they were held; the leader releases them as it allows:
    /// `NS:{group}:held`.
    pub fn held(&self, group: &str) -> String {
        format!("{}held", self.group_prefix(group))
    }

    /// The prefix of a group's rate-limit state keys (the next free start time, ms):
    /// `NS:{group}:rate:` + the `limit_key` value (empty without one; the one other key
    /// name completed in Lua, as the value is read from the job's args).
    pub fn rate_prefix(&self, group: &str) -> String {
        format!("{}rate:", self.group_prefix(group))
    }

    /// The schedules created through the API (a hash of name → definition JSON):
    /// `NS:schedules`.
    pub fn schedules(&self) -> String {
        format!("{}:schedules", self.ns)
    }

    /// The fire time (unix ms) each schedule last fired for (a hash of name → ms):
    /// `NS:schedules:fired`.
    pub fn schedules_fired(&self) -> String {
        format!("{}:schedules:fired", self.ns)
    }

    /// A workflow's or batch's state (a hash: its definition, each step's state, counts),
    /// under a hash tag of its own: `NS:{workflow:<id>}:flow`, `NS:{batch:<id>}:flow`.
    pub fn flow(&self, flow: &FlowId) -> String {
        format!("{}:{{{}:{}}}:flow", self.ns, flow.kind.as_str(), flow.id)
    }

    /// The workflows and batches not ended yet, by creation time (unix ms), as
    /// `<kind>:<id>`: what the leader's reconcile looks at: `NS:flows:active`.
    pub fn active_flows(&self) -> String {
        format!("{}:flows:active", self.ns)
    }

    /// A group's jobs the master ended whose result is not confirmed published yet, by the
    /// time they ended (the corrector publishes what stays owed): `NS:{group}:owed`.
    pub fn owed(&self, group: &str) -> String {
        format!("{}owed", self.group_prefix(group))
    }

    /// A group's started jobs (a set of ids): `NS:{group}:running`.
    pub fn running(&self, group: &str) -> String {
        format!("{}running", self.group_prefix(group))
    }

    /// An idempotency key of a group (names the job it created): `NS:{group}:idem:<key>`.
    pub fn idempotency(&self, group: &str, key: &str) -> String {
        format!("{}idem:{key}", self.group_prefix(group))
    }

    /// A job's events: its log lines and progress reports, a bounded stream expiring with
    /// the record (SPEC §10): `NS:{group}:events:<id>`.
    pub fn events(&self, group: &str, id: &str) -> String {
        format!("{}events:{id}", self.group_prefix(group))
    }

    /// What is left of a deleted job (its last status, expiring after the retention), so a
    /// copy of its message that still waits somewhere is dropped: `NS:{group}:gone:<id>`.
    pub fn tombstone(&self, group: &str, id: &str) -> String {
        format!("{}gone:{id}", self.group_prefix(group))
    }

    /// The prefix of a group's worker liveness keys; the claim script appends the owner's
    /// id it reads from the record (the one key name completed in Lua).
    pub fn alive_prefix(&self, group: &str) -> String {
        format!("{}alive:", self.group_prefix(group))
    }

    /// A worker's liveness for one of its groups (expires with its heartbeat).
    pub fn alive(&self, group: &str, worker_id: &str) -> String {
        format!("{}{worker_id}", self.alive_prefix(group))
    }

    /// A worker's fleet-wide liveness key (expires with its heartbeat): `NS:worker:<id>`.
    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}:worker:{worker_id}", self.ns)
    }

    /// The worker registry (a hash of id → last info): `NS:workers`.
    pub fn workers(&self) -> String {
        format!("{}:workers", self.ns)
    }

    /// A lease (the monitor's leader lease): `NS:lease:<name>`.
    pub fn lease(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.ns)
    }

    /// The audit trail (a list of JSON entries, newest first): `NS:audit`.
    pub fn audit(&self) -> String {
        format!("{}:audit", self.ns)
    }

    /// The pattern that matches every key of the namespace.
    pub fn everything(&self) -> String {
        format!("{}:*", self.ns)
    }
}

/// The CRC16 hash slot Redis Cluster gives `key` (honouring a `{tag}`).
#[cfg(test)]
fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_function_matches_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(hash_slot("123456789"), 12739);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
    }

    #[test]
    fn every_key_of_a_group_shares_one_slot() {
        let keys = Keys::new("ns");
        let slot = hash_slot(&keys.group("mail"));
        for key in [
            keys.job("mail", "j-1"),
            keys.index("mail"),
            keys.queued("mail"),
            keys.running("mail"),
            keys.idempotency("mail", "order-42"),
            keys.alive("mail", "w1"),
            keys.tombstone("mail", "j-1"),
            keys.owed("mail"),
            keys.events("mail", "j-1"),
            keys.delayed("mail"),
            keys.limits("mail"),
            keys.held("mail"),
            format!("{}customer-7", keys.rate_prefix("mail")),
        ] {
            assert_eq!(hash_slot(&key), slot, "{key}");
        }
        assert_eq!(keys.job("mail", "j-1"), "ns:{mail}:job:j-1");
        assert_eq!(keys.workers(), "ns:workers");
    }
}
