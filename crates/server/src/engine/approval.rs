//! Approvals and denials of pending grants. Approvals never overwrite each other: a change computed from a stale grant is re-applied on the current one.

use super::factors::{MfaAction, MfaLock, MfaProof, SpendMfaOnError};
use super::request::activation_event;
use super::views::GrantView;
use super::{CAS_RETRIES, Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::{self, AnyGrant, Approved};
use breakglass_store::Change;
use serde_json::json;

impl Engine {
    pub async fn approve(
        &self,
        who: &Principal,
        id: &str,
        otp: Option<&str>,
    ) -> Result<GrantView, ApiError> {
        let proof = otp.map(|c| MfaProof::Totp(c.to_string()));
        self.approve_with_proof(who, id, proof.as_ref(), None).await
    }

    /// [`Engine::approve`] with any proof bound to approving this grant (no recovery code).
    pub async fn approve_with_proof(
        &self,
        who: &Principal,
        id: &str,
        proof: Option<&MfaProof>,
        session: Option<[u8; 32]>,
    ) -> Result<GrantView, ApiError> {
        let p = self.pending_for(who, id).await?;
        // Approvers always pass MFA.
        let action = MfaAction::new("approve", id, session);
        let (changes, events, _mfa) = self.verify_proof(who, proof, &action).await?;
        let mut p = p;
        let mut attempt = 0;
        loop {
            match self.apply_approval(who, p, &changes, &events).await {
                // Another approval (or the time-out) changed the grant since we read it: read it
                // again and apply this approval on top, so approvals never overwrite each other.
                Err(ApiError::Conflict(_)) if attempt < CAS_RETRIES => {
                    attempt += 1;
                    p = self
                        .pending_for(who, id)
                        .await
                        .or_else_spend_mfa(self, &changes, &events)
                        .await?;
                }
                other => return other,
            }
        }
    }

    /// The pending grant `who` may approve (a refusal is audited).
    pub(crate) async fn pending_for(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<grant::Grant<grant::Pending>, ApiError> {
        let g = self.load(id).await?;
        let AnyGrant::Pending(p) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not pending: only pending grants can be approved",
                g.state_name()
            )));
        };
        if let Err(e) = p.check_approver(&who.name, &who.groups) {
            self.refuse(
                who,
                &p.info.resource,
                Some(id),
                "approval-refused",
                &e.to_string(),
                json!({}),
            )
            .await?;
            return Err(ApiError::Forbidden(e.to_string()));
        }
        Ok(p)
    }

    /// Adds one approval (activating the grant at quorum) and commits it with the MFA evidence.
    pub(crate) async fn apply_approval(
        &self,
        who: &Principal,
        p: grant::Grant<grant::Pending>,
        mfa_changes: &[Change],
        mfa_events: &[NewEvent],
    ) -> Result<GrantView, ApiError> {
        let mut changes = mfa_changes.to_vec();
        let mut events = mfa_events.to_vec();
        let now = self.now();
        let info = p.info.clone();
        let next: AnyGrant = match p
            .approve(&who.name, &who.groups, now)
            .map_err(|e| ApiError::Forbidden(e.to_string()))
            .or_else_spend_mfa(self, &changes, &events)
            .await?
        {
            Approved::StillPending(p) => p.into(),
            Approved::Activated(a) => a.into(),
        };
        events.push(event(
            now,
            "grant.approved",
            Some(&who.name),
            Some(&info),
            json!({}),
        ));
        // The grant's compare-and-swap first: an approval computed from a stale read (another
        // one activated the grant meanwhile) is refused as a conflict before its credential
        // record could collide with the winner's.
        changes.push(Change::UpdateGrant {
            expected_state: "pending",
            grant: next.clone(),
        });
        let mut issued = None;
        if let AnyGrant::Active(a) = &next {
            events.push(activation_event(now, &a.info, &a.state));
            // The credential is issued, never shown to the approver: sealed for the holder's
            // one-time pickup (`breakglass credential GRANT_ID`).
            issued = self
                .add_credential(a, true, &mut changes, &mut events)
                .await?;
        }
        if let Err(e) = self.commit(changes, events).await {
            if let Some((connector, handle, _)) = issued {
                // Not recorded: take the credential back now (the sweep is the net).
                if let Err(re) = connector.revoke(&handle).await {
                    tracing::error!(grant = %next.id(), error = %re, "could not revoke a credential whose approval failed to record");
                }
            }
            return Err(e);
        }
        if matches!(next, AnyGrant::Active(_)) {
            self.metrics.activations.inc();
        }
        self.wake.notify_one();
        Ok(GrantView::of(&next, now))
    }

    pub async fn deny(
        &self,
        who: &Principal,
        id: &str,
        reason: &str,
    ) -> Result<GrantView, ApiError> {
        self.deny_proven(who, id, reason, None, None).await
    }

    /// [`Engine::deny`] proven with a fresh code (the web UI asks for one): the code's MFA state
    /// is committed with the denial, and spent when the denial is then refused.
    pub async fn deny_with_mfa(
        &self,
        who: &Principal,
        id: &str,
        reason: &str,
        otp: &str,
    ) -> Result<GrantView, ApiError> {
        let proof = MfaProof::Totp(otp.to_string());
        self.deny_proven(who, id, reason, Some(&proof), None).await
    }

    /// [`Engine::deny_with_mfa`] with any proof bound to denying this grant.
    pub async fn deny_with_proof(
        &self,
        who: &Principal,
        id: &str,
        reason: &str,
        proof: &MfaProof,
        session: Option<[u8; 32]>,
    ) -> Result<GrantView, ApiError> {
        self.deny_proven(who, id, reason, Some(proof), session)
            .await
    }

    async fn deny_proven(
        &self,
        who: &Principal,
        id: &str,
        reason: &str,
        proof: Option<&MfaProof>,
        session: Option<[u8; 32]>,
    ) -> Result<GrantView, ApiError> {
        check_text("reason", reason, 2000)?;
        if reason.trim().is_empty() {
            return Err(ApiError::bad_hint(
                "a denial needs a reason",
                "pass --reason TEXT",
            ));
        }
        let g = self.load(id).await?;
        let AnyGrant::Pending(p) = g else {
            return Err(ApiError::Conflict(format!(
                "grant {id} is {}, not pending: only pending grants can be denied",
                g.state_name()
            )));
        };
        let (mut changes, mut events, _mfa) = match proof {
            Some(p) => {
                let action = MfaAction::new("deny", id, session);
                self.verify_proof(who, Some(p), &action).await?
            }
            None => (Vec::new(), Vec::new(), MfaLock::none()),
        };
        let now = self.now();
        let info = p.info.clone();
        let ended = match p.deny(&who.name, &who.groups, reason.trim().to_string(), now) {
            Ok(e) => e,
            Err(e) => {
                self.refuse(
                    who,
                    &info.resource,
                    Some(id),
                    "denial-refused",
                    &e.to_string(),
                    json!({}),
                )
                .await?;
                return Err::<GrantView, _>(ApiError::Forbidden(e.to_string()))
                    .or_else_spend_mfa(self, &changes, &events)
                    .await;
            }
        };
        let next = AnyGrant::from(ended);
        changes.push(Change::UpdateGrant {
            expected_state: "pending",
            grant: next.clone(),
        });
        events.push(event(
            now,
            "grant.denied",
            Some(&who.name),
            Some(&info),
            json!({"reason": reason.trim()}),
        ));
        self.commit(changes, events).await?;
        Ok(GrantView::of(&next, now))
    }
}
