//! The rules of checks (2) and (3) for one grant, pure: its view as the server reports it,
//! its audit events, and what its client was told.

use super::api::Event;
use super::load::ClientGrant;
use serde_json::Value;
use std::collections::HashMap;

pub fn settled(v: &Value) -> bool {
    let ended = !matches!(v["state"].as_str(), Some("pending" | "active"));
    let cred = &v["credential_status"];
    ended && (cred.is_null() || cred["state"] == "revoked")
}

pub fn group(events: &[Event]) -> HashMap<&str, Vec<&Event>> {
    let mut m: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        if let Some(g) = e.grant.as_deref() {
            m.entry(g).or_default().push(e);
        }
    }
    m
}

fn count(evs: &[&Event], kind: &str) -> usize {
    evs.iter().filter(|e| e.kind == kind).count()
}

fn approvals(v: &Value) -> usize {
    v["approvals"].as_array().map(Vec::len).unwrap_or(0)
}

fn extensions(v: &Value) -> usize {
    v["extensions"].as_u64().unwrap_or(0) as usize
}

/// The event that ends a grant in `state`.
fn end_event(state: &str) -> Option<&'static str> {
    Some(match state {
        "revoked" => "grant.revoked",
        "expired" => "grant.expired",
        "denied" => "grant.denied",
        "cancelled" => "grant.cancelled",
        "timed-out" => "grant.timed_out",
        _ => return None,
    })
}

/// (2) What the server reports (and what the client holds) without the audit events for it.
pub fn missing_events(
    id: &str,
    view: Option<&Value>,
    evs: &[&Event],
    held: Option<&ClientGrant>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut need = |what: &str, kind: &str, n: usize| {
        if count(evs, kind) < n {
            out.push(format!(
                "grant {id}: {what} but {} {kind} event(s) of {n}",
                count(evs, kind)
            ));
        }
    };
    if let Some(v) = view {
        need("exists", "grant.requested", 1);
        if v["activated_at"].is_string() {
            need("was activated", "grant.activated", 1);
        }
        if let Some(kind) = v["state"].as_str().and_then(end_event) {
            need("ended", kind, 1);
        }
        need("has approvals", "grant.approved", approvals(v));
        need("was extended", "grant.extended", extensions(v));
        let cred = &v["credential_status"];
        if cred.is_object() {
            need("has a target credential", "credential.issued", 1);
        }
        if cred["state"] == "revoked" {
            need("its credential is revoked", "credential.revoked", 1);
        }
    }
    if let Some(h) = held {
        if !h.creds.is_empty() {
            need("a client holds its credential", "credential.issued", 1);
        }
        if h.acked.picked_up {
            need(
                "its holder picked up the credential",
                "credential.picked_up",
                1,
            );
        }
    }
    out
}

/// (3) Audit events of a grant that say something happened that its state does not show.
pub fn unbacked_events(id: &str, view: Option<&Value>, evs: &[&Event]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(v) = view else {
        for e in evs {
            if matches!(
                e.kind.as_str(),
                "grant.requested" | "grant.activated" | "grant.approved" | "credential.issued"
            ) {
                out.push(format!(
                    "{} (seq {}) for grant {id}, which the server does not have",
                    e.kind, e.seq
                ));
            }
        }
        return out;
    };
    let state = v["state"].as_str().unwrap_or("");
    let activated = v["activated_at"].is_string();
    for e in evs {
        let wrong = match e.kind.as_str() {
            "grant.activated" | "credential.issued" => !activated,
            "grant.timed_out" if e.data["on_timeout"] == "auto" => !activated,
            "grant.revoked" | "grant.expired" | "grant.denied" | "grant.cancelled"
            | "grant.timed_out" => end_event(state) != Some(e.kind.as_str()),
            "credential.revoked" => v["credential_status"]["state"] != "revoked",
            _ => false,
        };
        if wrong {
            out.push(format!(
                "{} (seq {}) but grant {id} is {state}{}",
                e.kind,
                e.seq,
                if activated { "" } else { ", never activated" }
            ));
        }
    }
    for (kind, n) in [
        ("grant.approved", approvals(v)),
        ("grant.extended", extensions(v)),
    ] {
        if count(evs, kind) > n {
            out.push(format!(
                "grant {id}: {} {kind} events, but the grant shows {n}",
                count(evs, kind)
            ));
        }
    }
    out
}

/// Changes a client was told had happened, missing after the restart.
pub fn acked_lost(
    id: &str,
    view: Option<&Value>,
    evs: &[&Event],
    held: Option<&ClientGrant>,
) -> Vec<String> {
    let Some(h) = held else {
        return vec![];
    };
    let Some(v) = view else {
        return vec![format!(
            "grant {id}: requested with 201 Created, gone after the restart"
        )];
    };
    let mut out = Vec::new();
    let state = v["state"].as_str().unwrap_or("");
    let mut lost = |ok: bool, what: &str| {
        if !ok {
            out.push(format!("grant {id}: {what}, but it is {state} now"));
        }
    };
    lost(
        approvals(v) >= h.acked.approvals as usize,
        &format!("{} approval(s) answered 200", h.acked.approvals),
    );
    lost(
        extensions(v) >= h.acked.extensions as usize,
        &format!("{} extension(s) answered 200", h.acked.extensions),
    );
    lost(!h.acked.revoked || state == "revoked", "revoked with 200");
    lost(
        !h.acked.cancelled || state == "cancelled",
        "cancelled with 200",
    );
    lost(
        h.creds.is_empty() || v["activated_at"].is_string(),
        "its credential was handed out",
    );
    lost(
        !h.acked.picked_up || count(evs, "credential.picked_up") > 0,
        "its credential was picked up",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crash::load::{Acked, Cred, Res};
    use serde_json::json;

    fn ev(seq: u64, kind: &str, data: Value) -> Event {
        Event {
            seq,
            kind: kind.into(),
            grant: Some("g-1".into()),
            ts: 1_000 + seq as i64,
            data,
        }
    }

    fn refs(evs: &[Event]) -> Vec<&Event> {
        evs.iter().collect()
    }

    fn held(acked: Acked, creds: Vec<Cred>) -> ClientGrant {
        ClientGrant {
            user: "r0-0".into(),
            res: Res::DbQuorum,
            last_state: "active".into(),
            acked,
            creds,
        }
    }

    fn revoked_view() -> Value {
        json!({"state": "revoked", "activated_at": "t", "approvals": [{"by": "a1"}], "extensions": 1,
               "credential_status": {"state": "revoked"}})
    }

    fn full_trail() -> Vec<Event> {
        vec![
            ev(1, "grant.requested", json!({})),
            ev(2, "grant.approved", json!({})),
            ev(3, "grant.activated", json!({})),
            ev(4, "credential.issued", json!({})),
            ev(5, "credential.picked_up", json!({})),
            ev(6, "grant.extended", json!({})),
            ev(7, "grant.revoked", json!({})),
            ev(8, "credential.revoked", json!({})),
        ]
    }

    #[test]
    fn a_consistent_grant_has_no_findings() {
        let trail = full_trail();
        let v = revoked_view();
        let acked = Acked {
            approvals: 1,
            extensions: 1,
            revoked: true,
            picked_up: true,
            ..Acked::default()
        };
        let h = held(
            acked,
            vec![Cred::Pg {
                role: "bg_1".into(),
            }],
        );
        assert!(missing_events("g-1", Some(&v), &refs(&trail), Some(&h)).is_empty());
        assert!(unbacked_events("g-1", Some(&v), &refs(&trail)).is_empty());
        assert!(acked_lost("g-1", Some(&v), &refs(&trail), Some(&h)).is_empty());
        assert!(settled(&v));
    }

    #[test]
    fn each_missing_event_is_named() {
        let v = revoked_view();
        for (i, kind) in [
            "grant.requested",
            "grant.approved",
            "grant.activated",
            "credential.issued",
            "grant.extended",
            "grant.revoked",
            "credential.revoked",
        ]
        .iter()
        .enumerate()
        {
            let trail: Vec<Event> = full_trail()
                .into_iter()
                .filter(|e| e.kind != *kind)
                .collect();
            let found = missing_events("g-1", Some(&v), &refs(&trail), None);
            assert!(
                found.iter().any(|f| f.contains(kind)),
                "{i}: {kind} missing is not reported: {found:?}"
            );
        }
    }

    #[test]
    fn events_the_state_does_not_show_are_reported() {
        // Activated, extended twice and revoked per the trail; the server shows a pending grant.
        let mut trail = full_trail();
        trail.push(ev(9, "grant.extended", json!({})));
        let pending = json!({"state": "pending", "approvals": [], "extensions": 0});
        let found = unbacked_events("g-1", Some(&pending), &refs(&trail));
        for kind in [
            "grant.activated",
            "credential.issued",
            "grant.revoked",
            "credential.revoked",
            "grant.approved",
            "grant.extended",
        ] {
            assert!(found.iter().any(|f| f.contains(kind)), "{kind}: {found:?}");
        }
        // A grant the server does not have at all.
        assert!(!unbacked_events("g-1", None, &refs(&trail)).is_empty());
        // A time-out that fell back to auto activates: fine when the grant was activated.
        let t = vec![ev(1, "grant.timed_out", json!({"on_timeout": "auto"}))];
        let active = json!({"state": "active", "activated_at": "t"});
        assert!(unbacked_events("g-1", Some(&active), &refs(&t)).is_empty());
        let timed_out = json!({"state": "timed-out"});
        let t = vec![ev(1, "grant.timed_out", json!({"on_timeout": "deny"}))];
        assert!(unbacked_events("g-1", Some(&timed_out), &refs(&t)).is_empty());
    }

    #[test]
    fn what_a_client_was_told_must_survive() {
        let trail = full_trail();
        let active =
            json!({"state": "active", "activated_at": "t", "approvals": [], "extensions": 0});
        let acked = Acked {
            approvals: 1,
            extensions: 1,
            revoked: true,
            ..Acked::default()
        };
        let found = acked_lost(
            "g-1",
            Some(&active),
            &refs(&trail),
            Some(&held(acked, vec![])),
        );
        assert_eq!(found.len(), 3, "{found:?}");
        let gone = acked_lost("g-1", None, &[], Some(&held(Acked::default(), vec![])));
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(!settled(&active));
        assert!(!settled(
            &json!({"state": "expired", "credential_status": {"state": "revoking"}})
        ));
        assert_eq!(group(&trail)["g-1"].len(), trail.len());
    }
}
