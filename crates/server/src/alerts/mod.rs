//! Alerts that are never silently lost.
//!
//! When the engine commits alertable audit events, it writes outbox rows in the SAME
//! transaction ([`enqueue`]): per sink, one row for each grant the unit of work concerns (so
//! breaking glass — requested, anomaly flags, activated — is ONE message, flags inside) and one
//! for each event that concerns no grant. The dispatcher ([`dispatcher`]) leases due rows, delivers them
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
    "mfa.passkey_clone_suspected",
    "mfa.passkey_added",
    "mfa.passkey_removed",
    "mfa.recovery_codes_regenerated",
    "mfa.recovery_code_used",
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
    "drill.failed",
    "drill.overdue",
    "drill.identity_misuse",
    "drill.people_opened",
    "glass_case.opened",
    "glass_case.expiring",
];

/// What PagerDuty is told about: pages open on activation and security events, resolve when
/// the grant ends.
pub(crate) fn pagerduty_action(kind: &str) -> Option<&'static str> {
    match kind {
        "grant.activated"
        | "drill.failed"
        | "drill.identity_misuse"
        | "mfa.locked"
        | "mfa.passkey_clone_suspected"
        | "policy.reload_failed"
        | "alert.dead_lettered"
        | "anomaly.flagged"
        | "review.overdue"
        | "glass_case.opened" => Some("trigger"),
        "grant.expired" | "grant.revoked" => Some("resolve"),
        _ => None,
    }
}

/// The event kinds an alert reports, in order: its document's `events` (one alert per grant
/// and unit of work), or just `kind` for an alert queued before alerts were grouped.
pub(crate) fn alert_kinds<'a>(doc: &'a Value, kind: &'a str) -> Vec<&'a str> {
    let kinds: Vec<&str> = doc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect();
    if kinds.is_empty() { vec![kind] } else { kinds }
}

/// PagerDuty's action for an alert: the headline event's, else the first another event of it
/// has (a pending request with anomaly flags triggers; an ending grant resolves).
pub(crate) fn pagerduty_action_of(doc: &Value, kind: &str) -> Option<&'static str> {
    pagerduty_action(kind).or_else(|| {
        alert_kinds(doc, kind)
            .into_iter()
            .find_map(pagerduty_action)
    })
}

/// Which event of a grant's unit of work names its alert, most telling first: breaking glass
/// is `grant.requested` + `anomaly.flagged` + `grant.activated`, and reads as the activation.
const HEADLINE: &[&str] = &[
    "grant.activated",
    "grant.revoked",
    "grant.expired",
    "grant.cancelled",
    "grant.denied",
    "grant.timed_out",
    "grant.extended",
    "grant.approved",
    "grant.requested",
];

fn headline_rank(kind: &str) -> usize {
    HEADLINE
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(HEADLINE.len())
}

/// Outbox rows for the alertable events of one unit of work: ONE alert per grant (its events
/// in order, named after the most telling one, anomaly flags inside), one per event that
/// concerns no grant. Grant events go to the grant's policy `notify` sinks plus the top-level
/// `notify`; other events to the top-level `notify`.
pub fn enqueue(
    policy: &PolicySet,
    origin: &str,
    public_url: Option<&str>,
    changes: &[Change],
    events: &[NewEvent],
) -> Vec<Change> {
    let mut groups: Vec<Vec<&NewEvent>> = Vec::new();
    for ev in events
        .iter()
        .filter(|e| ALERTING.contains(&e.kind.as_str()))
    {
        let same_grant = ev.grant_id.as_deref().and_then(|id| {
            groups
                .iter_mut()
                .find(|g| g[0].grant_id.as_deref() == Some(id))
        });
        match same_grant {
            Some(g) => g.push(ev),
            None => groups.push(vec![ev]),
        }
    }
    let mut out = Vec::new();
    for group in groups {
        // The first of the most telling kind (stable: ties keep the order of the events).
        let Some(head) = group.iter().copied().min_by_key(|e| headline_rank(&e.kind)) else {
            continue;
        };
        let grant = head.grant_id.as_deref().and_then(|id| {
            changes.iter().find_map(|c| match c {
                Change::InsertGrant(g) | Change::UpdateGrant { grant: g, .. } if g.id() == id => {
                    Some(g)
                }
                _ => None,
            })
        });
        let mut sinks = policy.sinks_for(grant.map(|g| g.info().policy.as_str()));
        // Drill grants and drill events also go to the drills' own sinks.
        let drill_event = head.kind.starts_with("drill.");
        // Misuse of the drill identity is a real security alert, not a drill.
        let drill = grant.is_some_and(|g| g.info().drill)
            || (drill_event && head.kind != "drill.identity_misuse");
        if (drill || drill_event)
            && let Some(d) = &policy.drills
        {
            for s in &d.notify {
                if !sinks.contains(s) {
                    sinks.push(s.clone());
                }
            }
        }
        if sinks.is_empty() {
            continue;
        }
        let grant_doc = grant.map(|g| {
            let i = g.info();
            json!({
                "id": i.id, "user": i.user, "resource": i.resource, "policy": i.policy,
                "reason": i.reason, "ticket": i.ticket, "state": g.state_name(),
                "expires_at": g.expires_at().map(rfc3339),
                "flags": i.flags, "drill": i.drill, "training": i.training,
            })
        });
        // The flags raised in this unit of work (the grant's `flags` holds all of them).
        let anomalies: Vec<Value> = group
            .iter()
            .filter(|e| e.kind == "anomaly.flagged")
            .flat_map(|e| e.data["flags"].as_array().cloned().unwrap_or_default())
            .collect();
        let doc = json!({
            "drill": drill,
            "training": grant.and_then(|g| g.info().training.clone()),
            "event": head.kind,
            "at": rfc3339(Timestamp(head.ts_ms)),
            "actor": head.actor,
            "resource": head.resource,
            "grant": grant_doc,
            "details": head.data,
            "anomalies": anomalies,
            "events": group.iter().map(|e| json!({
                "event": e.kind, "at": rfc3339(Timestamp(e.ts_ms)), "actor": e.actor, "details": e.data,
            })).collect::<Vec<_>>(),
            "origin": origin,
            "link": grant.and_then(|g| public_url.map(|u| format!("{}/api/v1/grants/{}", u.trim_end_matches('/'), g.id()))),
        });
        for sink in sinks {
            let Some(s) = policy.sink(&sink) else {
                continue;
            };
            if s.kind == SinkKind::Pagerduty && pagerduty_action_of(&doc, &head.kind).is_none() {
                continue;
            }
            out.push(Change::EnqueueAlert(NewAlert {
                created_at: Timestamp(head.ts_ms),
                sink: sink.clone(),
                kind: head.kind.clone(),
                dedup_key: format!(
                    "{origin}/{}/{}/{}/{sink}",
                    head.grant_id.as_deref().unwrap_or("-"),
                    head.kind,
                    head.ts_ms
                ),
                doc: doc.clone(),
            }));
        }
    }
    out
}

/// The anomaly flags of an alert on one line: `code (message); …`, or `None` without any.
pub(crate) fn anomaly_text(doc: &Value) -> Option<String> {
    let flags = doc["anomalies"].as_array().filter(|a| !a.is_empty())?;
    Some(
        flags
            .iter()
            .map(|f| {
                let code = one_line(f["code"].as_str().unwrap_or("anomaly"));
                match f["message"].as_str() {
                    Some(m) if !m.is_empty() => format!("{code} ({})", one_line(m)),
                    _ => code,
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// A human summary line (Slack text, PagerDuty summary, the first line of an email). Every
/// value in it is flattened to one line ([`one_line`]), so requester text cannot start lines
/// of its own.
pub fn summary(doc: &Value) -> String {
    let s = |v: &Value| one_line(v.as_str().unwrap_or(""));
    let g = &doc["grant"];
    let event = s(&doc["event"]);
    // Drill alerts say so first: nobody mistakes a drill for an incident (or the reverse).
    // A people drill's grant is real access, marked training (a game day).
    let tag = if doc["drill"] == true {
        "DRILL "
    } else if doc["training"].is_string() {
        "TRAINING "
    } else {
        ""
    };
    if g.is_object() {
        let mut line = format!(
            "{tag}breakglass {event}: {} on {} (policy {}, ticket {}) — \"{}\"",
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
            " [grant {}, by {}]",
            s(&g["id"]),
            one_line(doc["actor"].as_str().unwrap_or("system")),
        ));
        if let Some(a) = anomaly_text(doc) {
            line.push_str(&format!(" — ANOMALY: {a}"));
        }
        let kinds: Vec<String> = doc["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event"].as_str())
            .map(one_line)
            .collect();
        if kinds.len() > 1 {
            line.push_str(&format!(" — events: {}", kinds.join(", ")));
        }
        line.push_str(&format!(
            " — details: {}",
            doc["link"]
                .as_str()
                .map(one_line)
                .unwrap_or_else(|| format!("`breakglass status {}`", s(&g["id"])))
        ));
        line
    } else {
        format!(
            "{tag}breakglass {event} ({}): {}",
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use breakglass_core::grant::{self, AnyGrant, GrantInfo};

    const POLICY: &str = r#"
admins: { groups: [security] }
notify: [hook, slack, pager]
sinks:
  - { name: hook, kind: webhook, url: "http://127.0.0.1:9/h", secret_env: HOOK_SECRET }
  - { name: slack, kind: slack, url_env: SLACK_URL }
  - { name: pager, kind: pagerduty, routing_key_env: PD_KEY }
resources:
  - { name: db, kind: exec, grant: ["/bin/true"], revoke: ["/bin/true"] }
policies:
  - name: p
    resources: [db]
    who: { groups: [oncall] }
    approval: { mode: auto }
    duration: { default: 30m, max: 2h }
"#;

    fn info(id: &str, flags: Vec<breakglass_core::anomaly::Flag>) -> GrantInfo {
        GrantInfo {
            id: id.into(),
            user: "bob".into(),
            resource: "db".into(),
            policy: "p".into(),
            reason: "<!channel> orders table locked & co".into(),
            ticket: Some("INC-1".into()),
            requested_at: Timestamp(1_000),
            duration_ms: 1_800_000,
            max_ms: 7_200_000,
            review_by: vec![],
            review_within_ms: None,
            notify: vec![],
            flags,
            ssh_public_key: None,
            rev: 0,
            drill: false,
            training: None,
        }
    }

    fn ev(kind: &str, grant: Option<&str>, data: Value) -> NewEvent {
        NewEvent {
            ts_ms: 1_000,
            kind: kind.into(),
            actor: Some("bob".into()),
            grant_id: grant.map(String::from),
            resource: Some("db".into()),
            data,
        }
    }

    fn flag() -> breakglass_core::anomaly::Flag {
        breakglass_core::anomaly::Flag {
            code: "first-grant".into(),
            message: "bob's first grant on <db>".into(),
        }
    }

    fn alerts(changes: &[Change], events: &[NewEvent]) -> Vec<NewAlert> {
        let p = PolicySet::parse(POLICY).unwrap();
        enqueue(&p, "bg/test", None, changes, events)
            .into_iter()
            .map(|c| match c {
                Change::EnqueueAlert(a) => a,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Breaking glass with an anomaly: requested, flagged and activated in one unit of work.
    fn break_glass(id: &str) -> (Vec<Change>, Vec<NewEvent>) {
        let g = grant::request(
            info(id, vec![flag()]),
            &grant::Approval::Auto,
            Timestamp(1_000),
        );
        let events = vec![
            ev("grant.requested", Some(id), json!({"reason": "x"})),
            ev("anomaly.flagged", Some(id), json!({"flags": [flag()]})),
            ev("grant.activated", Some(id), json!({"via": "auto"})),
        ];
        (vec![Change::InsertGrant(g)], events)
    }

    #[test]
    fn breaking_glass_is_one_alert_per_sink_with_the_flags_inside() {
        let (changes, events) = break_glass("g-1");
        let a = alerts(&changes, &events);
        let sinks: Vec<&str> = a.iter().map(|a| a.sink.as_str()).collect();
        assert_eq!(sinks, ["hook", "slack", "pager"], "{a:?}");
        for x in &a {
            assert_eq!(x.kind, "grant.activated");
            assert_eq!(
                x.dedup_key,
                format!("bg/test/g-1/grant.activated/1000/{}", x.sink)
            );
            assert_eq!(
                alert_kinds(&x.doc, &x.kind),
                ["grant.requested", "anomaly.flagged", "grant.activated"]
            );
            assert_eq!(x.doc["anomalies"][0]["code"], "first-grant");
            assert_eq!(x.doc["grant"]["id"], "g-1");
        }
        assert_eq!(pagerduty_action_of(&a[2].doc, &a[2].kind), Some("trigger"));
        // The one Slack message says what happened, with the flag, escaped as before.
        let text = sinks::slack_payload(&a[1].doc)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.starts_with("breakglass grant.activated: bob on db"),
            "{text}"
        );
        assert!(
            text.contains("ANOMALY: first-grant (bob's first grant on &lt;db&gt;)"),
            "{text}"
        );
        assert!(
            text.contains("events: grant.requested, anomaly.flagged, grant.activated"),
            "{text}"
        );
        assert!(
            text.contains("&lt;!channel&gt; orders table locked &amp; co"),
            "{text}"
        );
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
    }

    #[test]
    fn each_grant_of_a_unit_of_work_gets_its_own_alert_and_other_events_theirs() {
        let (mut changes, mut events) = break_glass("g-1");
        let (c2, e2) = break_glass("g-2");
        changes.extend(c2);
        events.extend(e2);
        events.push(ev("policy.reload_failed", None, json!({"error": "x"})));
        events.push(ev("mfa.verified", Some("g-1"), json!({}))); // not alerting
        let a: Vec<_> = alerts(&changes, &events)
            .into_iter()
            .filter(|a| a.sink == "slack")
            .collect();
        let heads: Vec<(&str, &Value)> = a
            .iter()
            .map(|a| (a.kind.as_str(), &a.doc["grant"]["id"]))
            .collect();
        assert_eq!(
            heads,
            [
                ("grant.activated", &json!("g-1")),
                ("grant.activated", &json!("g-2")),
                ("policy.reload_failed", &Value::Null),
            ]
        );
        assert_eq!(alert_kinds(&a[0].doc, &a[0].kind).len(), 3);
    }

    #[test]
    fn a_pending_request_with_flags_pages_and_an_ending_grant_resolves() {
        let approval = grant::Approval::Quorum {
            count: 1,
            from: vec!["security".into()],
            timeout: None,
            on_timeout: grant::OnTimeout::Deny,
        };
        let g = grant::request(info("g-3", vec![flag()]), &approval, Timestamp(1_000));
        let events = [
            ev("grant.requested", Some("g-3"), json!({})),
            ev("anomaly.flagged", Some("g-3"), json!({"flags": [flag()]})),
        ];
        let a = alerts(&[Change::InsertGrant(g)], &events);
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(a[2].kind, "grant.requested");
        assert_eq!(pagerduty_action_of(&a[2].doc, &a[2].kind), Some("trigger"));

        // Without flags a pending request is no page.
        let g = grant::request(info("g-4", vec![]), &approval, Timestamp(1_000));
        let a = alerts(
            &[Change::InsertGrant(g)],
            &[ev("grant.requested", Some("g-4"), json!({}))],
        );
        assert_eq!(
            a.iter().map(|a| a.sink.as_str()).collect::<Vec<_>>(),
            ["hook", "slack"]
        );

        // Revoked, with the secret to rotate: one alert that resolves the page.
        let AnyGrant::Active(active) = grant::request(
            info("g-5", vec![]),
            &grant::Approval::Auto,
            Timestamp(1_000),
        ) else {
            panic!("auto approval activates");
        };
        let ended = active.revoke("sam", None, Timestamp(2_000));
        let a = alerts(
            &[Change::UpdateGrant {
                expected_state: "active",
                grant: AnyGrant::Ended(ended),
            }],
            &[
                ev("grant.revoked", Some("g-5"), json!({})),
                ev("secret.must_rotate", Some("g-5"), json!({})),
            ],
        );
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a.iter().all(|a| a.kind == "grant.revoked"));
        assert_eq!(pagerduty_action_of(&a[2].doc, &a[2].kind), Some("resolve"));
        assert!(anomaly_text(&a[0].doc).is_none());
    }

    /// Rows queued before alerts were grouped carry no `events`: their kind decides.
    #[test]
    fn ungrouped_rows_still_deliver_by_their_kind() {
        let doc = json!({"event": "grant.expired", "grant": {"id": "g-1"}});
        assert_eq!(alert_kinds(&doc, "grant.expired"), ["grant.expired"]);
        assert_eq!(pagerduty_action_of(&doc, "grant.expired"), Some("resolve"));
        assert_eq!(pagerduty_action_of(&doc, "grant.requested"), None);
    }
}
