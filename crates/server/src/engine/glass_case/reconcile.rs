//! Reconciling an opened glass case: its signed journals into the audit chain, a review per
//! released resource, every certificate serial into the KRL, released secrets must rotate, and
//! every emergency PostgreSQL login of the case dropped.

use super::super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::glass_case as gc;
use breakglass_core::grant::{self, AnyGrant, Approval, GrantInfo};
use breakglass_core::policy::ResourceKind;
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, GlassCase, GlassSerial};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Most journals one reconcile takes (one per opening).
const MAX_JOURNALS: usize = 32;

/// The days a case covered (what a reseal offers again).
fn case_days(c: &GlassCase) -> i64 {
    ((c.expires_at.0 - c.created_at.0) + gc::DAY_MS - 1) / gc::DAY_MS
}

impl Engine {
    /// Imports the signed journals of a case's openings: audit events, a review per released
    /// resource (as an ended grant), every serial of the case into the KRL, released secrets
    /// flagged must-rotate. The journals are verified before anything changes.
    pub async fn glass_case_reconcile(
        &self,
        who: &Principal,
        journals: &[String],
        reseal_days: Option<u32>,
        otp: Option<&str>,
    ) -> Result<Value, ApiError> {
        self.admin_only(who, "reconciling a glass case")?;
        if journals.is_empty() || journals.len() > MAX_JOURNALS {
            return Err(ApiError::bad_hint(
                format!("give 1 to {MAX_JOURNALS} journals"),
                "pass the file `glass-case open` wrote: --journal FILE",
            ));
        }
        let bad = |e: gc::GlassCaseError| ApiError::bad(e.to_string());
        let case_id = gc::peek_case_id(journals[0].as_bytes()).map_err(bad)?;
        if journals
            .iter()
            .any(|j| gc::peek_case_id(j.as_bytes()).ok().as_ref() != Some(&case_id))
        {
            return Err(ApiError::bad(
                "the journals are from different glass cases: reconcile one case at a time",
            ));
        }
        let Some(case) = self.store.glass_case(&case_id).await? else {
            return Err(ApiError::NotFound(format!(
                "no glass case {case_id:.64} was sealed by this server"
            )));
        };
        if let Some(days) = reseal_days {
            gc::check_plan(&case.custodians, case.threshold, days).map_err(bad)?;
            self.check_case_not_empty()?;
        }
        let key: [u8; 32] = case
            .journal_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::Internal("stored journal key is not 32 bytes".into()))?;
        let mut bodies = Vec::new();
        for j in journals {
            match gc::verify_journal(j.as_bytes(), &key) {
                Ok(b) => bodies.push(b),
                Err(e) => {
                    // Audited, nothing else changes.
                    self.audit_only(vec![event(
                        self.now(),
                        "glass_case.journal_refused",
                        Some(&who.name),
                        None,
                        json!({"case_id": case_id, "why": e.to_string()}),
                    )])
                    .await?;
                    return Err(bad(e));
                }
            }
        }
        if case.state != "sealed" {
            return Err(ApiError::Conflict(format!(
                "glass case {case_id} was reconciled already: its certificates are in the KRL"
            )));
        }
        let serials: BTreeMap<u64, GlassSerial> = self
            .store
            .glass_case_serials(&case_id)
            .await?
            .into_iter()
            .map(|s| (s.serial, s))
            .collect();
        let roles = self.store.glass_case_roles(&case_id).await?;
        for b in &bodies {
            for r in &b.releases {
                super::super::check_text("resource", &r.resource, 128)?;
                if !["ssh-certificate", "secret", "postgres-role"].contains(&r.kind.as_str()) {
                    return Err(ApiError::bad(format!(
                        "the journal lists an item of unknown kind {:.32?}",
                        r.kind
                    )));
                }
                if r.kind == "ssh-certificate"
                    && r.serial
                        .and_then(|s| serials.get(&s))
                        .is_none_or(|s| s.resource != r.resource)
                {
                    return Err(ApiError::bad(format!(
                        "the journal lists a certificate (serial {:?}) that case {case_id} never held",
                        r.serial
                    )));
                }
                if r.kind == "postgres-role"
                    && !r.role.as_ref().is_some_and(|n| {
                        roles
                            .iter()
                            .any(|g| &g.role == n && g.resource == r.resource)
                    })
                {
                    return Err(ApiError::bad(format!(
                        "the journal lists a PostgreSQL login ({:.64?}) that case {case_id} never held",
                        r.role
                    )));
                }
            }
            for c in &b.custodians {
                super::super::check_text("custodian", c, 64)?;
            }
            super::super::check_text("host", &b.host, 256)?;
        }
        let (mut changes, mut events, _mfa) = self
            .verify_mfa(who, otp, "reconciling a glass case")
            .await?;
        let now = self.now();
        let policy = self.policy();
        let mut reviews = Vec::new();
        let mut must_rotate = Vec::new();
        for (n, b) in bodies.iter().enumerate() {
            events.push(event(
                now,
                "glass_case.opened",
                Some(&who.name),
                None,
                json!({"case_id": case_id, "opened_at": rfc3339(Timestamp(b.opened_at)),
                       "custodians": b.custodians, "host": b.host,
                       "releases": b.releases.len()}),
            ));
            // One ended grant per released resource: the review and the secret's rotation flag
            // come from ending it, as for any grant that had access.
            let mut by_resource: BTreeMap<&str, Vec<&gc::Release>> = BTreeMap::new();
            for r in &b.releases {
                by_resource.entry(&r.resource).or_default().push(r);
            }
            for (i, (resource, rels)) in by_resource.into_iter().enumerate() {
                let at = Timestamp(rels.iter().map(|r| r.at).min().unwrap_or(b.opened_at));
                let info = GrantInfo {
                    id: format!("{case_id}-{}-{}", n + 1, i + 1),
                    user: "glass-case".into(),
                    resource: resource.to_string(),
                    policy: "glass-case".into(),
                    reason: format!(
                        "offline glass case {case_id} opened by {}",
                        b.custodians.join(", ")
                    ),
                    ticket: None,
                    requested_at: at,
                    duration_ms: gc::DAY_MS as u64,
                    max_ms: gc::DAY_MS as u64,
                    review_by: policy.set.admins.groups.clone(),
                    review_within_ms: None,
                    notify: vec![],
                    flags: vec![],
                    ssh_public_key: None,
                    drill: false,
                    training: None,
                    rev: 0,
                };
                let AnyGrant::Active(active) = grant::request(info, &Approval::Auto, at) else {
                    return Err(ApiError::Internal("auto approval did not activate".into()));
                };
                for r in &rels {
                    events.push(event(
                        Timestamp(r.at),
                        "glass_case.released",
                        Some("glass-case"),
                        Some(&active.info),
                        json!({"case_id": case_id, "kind": r.kind, "serial": r.serial,
                               "version": r.version, "role": r.role, "custodians": b.custodians}),
                    ));
                }
                let ended =
                    active
                        .clone()
                        .revoke(&who.name, Some("glass case reconciled".into()), now);
                reviews.push(ended.info.id.clone());
                if policy
                    .set
                    .resource(resource)
                    .is_some_and(|r| r.kind == ResourceKind::Secret)
                {
                    must_rotate.push(resource.to_string());
                }
                changes.push(Change::InsertGrant(AnyGrant::Active(active)));
                changes.push(Change::UpdateGrant {
                    expected_state: "active",
                    grant: AnyGrant::Ended(ended),
                });
            }
        }
        events.push(event(
            now,
            "glass_case.reconciled",
            Some(&who.name),
            None,
            json!({"case_id": case_id, "journals": bodies.len(),
                   "serials_revoked": serials.len(), "reviews": reviews,
                   "must_rotate": must_rotate}),
        ));
        changes.push(Change::ReconcileGlassCase {
            id: case_id.clone(),
            at: now,
        });
        self.commit(changes, events).await?;
        // Every login of the case goes, used or not; what the target refuses now, the sweep
        // drops later (the case is no longer sealed, so its roles are no longer owned).
        let d = self.drop_glass_roles(&roles).await;
        if !roles.is_empty() {
            let pending: Vec<_> = d
                .pending
                .iter()
                .map(|(r, e)| json!({"role": r, "error": e}))
                .collect();
            self.audit_only(vec![event(
                self.now(),
                "glass_case.logins_dropped",
                Some("system"),
                None,
                json!({"case_id": case_id, "dropped": d.dropped, "pending": pending,
                       "left_behind": d.left_behind}),
            )])
            .await?;
        }
        let reseal = format!(
            "breakglass glass-case seal --custodians {} --threshold {} --days N",
            case.custodians.join(","),
            case.threshold
        );
        // The reseal rides on this request's MFA (spent with the reconcile above). If it
        // fails, the reconcile stands: the answer says why and how to seal by hand.
        let sealed = match reseal_days {
            None => Value::Null,
            Some(days) => match self
                .seal_with(who, &case.custodians, case.threshold, days, vec![], vec![])
                .await
            {
                Ok(v) => v,
                Err(e) => json!({"error": e.to_string()}),
            },
        };
        Ok(
            json!({"case_id": case_id, "journals": bodies.len(), "sealed": sealed,
                  "serials_revoked": serials.len(), "reviews": reviews,
                  "must_rotate": must_rotate, "reseal": reseal,
                  "postgres_logins_dropped": d.dropped.len(),
                  "postgres_logins_pending": d.pending.len(),
                  "days": case_days(&case)}),
        )
    }
}
