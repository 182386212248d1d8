//! Alerts that are never silently lost.
//!
//! When the engine commits an alertable audit event, it writes one outbox row per sink in the
//! SAME transaction ([`enqueue`]). The dispatcher ([`dispatcher`]) leases due rows, delivers them
//! (signed webhook, Slack, PagerDuty Events v2) with exponential backoff and jitter, across
//! restarts, and after the retry budget dead-letters them with an audit event; an admin can
//! retry them. Delivery is at-least-once with a stable dedup key per alert, so receivers drop
//! the duplicate a crash mid-delivery can cause. A slow or dead sink only delays its own alerts.

use breakglass_core::audit::NewEvent;
use breakglass_core::policy::{PolicySet, SinkKind};
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, NewAlert};
use serde_json::{Value, json};
use std::time::Duration;

mod sinks;

pub use sinks::{backoff, deliver, signature, slack_escape, slack_payload};

/// Delivery tunables.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Attempts before an alert is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt (±20 % jitter), capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a node holds an alert it is delivering before another node may retry it.
    pub lease: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            max_attempts: 10,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(3600),
            lease: Duration::from_secs(60),
        }
    }
}

/// Audit event kinds that raise an alert.
pub const ALERTING: &[&str] = &[
    "grant.requested",
    "grant.activated",
    "grant.approved",
    "grant.denied",
    "grant.extended",
    "grant.revoked",
    "grant.cancelled",
    "grant.expired",
    "grant.timed_out",
    "mfa.locked",
    "auth.login_burst",
    "policy.reload_failed",
    "alert.dead_lettered",
    "review.overdue",
    "anomaly.flagged",
    "secret.must_rotate",
    "revocation.failed",
    "credential.issue_failed",
    "credential.orphan_removed",
    "sweep.failed",
    "session.refused",
    "recording.gap",
    "recording.capped",
];

/// What PagerDuty is told about: pages open on activation and security events, resolve when
/// the grant ends.
pub(crate) fn pagerduty_action(kind: &str) -> Option<&'static str> {
    match kind {
        "grant.activated"
        | "mfa.locked"
        | "policy.reload_failed"
        | "alert.dead_lettered"
        | "anomaly.flagged"
        | "review.overdue" => Some("trigger"),
        "grant.expired" | "grant.revoked" => Some("resolve"),
        _ => None,
    }
}

/// Outbox rows for the alertable events of one unit of work. Grant events go to the grant's
/// policy `notify` sinks plus the top-level `notify`; other events to the top-level `notify`.
pub fn enqueue(
    policy: &PolicySet,
    origin: &str,
    public_url: Option<&str>,
    changes: &[Change],
    events: &[NewEvent],
) -> Vec<Change> {
    let mut out = Vec::new();
    for ev in events
        .iter()
        .filter(|e| ALERTING.contains(&e.kind.as_str()))
    {
        let grant = ev.grant_id.as_deref().and_then(|id| {
            changes.iter().find_map(|c| match c {
                Change::InsertGrant(g) | Change::UpdateGrant { grant: g, .. } if g.id() == id => {
                    Some(g)
                }
                _ => None,
            })
        });
        let sinks = policy.sinks_for(grant.map(|g| g.info().policy.as_str()));
        if sinks.is_empty() {
            continue;
        }
        let grant_doc = grant.map(|g| {
            let i = g.info();
            json!({
                "id": i.id, "user": i.user, "resource": i.resource, "policy": i.policy,
                "reason": i.reason, "ticket": i.ticket, "state": g.state_name(),
                "expires_at": g.expires_at().map(rfc3339),
                "flags": i.flags,
            })
        });
        let doc = json!({
            "event": ev.kind,
            "at": rfc3339(Timestamp(ev.ts_ms)),
            "actor": ev.actor,
            "resource": ev.resource,
            "grant": grant_doc,
            "details": ev.data,
            "origin": origin,
            "link": grant.and_then(|g| public_url.map(|u| format!("{}/api/v1/grants/{}", u.trim_end_matches('/'), g.id()))),
        });
        for sink in sinks {
            let Some(s) = policy.sink(&sink) else {
                continue;
            };
            if s.kind == SinkKind::Pagerduty && pagerduty_action(&ev.kind).is_none() {
                continue;
            }
            out.push(Change::EnqueueAlert(NewAlert {
                created_at: Timestamp(ev.ts_ms),
                sink: sink.clone(),
                kind: ev.kind.clone(),
                dedup_key: format!(
                    "{origin}/{}/{}/{}/{sink}",
                    ev.grant_id.as_deref().unwrap_or("-"),
                    ev.kind,
                    ev.ts_ms
                ),
                doc: doc.clone(),
            }));
        }
    }
    out
}

/// A human summary line (Slack text, PagerDuty summary, the first line of an email). Every
/// value in it is flattened to one line ([`one_line`]), so requester text cannot start lines
/// of its own.
pub fn summary(doc: &Value) -> String {
    let s = |v: &Value| one_line(v.as_str().unwrap_or(""));
    let g = &doc["grant"];
    let event = s(&doc["event"]);
    if g.is_object() {
        let mut line = format!(
            "breakglass {event}: {} on {} (policy {}, ticket {}) — \"{}\"",
            s(&g["user"]),
            s(&g["resource"]),
            s(&g["policy"]),
            one_line(g["ticket"].as_str().unwrap_or("none")),
            s(&g["reason"]),
        );
        if let Some(e) = g["expires_at"].as_str() {
            line.push_str(&format!(", until {}", one_line(e)));
        }
        line.push_str(&format!(
            " [grant {}, by {}] — details: {}",
            s(&g["id"]),
            one_line(doc["actor"].as_str().unwrap_or("system")),
            doc["link"]
                .as_str()
                .map(one_line)
                .unwrap_or_else(|| format!("`breakglass status {}`", s(&g["id"])))
        ));
        line
    } else {
        format!(
            "breakglass {event} ({}): {}",
            one_line(doc["actor"].as_str().unwrap_or("system")),
            doc["details"]
        )
    }
}

/// `s` on one line: control characters (newlines included) become a space, so text from a
/// requester can neither start a line of its own in a message nor end a mail header.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
