//! Ending a grant early (revoke) and extending it.

use super::factors::{MfaLock, MfaPass};
use super::views::GrantView;
use super::{Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::duration;
use breakglass_core::grant::{Active, AnyGrant, Grant, GrantInfo};
use breakglass_core::policy::PolicySet;
use breakglass_core::time::{self, Timestamp};
use breakglass_store::Change;
use serde_json::json;
use std::time::Duration;

impl Engine {
    /// Who may end a grant early: its requester, the policy's approvers and reviewers, admins.
    pub(crate) fn may_revoke(&self, who: &Principal, g: &AnyGrant) -> bool {
        self.may_see(who, g)
    }

    pub async fn revoke(
        &self,
        who: &Principal,
        id: &str,
        reason: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        if let Some(r) = reason {
            check_text("reason", r, 2000)?;
        }
        let g = self.load(id).await?;
        if !self.may_revoke(who, &g) {
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let now = self.now();
        let info = g.info().clone();
        let reason = reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        let (expected, next, kind) = match g {
            AnyGrant::Active(a) => (
                "active",
                AnyGrant::from(a.revoke(&who.name, reason.clone(), now)),
                "grant.revoked",
            ),
            AnyGrant::Pending(p) => (
                "pending",
                AnyGrant::from(p.cancel(&who.name, now)),
                "grant.cancelled",
            ),
            AnyGrant::Ended(_) => {
                return Err(ApiError::Conflict(format!(
                    "grant {id} has already ended ({}); nothing to revoke",
                    g.state_name()
                )));
            }
        };
        self.commit(
            vec![Change::UpdateGrant {
                expected_state: expected,
                grant: next.clone(),
            }],
            vec![event(
                now,
                kind,
                Some(&who.name),
                Some(&info),
                json!({"reason": reason}),
            )],
        )
        .await?;
        self.metrics.revocations.inc();
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    /// Extends `who`'s own active grant by `by`: the policy allows it, MFA proves it, and the
    /// new expiry is committed with its audit events (and any anomaly flag).
    pub async fn extend(
        &self,
        who: &Principal,
        id: &str,
        by: &str,
        otp: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        let by = duration::parse(by).map_err(|e| ApiError::bad(e.to_string()))?;
        let a = self.own_active_grant(who, id).await?;
        let now = self.now();
        let policy = self.policy();
        let new_expiry = self
            .allowed_expiry(who, id, &a, &policy.set, by, now)
            .await?;
        let (mut changes, mut events, _mfa) =
            self.prove_extension(who, &a, &policy.set, otp).await?;
        let info = a.info.clone();
        let old = a.state.expires_at;
        let mut next = a
            .extend(&who.name, new_expiry, now)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        events.extend(self.flag_extension(&mut next, &policy.set, &info, now));
        events.push(event(
            now,
            "grant.extended",
            Some(&who.name),
            Some(&info),
            json!({"by_secs": by.as_secs(), "old_expires_at": time::rfc3339(old), "new_expires_at": time::rfc3339(new_expiry)}),
        ));
        let next = AnyGrant::from(next);
        changes.push(Change::UpdateGrant {
            expected_state: "active",
            grant: next.clone(),
        });
        self.commit(changes, events).await?;
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    /// The grant `id` if it is `who`'s own and active. Someone else's grant is "not found"
    /// unless `who` may see it.
    async fn own_active_grant(&self, who: &Principal, id: &str) -> Result<Grant<Active>, ApiError> {
        let g = self.load(id).await?;
        if g.info().user != who.name {
            if self.may_see(who, &g) {
                return Err(ApiError::Forbidden(format!(
                    "only {} who requested grant {id} can extend it",
                    g.info().user
                )));
            }
            return Err(ApiError::NotFound(format!("no grant {id}")));
        }
        let AnyGrant::Active(a) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not active: only active grants can be extended",
                g.state_name()
            )));
        };
        Ok(a)
    }

    /// The expiry the policy allows after extending by `by`; a refusal is audited and returned.
    async fn allowed_expiry(
        &self,
        who: &Principal,
        id: &str,
        a: &Grant<Active>,
        set: &PolicySet,
        by: Duration,
        now: Timestamp,
    ) -> Result<Timestamp, ApiError> {
        match set.check_extension(
            &a.info.policy,
            &who.name,
            &who.groups,
            &a.info.resource,
            a.state.activated_at,
            a.state.expires_at,
            by,
            now,
        ) {
            Ok(t) => Ok(t),
            Err(refusal) => {
                self.refuse(
                    who,
                    &a.info.resource,
                    Some(id),
                    refusal.code.as_str(),
                    &refusal.message,
                    json!({"by": duration::format(by)}),
                )
                .await?;
                Err(ApiError::Refused(refusal))
            }
        }
    }

    /// MFA for an extension, when the grant's policy requires it (it does if the policy is gone).
    async fn prove_extension(
        &self,
        who: &Principal,
        a: &Grant<Active>,
        set: &PolicySet,
        otp: Option<&str>,
    ) -> Result<MfaPass, ApiError> {
        let mfa_required = set
            .policy(&a.info.policy)
            .map(|p| p.require.mfa)
            .unwrap_or(true);
        if mfa_required {
            self.verify_mfa(who, otp, "extend").await
        } else {
            Ok((vec![], vec![], MfaLock::none()))
        }
    }

    /// Flags an extension beyond the policy's `max_extensions` on the grant; returns its event.
    fn flag_extension(
        &self,
        next: &mut Grant<Active>,
        set: &PolicySet,
        info: &GrantInfo,
        now: Timestamp,
    ) -> Option<NewEvent> {
        let count = u32::try_from(next.state.extensions.len()).unwrap_or(u32::MAX);
        let flag = breakglass_core::anomaly::on_extension(&set.anomalies, count)?;
        self.metrics.anomalies.inc();
        next.info.flags.push(flag.clone());
        Some(event(
            now,
            "anomaly.flagged",
            Some("system"),
            Some(info),
            json!({"flags": [flag]}),
        ))
    }
}
