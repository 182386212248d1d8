//! Post-incident reviews and incident reports.
//!
//! A review opens when a grant that had access ends (see `Engine::commit`). Reviewers are members
//! of the policy's `review.by` groups, never the requester, and pass MFA; verdicts are audited and
//! immutable (a correction is a new entry). Overdue reviews escalate once, with an alert.

use super::{Engine, GrantView, Principal, event};
use crate::error::ApiError;
use breakglass_core::audit::{self, NewEvent, merkle};
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, Review, ReviewEntry};
use serde_json::{Value, json};
use std::time::Duration;

fn review_json(
    r: &Review,
    entries: &[ReviewEntry],
    flags: &[breakglass_core::anomaly::Flag],
    now: Timestamp,
) -> Value {
    json!({
        "flags": flags,
        "grant": r.grant_id,
        "requester": r.requester,
        "state": r.state,
        "opened_at": rfc3339(r.opened_at),
        "due_at": rfc3339(r.due_at),
        "overdue": r.state == "open" && now >= r.due_at,
        "escalated_at": r.escalated_at.map(rfc3339),
        "by": r.by,
        "entries": entries.iter().map(|e| json!({
            "reviewer": e.reviewer, "verdict": e.verdict, "notes": e.notes, "at": rfc3339(e.at),
        })).collect::<Vec<_>>(),
    })
}

impl Engine {
    fn may_review(&self, who: &Principal, r: &Review) -> bool {
        who.groups.iter().any(|g| r.by.contains(g))
    }

    /// Reviews the caller may see (as reviewer or admin).
    pub async fn reviews(&self, who: &Principal, open_only: bool) -> Result<Vec<Value>, ApiError> {
        let now = self.now();
        let admin = self.is_admin(who);
        let mut out = Vec::new();
        for r in self.store.reviews(open_only, 500).await? {
            if admin || self.may_review(who, &r) || r.requester == who.name {
                let entries = self.store.review_entries(&r.grant_id).await?;
                let flags = self.grant_flags(&r.grant_id).await?;
                out.push(review_json(&r, &entries, &flags, now));
            }
        }
        Ok(out)
    }

    /// The review of one grant, if any.
    pub async fn review_of(&self, grant_id: &str) -> Result<Option<Value>, ApiError> {
        let Some(r) = self.store.review(grant_id).await? else {
            return Ok(None);
        };
        let entries = self.store.review_entries(grant_id).await?;
        let flags = self.grant_flags(grant_id).await?;
        Ok(Some(review_json(&r, &entries, &flags, self.now())))
    }

    async fn grant_flags(
        &self,
        grant_id: &str,
    ) -> Result<Vec<breakglass_core::anomaly::Flag>, ApiError> {
        Ok(self
            .store
            .grant(grant_id)
            .await?
            .map(|g| g.info().flags.clone())
            .unwrap_or_default())
    }

    /// Records a verdict.
    pub async fn record_review(
        &self,
        who: &Principal,
        grant_id: &str,
        verdict: &str,
        notes: &str,
        otp: Option<&str>,
    ) -> Result<Value, ApiError> {
        if !["appropriate", "inappropriate"].contains(&verdict) {
            return Err(ApiError::bad_hint(
                format!("unknown verdict {verdict:.40?}"),
                "use --verdict appropriate or --verdict inappropriate",
            ));
        }
        let notes = notes.trim();
        if notes.is_empty() || notes.chars().count() > 4000 {
            return Err(ApiError::bad_hint(
                "review notes are required (at most 4000 characters)",
                "say what you checked and what you found: --notes TEXT",
            ));
        }
        super::check_text("notes", notes, 4000)?;
        let Some(r) = self.store.review(grant_id).await? else {
            return Err(ApiError::NotFound(format!(
                "no review for grant {grant_id:.64}: reviews open when a grant that had access ends"
            )));
        };
        if r.requester == who.name {
            return Err(ApiError::Forbidden(format!(
                "{} requested grant {grant_id}, so cannot review it: a member of {:?} must",
                who.name, r.by
            )));
        }
        // Separation of duties: whoever approved the access does not judge it either.
        let g = self.load(grant_id).await?;
        if g.approvers().contains(&who.name.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "{} approved grant {grant_id}, so cannot review it: another member of {:?} must",
                who.name, r.by
            )));
        }
        if !self.may_review(who, &r) {
            return Err(ApiError::Forbidden(format!(
                "{} is not a reviewer for grant {grant_id}: reviews come from {:?}",
                who.name, r.by
            )));
        }
        let (mut changes, mut events, _mfa) = self.verify_mfa(who, otp, "review").await?;
        let now = self.now();
        changes.push(Change::AddReviewEntry(ReviewEntry {
            grant_id: grant_id.to_string(),
            reviewer: who.name.clone(),
            verdict: verdict.to_string(),
            notes: notes.to_string(),
            at: now,
        }));
        events.push(event(
            now,
            "review.recorded",
            Some(&who.name),
            Some(g.info()),
            json!({"verdict": verdict, "notes": notes, "correction": r.state == "done"}),
        ));
        self.commit(changes, events).await?;
        Ok(self.review_of(grant_id).await?.unwrap_or(Value::Null))
    }

    /// Escalates every overdue review once (audited, alerted). Returns how many.
    pub async fn escalate_overdue(&self) -> Result<usize, ApiError> {
        let now = self.now();
        let mut n = 0;
        for r in self.store.overdue_reviews(now).await? {
            let g = self.load(&r.grant_id).await?;
            let res = self
                .commit(
                    vec![Change::EscalateReview {
                        grant_id: r.grant_id.clone(),
                        at: now,
                    }],
                    vec![event(
                        now,
                        "review.overdue",
                        Some("system"),
                        Some(g.info()),
                        json!({"due_at": rfc3339(r.due_at), "by": r.by}),
                    )],
                )
                .await;
            match res {
                Ok(()) => n += 1,
                Err(ApiError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// The incident report of one grant: request, MFA, approvals, every audited action, alerts
    /// and their delivery, revocation, the review, and for each event an RFC 6962 inclusion
    /// proof to the signed checkpoint that covers it.
    pub async fn report(&self, who: &Principal, grant_id: &str) -> Result<Value, ApiError> {
        let g = self.load(grant_id).await?;
        if !self.may_see(who, &g) {
            let r = self.store.review(grant_id).await?;
            if !r.is_some_and(|r| self.may_review(who, &r)) {
                return Err(ApiError::NotFound(format!("no grant {grant_id:.64}")));
            }
        }
        let now = self.now();
        let records = self.store.audit_for_grant(grant_id).await?;
        let last = records.last().map(|r| r.seq).unwrap_or(0);
        let checkpoint = self
            .store
            .checkpoints()
            .await?
            .into_iter()
            .find(|c| c.size >= last && last > 0);
        // Leaves up to the checkpoint, for inclusion proofs.
        let leaves: Vec<merkle::Hash> = match &checkpoint {
            Some(cp) => {
                let mut v = Vec::new();
                let mut from = 1;
                while from <= cp.size {
                    let batch = self.store.audit_records(from, 10_000).await?;
                    if batch.is_empty() {
                        break;
                    }
                    for r in &batch {
                        if r.seq <= cp.size {
                            v.push(r.leaf_hash);
                        }
                    }
                    from = batch.last().map(|r| r.seq + 1).unwrap_or(from + 1);
                }
                v
            }
            None => Vec::new(),
        };
        let mut timeline = Vec::new();
        for r in &records {
            let ev = audit::decode_body(&r.body).map_err(|e| ApiError::Internal(e.to_string()))?;
            // The row was found by its `grant_id` column; the hashed body must agree.
            if ev.grant_id.as_deref() != Some(grant_id) || ev.seq != r.seq {
                return Err(ApiError::Internal(format!(
                    "audit event {} is indexed under grant {grant_id:.64} but its body does not say so: the audit table was edited (run `breakglass audit verify`)",
                    r.seq
                )));
            }
            let proof = checkpoint.as_ref().map(|_| {
                merkle::inclusion_proof(&leaves, r.seq - 1)
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
            });
            timeline.push(json!({
                "seq": r.seq, "at": rfc3339(Timestamp(ev.ts_ms)), "kind": ev.kind, "actor": ev.actor,
                "details": ev.data, "body": String::from_utf8_lossy(&r.body), "leaf": hex::encode(r.leaf_hash),
                "inclusion_proof": proof,
            }));
        }
        let alerts: Vec<Value> = self
            .store
            .alerts(None, 10_000)
            .await?
            .into_iter()
            .filter(|a| a.doc["grant"]["id"].as_str() == Some(grant_id))
            .map(|a| {
                json!({"id": a.id, "kind": a.kind, "sink": a.sink, "state": a.state, "attempts": a.attempts,
                       "delivered_at": a.delivered_at.map(rfc3339), "last_error": a.last_error})
            })
            .collect();
        let left_behind: Vec<Value> = timeline
            .iter()
            .filter(|e| e["kind"] == "credential.revoked")
            .flat_map(|e| {
                e["details"]["left_behind"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        Ok(json!({
            "generated_at": rfc3339(now),
            "origin": self.keys.origin,
            "grant": GrantView::of(&g, now),
            "timeline": timeline,
            "left_behind": left_behind,
            "sessions": self.store.recording_sessions(grant_id).await?.iter()
                .map(super::recording_views::session_json).collect::<Vec<_>>(),
            "statements": self.report_statements(grant_id).await?,
            "alerts": alerts,
            "review": self.review_of(grant_id).await?,
            "checkpoint": checkpoint.map(|c| json!({"size": c.size, "note": c.note})),
            "public_key_pem": audit::public_key_pem(&self.keys.audit_public()),
        }))
    }
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied().unwrap_or(0)
}

impl Engine {
    /// A period summary for auditors (admins only).
    pub async fn summary(&self, who: &Principal, since: &str) -> Result<Value, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "period reports are for admins (policy `admins`)".into(),
            ));
        }
        let Some(since_ts) = breakglass_core::time::parse_date(since) else {
            return Err(ApiError::bad_hint(
                format!("bad date {since:.40?}"),
                "use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
            ));
        };
        let now = self.now();
        let grants = self.store.grants_since(since_ts, 100_000).await?;
        let mut per_resource = serde_json::Map::new();
        let mut per_user = serde_json::Map::new();
        let mut per_state = serde_json::Map::new();
        let mut ttg = Vec::new();
        let mut with_ticket = 0u64;
        let mut flagged = 0u64;
        for g in &grants {
            let i = g.info();
            for (map, key) in [(&mut per_resource, &i.resource), (&mut per_user, &i.user)] {
                let n = map.get(key).and_then(Value::as_u64).unwrap_or(0);
                map.insert(key.clone(), json!(n + 1));
            }
            let st = g.state_name().to_string();
            let n = per_state.get(&st).and_then(Value::as_u64).unwrap_or(0);
            per_state.insert(st, json!(n + 1));
            if i.ticket.is_some() {
                with_ticket += 1;
            }
            if !i.flags.is_empty() {
                flagged += 1;
            }
            let activated = match g {
                breakglass_core::grant::AnyGrant::Active(a) => Some(a.state.activated_at),
                breakglass_core::grant::AnyGrant::Ended(e) => {
                    e.state.window.as_ref().map(|w| w.activated_at)
                }
                _ => None,
            };
            if let Some(a) = activated {
                ttg.push(a.0 - i.requested_at.0);
            }
        }
        ttg.sort_unstable();
        let reviews: Vec<Review> = self
            .store
            .reviews(false, 100_000)
            .await?
            .into_iter()
            .filter(|r| r.opened_at >= since_ts)
            .collect();
        let done = reviews.iter().filter(|r| r.state == "done").count();
        let overdue = reviews
            .iter()
            .filter(|r| r.state == "open" && now >= r.due_at)
            .count();
        let kinds: serde_json::Map<String, Value> = self
            .store
            .audit_kind_counts(since_ts)
            .await?
            .into_iter()
            .map(|(k, n)| (k, json!(n)))
            .collect();
        let k = |name: &str| kinds.get(name).and_then(Value::as_u64).unwrap_or(0);
        let checkpoints = self
            .store
            .checkpoints()
            .await?
            .iter()
            .filter(|c| c.created_at >= since_ts)
            .count();
        let events: u64 = kinds.values().filter_map(Value::as_u64).sum();
        let people_drills = self.people_drill_report(now).await?;
        let training = grants
            .iter()
            .filter(|g| g.info().training.is_some())
            .count();
        let drill_grants = grants.iter().filter(|g| g.info().drill).count();
        let drills: Vec<_> = self
            .store
            .drills(None, 1000)
            .await?
            .into_iter()
            .filter(|d| d.started_at >= since_ts)
            .collect();
        let passed = drills.iter().filter(|d| d.verdict == "passed").count();
        let people = people_drills["people"].as_array().map_or(0, Vec::len);
        let late = people_drills["overdue"].as_array().map_or(0, Vec::len);
        let controls = json!([
            {"control": "AC-2(2)", "title": "Automated temporary and emergency account management",
             "evidence": format!("{} grants ended by themselves at their deadline, {} revoked early, {} approval time-outs; no credential outlives its grant", k("grant.expired"), k("grant.revoked"), k("grant.timed_out"))},
            {"control": "AC-6(9)", "title": "Log use of privileged functions",
             "evidence": format!("{} privileged grants activated; {} audit events in the period", k("grant.activated"), events)},
            {"control": "AU-9(3)", "title": "Cryptographic protection of audit information",
             "evidence": format!("hash-chained events under an RFC 6962 Merkle tree; {checkpoints} Ed25519-signed checkpoints in the period; verify with `breakglass audit verify`")},
            {"control": "AU-10", "title": "Non-repudiation",
             "evidence": format!("every event names its authenticated actor; {} MFA verifications bound to actions", k("mfa.verified"))},
            {"control": "IA-2(1)", "title": "Multi-factor authentication to privileged accounts",
             "evidence": format!("{} MFA verifications, {} failed codes, {} replays refused, {} lock-outs", k("mfa.verified"), k("mfa.failed"), k("mfa.replayed"), k("mfa.locked"))},
            {"control": "CP-4", "title": "Contingency plan testing",
             "evidence": format!("{passed} of {} drills of the whole break-glass path passed; {} of {people} people who may break glass drilled within {} days", drills.len(), people - late, super::drills::DRILL_EVERY_DAYS)},
            {"control": "IR-4", "title": "Incident handling",
             "evidence": format!("{with_ticket} of {} grants tied to an incident ticket; {done} of {} post-incident reviews completed, {overdue} overdue", grants.len(), reviews.len())},
        ]);
        Ok(json!({
            "since": rfc3339(since_ts),
            "until": rfc3339(now),
            "origin": self.keys.origin,
            "grants": grants.len(),
            "practice": {"drill_grants": drill_grants, "training_grants": training},
            "people_drills": people_drills,
            "per_state": per_state,
            "per_resource": per_resource,
            "per_user": per_user,
            "time_to_glass_ms": {"p50": pct(&ttg, 0.5), "p95": pct(&ttg, 0.95), "max": ttg.last().copied().unwrap_or(0)},
            "refusals": k("grant.refused"),
            "anomalies": {"flagged_grants": flagged, "flags": k("anomaly.flagged")},
            "reviews": {"opened": reviews.len(), "done": done, "open": reviews.len() - done, "overdue": overdue},
            "alerts": {"dead_lettered": k("alert.dead_lettered")},
            "events": kinds,
            "controls": controls,
        }))
    }
}

impl Engine {
    /// The review to open when `change` ends an active grant.
    pub(crate) fn review_for(&self, change: &Change) -> Option<(Change, NewEvent)> {
        let e = change.ends_access()?;
        let info = &e.info;
        // A drill grant is no incident: it opens no review (its result is the drill's record).
        if info.drill {
            return None;
        }
        let now = e.state.ended_at;
        let within = Duration::from_millis(info.review_within_ms.unwrap_or(72 * 3600 * 1000));
        let by = if info.review_by.is_empty() {
            self.policy().set.admins.groups.clone()
        } else {
            info.review_by.clone()
        };
        let due = now.plus(within);
        Some((
            Change::OpenReview(breakglass_store::Review {
                grant_id: info.id.clone(),
                requester: info.user.clone(),
                opened_at: now,
                due_at: due,
                by: by.clone(),
                state: "open".into(),
                escalated_at: None,
            }),
            event(
                now,
                "review.opened",
                Some("system"),
                Some(info),
                json!({"due_at": rfc3339(due), "by": by}),
            ),
        ))
    }

    /// The statements of the grant's SQL sessions (the gateway's `s` records), the first
    /// [`REPORT_STATEMENTS`]: session, text, parameters and outcome as recorded.
    async fn report_statements(&self, grant_id: &str) -> Result<Vec<Value>, ApiError> {
        use breakglass_core::recording::{Kind, decode_chunk};
        let mut out = Vec::new();
        for s in self.store.recording_sessions(grant_id).await? {
            if s.kind != "sql" {
                continue;
            }
            let mut from = 0;
            'chunks: loop {
                let chunks = self.store.recording_chunks(&s.id, from, 16).await?;
                if chunks.is_empty() {
                    break;
                }
                for c in &chunks {
                    from = c.seq + 1;
                    let Some(p) = &c.payload else { continue };
                    for r in decode_chunk(p).unwrap_or_default() {
                        if r.kind != Kind::SqlStatement {
                            continue;
                        }
                        if out.len() >= REPORT_STATEMENTS {
                            break 'chunks;
                        }
                        let mut v: Value = serde_json::from_slice(&r.data).unwrap_or_default();
                        v["session"] = json!(s.id);
                        out.push(v);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Statements listed in an incident report (the recording holds them all).
pub const REPORT_STATEMENTS: usize = 500;
