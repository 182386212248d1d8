//! Ending a grant early (revoke) and extending it.

use super::factors::MfaLock;
use super::views::GrantView;
use super::{Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::grant::AnyGrant;
use breakglass_core::{duration, time};
use breakglass_store::Change;
use serde_json::json;

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

    pub async fn extend(
        &self,
        who: &Principal,
        id: &str,
        by: &str,
        otp: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        let by = duration::parse(by).map_err(|e| ApiError::bad(e.to_string()))?;
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
        let now = self.now();
        let policy = self.policy();
        let new_expiry = match policy.set.check_extension(
            &a.info.policy,
            &who.name,
            &who.groups,
            &a.info.resource,
            a.state.activated_at,
            a.state.expires_at,
            by,
            now,
        ) {
            Ok(t) => t,
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
                return Err(ApiError::Refused(refusal));
            }
        };
        let mfa_required = policy
            .set
            .policy(&a.info.policy)
            .map(|p| p.require.mfa)
            .unwrap_or(true);
        let (mut changes, mut events, _mfa) = if mfa_required {
            self.verify_mfa(who, otp, "extend").await?
        } else {
            (vec![], vec![], MfaLock::none())
        };
        let info = a.info.clone();
        let old = a.state.expires_at;
        let mut next = a
            .extend(&who.name, new_expiry, now)
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        let count = u32::try_from(next.state.extensions.len()).unwrap_or(u32::MAX);
        if let Some(flag) = breakglass_core::anomaly::on_extension(&policy.set.anomalies, count) {
            self.metrics.anomalies.inc();
            next.info.flags.push(flag.clone());
            events.push(event(
                now,
                "anomaly.flagged",
                Some("system"),
                Some(&info),
                json!({"flags": [flag]}),
            ));
        }
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
}
