//! The checks after each restart, from outside the server: what it reports (grant views, the
//! audit export, the outbox), what the clients were told, what the webhook received and what
//! the targets hold (`at_targets`). Each finding is a line saying what is wrong with what.

use super::api::{Admin, Event};
use super::at_targets;
use super::load::Load;
use super::rig::Rig;
use super::rules::{acked_lost, group, missing_events, settled, unbacked_events};
use anyhow::Result;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long a condition may take to come true after a restart before it counts as failed.
pub const SETTLE: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
pub struct Findings {
    pub orphans: Vec<String>,
    pub lost_alerts: Vec<String>,
    pub events_without_changes: Vec<String>,
    pub grants_without_events: Vec<String>,
    /// A change the client was told had happened that is not there after the restart.
    pub acked_lost: Vec<String>,
    /// Not failures: what the round saw (explained in RELIABILITY.md).
    pub notes: Vec<String>,
    pub grants_checked: usize,
    pub roles_checked: usize,
    pub krl_certs_checked: usize,
    pub ssh_refusals: usize,
    pub ssh_control_logins: usize,
}

/// What the checks carry from one round to the next.
#[derive(Default)]
pub struct Memory {
    /// Views of grants that cannot change any more (ended; credential revoked or none).
    pub settled: HashMap<String, Value>,
    /// Alertable events already found in a received alert (by seq).
    alerted: HashSet<u64>,
    /// Received alerts already matched against the trail (by dedup key).
    matched: HashSet<String>,
    /// Tagged roles seen at PostgreSQL while the load ran: role → grant id in its tag.
    pub roles_seen: BTreeMap<String, String>,
    explained_roles: HashSet<String>,
    /// The last event seen by the previous round.
    last_seq: u64,
    /// How many events of the kinds that show crash windows were hit, in the whole trail.
    pub telling: BTreeMap<&'static str, usize>,
}

/// Event kinds whose count shows that kills hit the windows the checks are about.
const TELLING: [&str; 8] = [
    "credential.orphan_removed",
    "credential.issue_failed",
    "revocation.failed",
    "sweep.failed",
    "alert.dead_lettered",
    "grant.expired",
    "grant.timed_out",
    "credential.revoked",
];

/// One check round; the server is up, the load stopped. `outbox` is every alert the outbox
/// held when the server was killed.
pub async fn round(
    rig: &Rig,
    load: &Load,
    mem: &mut Memory,
    outbox: &[(String, String)],
) -> Result<Findings> {
    let admin = Admin::new(rig.base())?;
    let mut f = Findings::default();
    queued_alerts_delivered(rig, &admin, outbox, &mut f).await?;
    let roles = at_targets::pg_orphans(rig, &admin, &mut f).await?;

    // Grants: every one a client heard of, every one the trail names, every one a role names.
    let events = admin.events().await?;
    let mut ids: HashSet<String> = events.iter().filter_map(|e| e.grant.clone()).collect();
    if let Ok(l) = load.ledger.lock() {
        ids.extend(l.grants.keys().cloned());
    }
    ids.extend(roles.iter().map(|(_, g)| g.clone()));
    ids.retain(|id| !mem.settled.contains_key(id));
    let mut views = HashMap::new();
    for id in &ids {
        views.insert(id.clone(), admin.grant(id).await?);
    }
    wait_for_revocations(&admin, &mut views).await?;
    // Read after the views: the trail holds at least every change the views show.
    let received = rig.hook.received();
    let events = admin.events().await?;
    let by_grant = group(&events);
    f.grants_checked = views.len();

    let ledger = load
        .ledger
        .lock()
        .map(|l| l.grants.clone())
        .unwrap_or_default();
    let mut second_look = Vec::new();
    for (id, view) in &views {
        let evs = by_grant.get(id.as_str()).cloned().unwrap_or_default();
        let held = ledger.get(id);
        f.grants_without_events
            .extend(missing_events(id, view.as_ref(), &evs, held));
        f.acked_lost
            .extend(acked_lost(id, view.as_ref(), &evs, held));
        if !unbacked_events(id, view.as_ref(), &evs).is_empty() {
            second_look.push(id.clone());
        }
    }
    // An event newer than the view (a grant expired meanwhile) is no finding: look again.
    for id in second_look {
        let view = admin.grant(&id).await?;
        let evs = by_grant.get(id.as_str()).cloned().unwrap_or_default();
        f.events_without_changes
            .extend(unbacked_events(&id, view.as_ref(), &evs));
        views.insert(id, view);
    }
    // Revoked at the target means gone from it, unless the same role (named after its grant)
    // was issued again later: a quorum grant's approval may create it, lose it to a crash and
    // the sweep, and create it again. Read now: the events were recorded after the drop.
    let roles_read_at = super::load::now_ms();
    let now_present: HashSet<String> = rig.pg_roles().await?.into_iter().map(|(r, _)| r).collect();
    let mut issued_last: HashMap<String, u64> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == "credential.issued") {
        if let Some(r) = role_named(e) {
            issued_last.insert(r, e.seq);
        }
    }
    for e in &events {
        let role = match e.kind.as_str() {
            "credential.revoked" | "credential.orphan_removed" => role_named(e),
            _ => None,
        };
        if let Some(r) = role
            && now_present.contains(&r)
            && issued_last.get(&r).is_none_or(|s| *s < e.seq)
        {
            f.events_without_changes.push(format!(
                "{} (seq {}) but role {r} is still at PostgreSQL",
                e.kind, e.seq
            ));
        }
    }
    let present: HashSet<&str> = now_present.iter().map(String::as_str).collect();
    // A control: the role a client holds for a grant still active is there.
    for (id, h) in &ledger {
        let active = views
            .get(id)
            .and_then(|v| v.as_ref())
            .is_some_and(|v| v["state"] == "active");
        for c in &h.creds {
            if let (true, super::load::Cred::Pg { role }) = (active, c)
                && !present.contains(role.as_str())
                && admin
                    .grant(id)
                    .await?
                    .is_some_and(|v| v["state"] == "active")
            {
                f.notes.push(format!(
                    "control: grant {id} is active but its role {role} was not at PostgreSQL at {} (now {})",
                    breakglass_core::time::rfc3339(breakglass_core::time::Timestamp(roles_read_at)),
                    breakglass_core::time::rfc3339(breakglass_core::time::Timestamp(super::load::now_ms())),
                ));
            }
        }
    }
    alerts_match_events(rig, &admin, mem, &received, &events, &mut f).await?;
    let all: HashMap<&str, &Value> = mem
        .settled
        .iter()
        .map(|(id, v)| (id.as_str(), v))
        .chain(
            views
                .iter()
                .filter_map(|(id, v)| v.as_ref().map(|v| (id.as_str(), v))),
        )
        .collect();
    at_targets::ssh(rig, load, &all, &mut f).await?;
    roles_explained(mem, &events, &roles, &mut f);
    failures_noted(mem, &events, &mut f);
    for (id, v) in views {
        if let Some(v) = v.filter(settled) {
            mem.settled.insert(id, v);
        }
    }
    Ok(f)
}

/// The role an event names (credential events carry `role:NAME` fingerprints, sweeps `name`).
fn role_named(e: &Event) -> Option<String> {
    if e.data["kind"] != "postgres" {
        return None;
    }
    e.data["fingerprint"]
        .as_str()
        .and_then(|f| f.strip_prefix("role:"))
        .or(e.data["name"].as_str())
        .map(String::from)
}

/// Ended grants whose credential is still being revoked: read again until confirmed (the
/// revoker retries after a restart) or the deadline.
async fn wait_for_revocations(
    admin: &Admin,
    views: &mut HashMap<String, Option<Value>>,
) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let waiting: Vec<String> = views
            .iter()
            .filter_map(|(id, v)| v.as_ref().map(|v| (id, v)))
            .filter(|(_, v)| {
                !matches!(v["state"].as_str(), Some("pending" | "active"))
                    && v["credential_status"].is_object()
                    && v["credential_status"]["state"] != "revoked"
            })
            .map(|(id, _)| id.clone())
            .collect();
        if waiting.is_empty() || Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for id in waiting {
            let v = admin.grant(&id).await?;
            views.insert(id, v);
        }
    }
}

/// (4) Every alert the outbox held at the kill reaches the receiver after the restart; none
/// is dead-lettered.
async fn queued_alerts_delivered(
    rig: &Rig,
    admin: &Admin,
    outbox: &[(String, String)],
    f: &mut Findings,
) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    let missing = loop {
        let missing: Vec<&(String, String)> =
            outbox.iter().filter(|(k, _)| !rig.hook.has(k)).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (key, state) in missing {
        f.lost_alerts.push(format!(
            "alert {key} ({state} at the kill) never reached the receiver"
        ));
    }
    for a in admin.alerts("failed").await? {
        f.lost_alerts.push(format!(
            "alert {} dead-lettered: {}",
            a["dedup_key"], a["last_error"]
        ));
    }
    Ok(())
}

/// The (grant, kind, time) of each event inside a received alert. The grant is the one its
/// dedup key names (`ORIGIN/GRANT/KIND/TS/SINK`, `-` for none): an event about a grant that the
/// unit of work did not change (`credential.issue_failed`) has no `grant` document.
fn alert_events(doc: &Value) -> Vec<(Option<String>, String, String)> {
    let grant = doc["grant"]["id"].as_str().map(String::from).or_else(|| {
        doc["dedup_key"]
            .as_str()
            .and_then(|k| k.rsplit('/').nth(3))
            .filter(|g| *g != "-")
            .map(String::from)
    });
    doc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                grant.clone(),
                e["event"].as_str().unwrap_or("").to_string(),
                e["at"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// (4) Every alertable event in the trail is inside some received alert; (3) every event a
/// received alert reports is in the trail.
async fn alerts_match_events(
    rig: &Rig,
    admin: &Admin,
    mem: &mut Memory,
    received_before: &HashMap<String, Value>,
    events: &[Event],
    f: &mut Findings,
) -> Result<()> {
    let key = |e: &Event| {
        (
            e.grant.clone(),
            e.kind.clone(),
            breakglass_core::time::rfc3339(breakglass_core::time::Timestamp(e.ts)),
        )
    };
    let in_trail: HashSet<_> = events.iter().map(key).collect();
    for (k, doc) in received_before {
        if mem.matched.contains(k) {
            continue;
        }
        for ev in alert_events(doc) {
            if !in_trail.contains(&ev) {
                f.events_without_changes.push(format!(
                    "alert {k} reports {} at {} (grant {:?}), which the audit trail does not hold",
                    ev.1, ev.2, ev.0
                ));
            }
        }
        mem.matched.insert(k.clone());
    }
    let alerting: Vec<&Event> = events
        .iter()
        .filter(|e| {
            breakglass_server::alerts::ALERTING.contains(&e.kind.as_str())
                && !mem.alerted.contains(&e.seq)
        })
        .collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let delivered: HashSet<_> = rig
            .hook
            .received()
            .values()
            .flat_map(alert_events)
            .collect();
        let mut missing: Vec<&&Event> = Vec::new();
        for e in &alerting {
            if mem.alerted.contains(&e.seq) {
                continue;
            }
            if delivered.contains(&key(e)) {
                mem.alerted.insert(e.seq);
            } else {
                missing.push(e);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for e in missing {
                f.lost_alerts.push(format!(
                    "{} (seq {}, grant {:?}) is in the trail but in no alert the receiver got",
                    e.kind, e.seq, e.grant
                ));
            }
            let pending = admin.alerts("pending").await?.len();
            f.notes
                .push(format!("{pending} alert(s) still pending at the deadline"));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Roles seen while the load ran that are gone now must be explained by an event: their
/// grant's `credential.revoked` or a `credential.orphan_removed` naming them. A role of a
/// grant never recorded can also be dropped at once when its grant's commit fails (no event
/// by design), so an unexplained one is a note, not a finding.
fn roles_explained(
    mem: &mut Memory,
    events: &[Event],
    present: &[(String, String)],
    f: &mut Findings,
) {
    let named: HashSet<String> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "credential.revoked" | "credential.orphan_removed"
            )
        })
        .filter_map(role_named)
        .collect();
    let present: HashSet<&str> = present.iter().map(|(r, _)| r.as_str()).collect();
    let mut unexplained = Vec::new();
    for (role, grant) in &mem.roles_seen {
        if present.contains(role.as_str()) || mem.explained_roles.contains(role) {
            continue;
        }
        if named.contains(role) {
            mem.explained_roles.insert(role.clone());
        } else {
            unexplained.push(format!("{role} (grant {grant})"));
            mem.explained_roles.insert(role.clone());
        }
    }
    if !unexplained.is_empty() {
        f.notes.push(format!(
            "{} role(s) seen at PostgreSQL are gone without an event naming them: {}",
            unexplained.len(),
            unexplained.join(", ")
        ));
    }
}

/// Target failures the server audited since the last round, as notes (kind: error, count).
fn failures_noted(mem: &mut Memory, events: &[Event], f: &mut Findings) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.seq > mem.last_seq) {
        if matches!(
            e.kind.as_str(),
            "credential.issue_failed" | "revocation.failed" | "sweep.failed"
        ) {
            // The error without role and grant names, so alike failures count together.
            let err: Vec<&str> = e.data["error"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .map(|w| {
                    if w.contains("bg_") || w.contains("g-") {
                        "…"
                    } else {
                        w
                    }
                })
                .collect();
            let err = err.join(" ");
            *seen.entry(format!("{}: {err}", e.kind)).or_default() += 1;
        }
    }
    mem.last_seq = events.last().map(|e| e.seq).unwrap_or(mem.last_seq);
    for kind in TELLING {
        mem.telling
            .insert(kind, events.iter().filter(|e| e.kind == kind).count());
    }
    for (what, n) in seen {
        f.notes.push(format!("{n} × {what}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alert_events_take_the_grant_from_the_document_or_the_dedup_key() {
        let with_grant =
            json!({"grant": {"id": "g-1"}, "events": [{"event": "grant.activated", "at": "T"}]});
        assert_eq!(
            alert_events(&with_grant),
            [(Some("g-1".into()), "grant.activated".into(), "T".into())]
        );
        let key_only = json!({"grant": null, "dedup_key": "breakglass/abc/g-2/credential.issue_failed/5/hook",
                              "events": [{"event": "credential.issue_failed", "at": "T"}]});
        assert_eq!(alert_events(&key_only)[0].0.as_deref(), Some("g-2"));
        let none = json!({"grant": null, "dedup_key": "breakglass/abc/-/sweep.failed/5/hook",
                          "events": [{"event": "sweep.failed", "at": "T"}]});
        assert_eq!(alert_events(&none)[0].0, None);
    }
}
