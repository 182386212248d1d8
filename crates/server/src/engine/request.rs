//! Breaking glass: a request is decided by the policy, proven by MFA, and recorded with its credential in one transaction.

use super::factors::{MfaAction, MfaLock, MfaPass, MfaProof};
use super::views::{GrantView, RequestInput};
use super::{Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::duration;
use breakglass_core::grant::{self, AnyGrant, GrantInfo};
use breakglass_core::policy::{self, AccessRequest};
use breakglass_core::time::{self, Timestamp};
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

    /// Breaks glass: decide, prove, record. Each step refuses (audited) or passes on. The drill
    /// identity never gets here outside a drill: that is refused and alerted as misuse.
    pub async fn request(
        &self,
        who: &Principal,
        input: RequestInput,
    ) -> Result<GrantView, ApiError> {
        let proof = input.otp.clone().map(MfaProof::Totp);
        self.request_with_proof(who, input, proof, None).await
    }

    /// [`Engine::request`] with any MFA proof (a passkey ceremony must have been started for
    /// `request` of this resource, by `session` when given).
    pub async fn request_with_proof(
        &self,
        who: &Principal,
        input: RequestInput,
        proof: Option<MfaProof>,
        session: Option<[u8; 32]>,
    ) -> Result<GrantView, ApiError> {
        if self.is_drill_identity(&who.name, None) {
            return Err(self.drill_identity_misuse(&who.name, "request").await);
        }
        self.request_grant(who, input, proof, session, false).await
    }

    /// Breaking glass for a real responder or (`drill`) the drill runner.
    pub(crate) async fn request_grant(
        &self,
        who: &Principal,
        input: RequestInput,
        proof: Option<MfaProof>,
        session: Option<[u8; 32]>,
        drill: bool,
    ) -> Result<GrantView, ApiError> {
        let started = std::time::Instant::now();
        let requested = check_request(&input)?;
        let now = self.now();
        let (decision, approval) = self.decide(who, &input, requested, now).await?;
        // Input the target needs is checked before the MFA code is spent.
        let ssh_public_key = self.ssh_key_for(&input)?;
        let action = MfaAction::new("request", &input.resource, session);
        let (changes, mut events, _mfa) = self
            .prove(who, &input, &decision, proof.as_ref(), &action)
            .await?;
        // A drill is no real use: no anomaly flags (and none counted).
        let flags = if drill {
            Vec::new()
        } else {
            self.request_flags(who, &input.resource, now).await?
        };
        // Inside an open game-day window a real responder's grant is training: decided now,
        // by the server, from the windows in the store (never by the client).
        let training = if drill {
            None
        } else {
            self.training_window(&input.resource, now).await?
        };
        let mut info = grant_info(who, &input, &decision, flags, ssh_public_key, now);
        info.drill = drill;
        info.training = training;
        // The MFA events were written before the grant was built: they say practice too.
        for e in &mut events {
            breakglass_core::audit::mark_practice(&mut e.data, &info);
        }
        let g = grant::request(info, &approval, now);
        events.extend(request_events(&g, &decision, &approval, now));
        if !g.info().flags.is_empty() {
            self.metrics.anomalies.add(g.info().flags.len() as u64);
        }
        let view = self.record_new_grant(g, changes, events, now).await?;
        if view.state == "active" {
            self.metrics.observe_time_to_grant(started.elapsed());
        }
        Ok(view)
    }

    /// The policy's answer; a refusal is audited and returned.
    async fn decide(
        &self,
        who: &Principal,
        input: &RequestInput,
        requested: Option<Duration>,
        now: Timestamp,
    ) -> Result<(policy::Decision, grant::Approval), ApiError> {
        let policy = self.policy();
        let req = AccessRequest {
            user: &who.name,
            groups: &who.groups,
            resource: &input.resource,
            reason: &input.reason,
            ticket: input.ticket.as_deref(),
            duration: requested,
            now,
        };
        let decision = match policy.set.evaluate(&req) {
            Ok(d) => d,
            Err(refusal) => {
                self.refuse_request(who, input, refusal.code.as_str(), &refusal.message)
                    .await?;
                return Err(ApiError::Refused(refusal));
            }
        };
        let Some(approval) = to_grant_approval(&decision.approval) else {
            let msg = format!(
                "policy {} denies access to {}",
                decision.policy, input.resource
            );
            self.refuse_request(who, input, "denied-by-policy", &msg)
                .await?;
            return Err(ApiError::Forbidden(msg));
        };
        Ok((decision, approval))
    }

    /// Audits a refused request with what was asked.
    async fn refuse_request(
        &self,
        who: &Principal,
        input: &RequestInput,
        code: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let summary = json!({
            "reason": input.reason, "ticket": input.ticket, "duration": input.duration,
        });
        self.refuse(who, &input.resource, None, code, message, summary)
            .await
    }

    /// The requester's SSH public key, required (and checked) for SSH resources.
    fn ssh_key_for(&self, input: &RequestInput) -> Result<Option<String>, ApiError> {
        match self.policy().set.resource(&input.resource).map(|r| r.kind) {
            Some(policy::ResourceKind::Ssh) => {
                let text = input.ssh_public_key.as_deref().ok_or_else(|| {
                    ApiError::bad(format!(
                        "{} is an SSH resource: send your public key (CLI: --ssh-key ~/.ssh/id_ed25519.pub)",
                        input.resource
                    ))
                })?;
                breakglass_connectors::ssh::parse_public_key(text)
                    .map_err(|e| ApiError::bad(e.to_string()))?;
                Ok(Some(text.trim().to_string()))
            }
            _ => Ok(None),
        }
    }

    /// MFA when the policy asks for it (a missing code is audited as a refusal).
    async fn prove(
        &self,
        who: &Principal,
        input: &RequestInput,
        decision: &policy::Decision,
        proof: Option<&MfaProof>,
        action: &MfaAction,
    ) -> Result<MfaPass, ApiError> {
        if !decision.mfa_required {
            return Ok((vec![], vec![], MfaLock::none()));
        }
        match self.verify_proof(who, proof, action).await {
            Ok(x) => Ok(x),
            Err(e) => {
                if matches!(&e, ApiError::Mfa { slug, .. } if *slug == "mfa-required") {
                    self.refuse_request(who, input, "mfa-required", &e.to_string())
                        .await?;
                }
                Err(e)
            }
        }
    }

    /// Issues the credential of an active grant and commits the grant with its events (and the
    /// MFA state); a credential whose grant fails to record is taken back at once.
    async fn record_new_grant(
        &self,
        g: AnyGrant,
        mut changes: Vec<Change>,
        mut events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<GrantView, ApiError> {
        let issued = match &g {
            AnyGrant::Active(a) => {
                self.add_credential(a, false, &mut changes, &mut events)
                    .await?
            }
            _ => None,
        };
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
            .grant_stats(&breakglass_store::StatsQuery {
                user: &who.name,
                resource,
                user_since: since(rules.per_user.1),
                resource_since: since(rules.per_resource.1),
            })
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

/// Text limits and the requested duration.
fn check_request(input: &RequestInput) -> Result<Option<Duration>, ApiError> {
    check_text("resource", &input.resource, 64)?;
    check_text("reason", &input.reason, 2000)?;
    if let Some(t) = &input.ticket {
        check_text("ticket", t, 128)?;
    }
    match input.duration.as_deref() {
        None | Some("") => Ok(None),
        Some(d) => Ok(Some(
            duration::parse(d).map_err(|e| ApiError::bad(e.to_string()))?,
        )),
    }
}

/// What the grant records of the request and the policy's decision.
fn grant_info(
    who: &Principal,
    input: &RequestInput,
    decision: &policy::Decision,
    flags: Vec<breakglass_core::anomaly::Flag>,
    ssh_public_key: Option<String>,
    now: Timestamp,
) -> GrantInfo {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    GrantInfo {
        rev: 0,
        drill: false,
        training: None,
        flags,
        ssh_public_key,
        id: new_grant_id(),
        user: who.name.clone(),
        resource: input.resource.clone(),
        policy: decision.policy.clone(),
        reason: input.reason.trim().to_string(),
        ticket: input.ticket.as_ref().map(|t| t.trim().to_string()),
        requested_at: now,
        duration_ms: ms(decision.duration),
        max_ms: ms(decision.max),
        review_by: decision
            .review
            .as_ref()
            .map(|r| r.by.clone())
            .unwrap_or_default(),
        review_within_ms: decision.review.as_ref().map(|r| ms(r.within)),
        notify: decision.notify.clone(),
    }
}

/// `grant.requested`, `anomaly.flagged` (if any) and `grant.activated` (if auto).
fn request_events(
    g: &AnyGrant,
    decision: &policy::Decision,
    approval: &grant::Approval,
    now: Timestamp,
) -> Vec<NewEvent> {
    let info = g.info();
    let mut events = vec![event(
        now,
        "grant.requested",
        Some(&info.user),
        Some(info),
        json!({
            "policy": info.policy, "reason": info.reason, "ticket": info.ticket,
            "duration_secs": info.duration_ms / 1000, "mfa": decision.mfa_required,
            "approval": match approval { grant::Approval::Auto => "auto", grant::Approval::Quorum{..} => "quorum" },
        }),
    )];
    if !info.flags.is_empty() {
        events.push(event(
            now,
            "anomaly.flagged",
            Some("system"),
            Some(info),
            json!({"flags": info.flags}),
        ));
    }
    if let AnyGrant::Active(a) = g {
        events.push(activation_event(now, &a.info, &a.state));
    }
    events
}
