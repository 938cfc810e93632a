//! The rule about Redis keys (SPEC §2: nothing grows without bound): every key of the
//! namespace expires, except the live structures listed in [`classify`]; and the groups'
//! `queued`/`running` sets and the worker registry hold only live entries.

use super::{Evidence, Findings, Rules, Violation};
use jobfleet_common::coordinator::Keys;

/// What a key is, and whether it may live without an expiry.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    /// `NS:{g}:job:<id>`: no expiry while `queued`/`started` (they end through a worker,
    /// a cancel, a queue timeout or the corrector); terminal records expire after the
    /// retention.
    Record,
    /// `NS:{g}:index`, `queued`, `running`, `group`, `owed`: one per configured group, kept for
    /// the group's life; their entries are removed by the transitions and the index sweep
    /// (checked separately for `queued`/`running`).
    GroupStructure,
    /// `NS:workers`: the one registry hash; the master reaps dead workers' entries.
    Registry,
    /// `NS:audit`: the audit trail, a list trimmed to `audit_entries` at every write.
    Bounded,
    /// Idempotency keys, tombstones, liveness keys, worker records, leases: expire by
    /// design.
    MustExpire(&'static str),
    /// Anything else: must expire, or be added above with the reason it may not.
    Unknown,
}

fn classify(keys: &Keys, groups: &[String], key: &str) -> Class {
    if key == keys.workers() {
        return Class::Registry;
    }
    if key == keys.audit() {
        return Class::Bounded;
    }
    if key.starts_with(&keys.worker("")) {
        return Class::MustExpire("a worker's liveness record");
    }
    if key.starts_with(&keys.lease("")) {
        return Class::MustExpire("a lease");
    }
    for group in groups {
        if key.starts_with(&keys.job(group, "")) {
            return Class::Record;
        }
        let structures = [
            keys.index(group),
            keys.queued(group),
            keys.running(group),
            keys.group(group),
            keys.owed(group),
        ];
        if structures.iter().any(|s| s == key) {
            return Class::GroupStructure;
        }
        if key.starts_with(&keys.idempotency(group, "")) {
            return Class::MustExpire("an idempotency key (retention from submission)");
        }
        if key.starts_with(&keys.tombstone(group, "")) {
            return Class::MustExpire("a deleted job's tombstone (kept for the retention)");
        }
        if key.starts_with(&keys.alive_prefix(group)) {
            return Class::MustExpire("a worker's per-group liveness key");
        }
    }
    Class::Unknown
}

fn is_terminal(status: Option<&str>) -> bool {
    matches!(status, Some("finished" | "failed" | "canceled"))
}

/// Applies the key rules.
pub(super) fn judge_keys(evidence: &Evidence, rules: &Rules, findings: &mut Findings) {
    let Some(keys) = &evidence.key_names else {
        return;
    };
    for info in evidence.keys.iter().filter(|k| k.ttl_ms.is_none()) {
        let why = match classify(keys, &rules.groups, &info.key) {
            Class::Record if is_terminal(info.status.as_deref()) => {
                format!(
                    "a {} record must expire after the retention",
                    info.status.as_deref().unwrap_or("?")
                )
            }
            Class::Record | Class::GroupStructure | Class::Registry | Class::Bounded => continue,
            Class::MustExpire(what) => format!("{what} is written with a TTL"),
            Class::Unknown => "not a key the data model lets live without a TTL".into(),
        };
        findings.violations.push(Violation::KeyWithoutExpiry {
            key: info.key.clone(),
            why,
        });
    }
    for member in &evidence.members {
        if !matches!(member.status.as_deref(), Some("queued" | "started")) {
            findings.violations.push(Violation::StaleMember {
                key: member.key.clone(),
                id: member.id.clone(),
                status: member.status.clone().unwrap_or_else(|| "none".into()),
            });
        }
    }
    for worker in &evidence.unreaped {
        findings.violations.push(Violation::Unreaped {
            worker: worker.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_classified_through_the_coordinators_key_builder() {
        let keys = Keys::new("ns");
        let groups = vec!["g".to_string()];
        assert_eq!(classify(&keys, &groups, &keys.job("g", "a1")), Class::Record);
        assert_eq!(
            classify(&keys, &groups, &keys.running("g")),
            Class::GroupStructure
        );
        assert_eq!(classify(&keys, &groups, &keys.workers()), Class::Registry);
        assert_eq!(classify(&keys, &groups, &keys.audit()), Class::Bounded);
        assert_eq!(classify(&keys, &groups, &keys.owed("g")), Class::GroupStructure);
        assert!(matches!(
            classify(&keys, &groups, &keys.alive("g", "w")),
            Class::MustExpire(_)
        ));
        assert!(matches!(
            classify(&keys, &groups, &keys.worker("w")),
            Class::MustExpire(_)
        ));
        assert_eq!(classify(&keys, &groups, "ns:{g}:mystery"), Class::Unknown);
    }
}
