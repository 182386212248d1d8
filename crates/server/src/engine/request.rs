//! Breaking glass: a request is decided by the policy, proven by MFA, and recorded with its credential in one transaction.

use super::Engine;
use super::Principal;
use super::check_text;
use super::event;
use super::factors::MfaLock;
use super::factors::SpendMfaOnError;
use super::views::GrantView;
use super::views::RequestInput;
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::duration;
use breakglass_core::grant;
use breakglass_core::grant::AnyGrant;
use breakglass_core::grant::GrantInfo;
use breakglass_core::policy;
use breakglass_core::policy::AccessRequest;
use breakglass_core::time;
use breakglass_core::time::Timestamp;
use breakglass_store::Change;
use rand::RngCore;
use serde_json::json;
use std::time::Duration;

pub(crate) fn new_grant_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("g-{}", hex::encode(b))
}

pub(crate) fn to_grant_approval(a: &policy::Approval) -> Option<grant::Approval> {
    match a {
        policy::Approval::Auto => Some(grant::Approval::Auto),
        policy::Approval::Quorum {
            count,
            from,
            timeout,
            on_timeout,
        } => Some(grant::Approval::Quorum {
            count: *count,
            from: from.clone(),
            timeout: *timeout,
            on_timeout: match on_timeout {
                policy::OnTimeout::Deny => grant::OnTimeout::Deny,
                policy::OnTimeout::Auto => grant::OnTimeout::Auto,
            },
        }),
        policy::Approval::Deny => None,
    }
}

pub(crate) fn activation_event(now: Timestamp, info: &GrantInfo, a: &grant::Active) -> NewEvent {
    event(
        now,
        "grant.activated",
        Some("system"),
        Some(info),
        json!({
            "via": a.via, "activated_at": time::rfc3339(a.activated_at),
            "expires_at": time::rfc3339(a.expires_at),
            "approvals": a.approvals.iter().map(|x| x.by.clone()).collect::<Vec<_>>(),
        }),
    )
}

impl Engine {
    pub(crate) async fn refuse(
        &self,
        who: &Principal,
        resource: &str,
        grant_id: Option<&str>,
        code: &str,
        message: &str,
        extra: serde_json::Value,
    ) -> Result<(), ApiError> {
        self.metrics.refusals.inc();
        self.audit_only(vec![NewEvent {
            ts_ms: self.now().0,
            kind: "grant.refused".into(),
            actor: Some(who.name.clone()),
            grant_id: grant_id.map(String::from),
            resource: Some(resource.to_string()),
            data: json!({"code": code, "message": message, "request": extra}),
        }])
        .await
    }

    pub async fn request(
        &self,
        who: &Principal,
        input: RequestInput,
    ) -> Result<GrantView, ApiError> {
        check_text("resource", &input.resource, 64)?;
        check_text("reason", &input.reason, 2000)?;
        if let Some(t) = &input.ticket {
            check_text("ticket", t, 128)?;
        }
        let requested = match input.duration.as_deref() {
            None | Some("") => None,
            Some(d) => Some(duration::parse(d).map_err(|e| ApiError::bad(e.to_string()))?),
        };
        let policy = self.policy();
        let now = self.now();
        let req = AccessRequest {
            user: &who.name,
            groups: &who.groups,
            resource: &input.resource,
            reason: &input.reason,
            ticket: input.ticket.as_deref(),
            duration: requested,
            now,
        };
        let summary = json!({
            "reason": input.reason, "ticket": input.ticket, "duration": input.duration,
        });
        let decision = match policy.set.evaluate(&req) {
            Ok(d) => d,
            Err(refusal) => {
                self.refuse(
                    who,
                    &input.resource,
                    None,
                    refusal.code.as_str(),
                    &refusal.message,
                    summary,
                )
                .await?;
                return Err(ApiError::Refused(refusal));
            }
        };
        let Some(approval) = to_grant_approval(&decision.approval) else {
            let msg = format!(
                "policy {} denies access to {}",
                decision.policy, input.resource
            );
            self.refuse(
                who,
                &input.resource,
                None,
                "denied-by-policy",
                &msg,
                summary,
            )
            .await?;
            return Err(ApiError::Forbidden(msg));
        };
        // Input the target needs is checked before the MFA code is spent.
        let ssh_public_key = match policy.set.resource(&input.resource).map(|r| r.kind) {
            Some(policy::ResourceKind::Ssh) => {
                let text = input.ssh_public_key.as_deref().ok_or_else(|| {
                    ApiError::bad(format!(
                        "{} is an SSH resource: send your public key (CLI: --ssh-key ~/.ssh/id_ed25519.pub)",
                        input.resource
                    ))
                })?;
                breakglass_connectors::ssh::parse_public_key(text)
                    .map_err(|e| ApiError::bad(e.to_string()))?;
                Some(text.trim().to_string())
            }
            _ => None,
        };
        let (mut changes, mut events, _mfa) = if decision.mfa_required {
            match self.verify_mfa(who, input.otp.as_deref(), "request").await {
                Ok(x) => x,
                Err(e) => {
                    if matches!(&e, ApiError::Mfa { slug, .. } if *slug == "mfa-required") {
                        self.refuse(
                            who,
                            &input.resource,
                            None,
                            "mfa-required",
                            &e.to_string(),
                            summary,
                        )
                        .await?;
                    }
                    return Err(e);
                }
            }
        } else {
            (vec![], vec![], MfaLock::none())
        };
        let flags = self.request_flags(who, &input.resource, now).await?;
        let info = GrantInfo {
            rev: 0,
            flags,
            ssh_public_key,
            id: new_grant_id(),
            user: who.name.clone(),
            resource: input.resource.clone(),
            policy: decision.policy.clone(),
            reason: input.reason.trim().to_string(),
            ticket: input.ticket.as_ref().map(|t| t.trim().to_string()),
            requested_at: now,
            duration_ms: u64::try_from(decision.duration.as_millis()).unwrap_or(u64::MAX),
            max_ms: u64::try_from(decision.max.as_millis()).unwrap_or(u64::MAX),
            review_by: decision
                .review
                .as_ref()
                .map(|r| r.by.clone())
                .unwrap_or_default(),
            review_within_ms: decision
                .review
                .as_ref()
                .map(|r| u64::try_from(r.within.as_millis()).unwrap_or(u64::MAX)),
            notify: decision.notify.clone(),
        };
        let g = grant::request(info, &approval, now);
        let info = g.info();
        events.push(event(
            now,
            "grant.requested",
            Some(&who.name),
            Some(info),
            json!({
                "policy": info.policy, "reason": info.reason, "ticket": info.ticket,
                "duration_secs": info.duration_ms / 1000, "mfa": decision.mfa_required,
                "approval": match &approval { grant::Approval::Auto => "auto", grant::Approval::Quorum{..} => "quorum" },
            }),
        ));
        if !info.flags.is_empty() {
            self.metrics.anomalies.add(info.flags.len() as u64);
            events.push(event(
                now,
                "anomaly.flagged",
                Some("system"),
                Some(info),
                json!({"flags": info.flags}),
            ));
        }
        if let AnyGrant::Active(a) = &g {
            events.push(activation_event(now, &a.info, &a.state));
        }
        let mut issued = None;
        if let AnyGrant::Active(a) = &g
            && let Some((change, ev, out)) = self
                .issue_credential(&a.info, a.state.expires_at, false)
                .await
                .or_else_spend_mfa(self, &changes, &events)
                .await?
        {
            changes.push(change);
            events.push(ev);
            issued = Some(out);
        }
        changes.push(Change::InsertGrant(g.clone()));
        // Test hook for the crash window between "credential created at the target" and "grant
        // recorded" (the sweep must clean up after it). Never set in production.
        if issued.is_some() && std::env::var_os("BREAKGLASS_TEST_ABORT_AFTER_ISSUE").is_some() {
            std::process::abort();
        }
        if let Err(e) = self.commit(changes, events).await {
            if let Some((connector, handle, _)) = issued {
                // The grant was not recorded: take the credential back now (the sweep is the net).
                if let Err(re) = connector.revoke(&handle).await {
                    tracing::error!(grant = %g.id(), error = %re, "could not revoke a credential whose grant failed to record");
                }
            }
            return Err(e);
        }
        match &g {
            AnyGrant::Active(_) => self.metrics.activations.inc(),
            _ => self.metrics.pending.inc(),
        }
        self.wake.notify_one();
        let mut view = GrantView::of(&g, now);
        view.credential = issued.and_then(|(_, _, c)| c);
        Ok(view)
    }

    /// Anomaly flags for a new request (facts from the store, decision in the core).
    pub(crate) async fn request_flags(
        &self,
        who: &Principal,
        resource: &str,
        now: Timestamp,
    ) -> Result<Vec<breakglass_core::anomaly::Flag>, ApiError> {
        let policy = self.policy();
        let rules = &policy.set.anomalies;
        let since = |d: Duration| {
            Timestamp(
                now.0
                    .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )
        };
        let (user_recent, resource_recent, had) = self
            .store
            .grant_stats(
                &who.name,
                resource,
                since(rules.per_user.1),
                since(rules.per_resource.1),
            )
            .await?;
        let mfa = self.store.mfa(&who.name).await?;
        let facts = breakglass_core::anomaly::Facts {
            user_recent,
            resource_recent,
            user_had_resource: had,
            lockout_until: mfa.state.last_lockout,
        };
        Ok(breakglass_core::anomaly::on_request(
            rules, &facts, &who.name, resource, now,
        ))
    }
}
