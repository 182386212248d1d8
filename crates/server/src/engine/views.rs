//! What the engine answers with: the API views of grants, logins and enrolments.

use breakglass_core::grant::{self, AnyGrant};
use breakglass_core::time::{self, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalView {
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantView {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub policy: String,
    pub state: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_at: String,
    pub duration_secs: u64,
    pub max_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    pub approvals: Vec<ApprovalView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals_needed: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_timeout_at: Option<String>,
    pub extensions: u32,
    pub now: String,
    /// Anomaly flags raised on this grant.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<breakglass_core::anomaly::Flag>,
    /// A drill grant (not real use).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub drill: bool,
    /// The people-drill window it was requested in: a real grant, marked training.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub training: Option<String>,
    /// The credential issued at the target: returned ONCE, in the response that activated the
    /// grant for its requester; never stored, never repeated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<serde_json::Value>,
    /// Where the target credential stands (single-grant views): issued, revoking
    /// ("revocation pending", with attempts and last error) or revoked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential_status: Option<serde_json::Value>,
    /// The post-incident review, once the grant has ended (single-grant views only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub review: Option<serde_json::Value>,
}

impl GrantView {
    pub fn of(g: &AnyGrant, now: Timestamp) -> GrantView {
        let info = g.info();
        let ts = |t: Timestamp| time::rfc3339(t);
        let mut v = GrantView {
            id: info.id.clone(),
            user: info.user.clone(),
            resource: info.resource.clone(),
            policy: info.policy.clone(),
            state: g.state_name().to_string(),
            reason: info.reason.clone(),
            ticket: info.ticket.clone(),
            requested_at: ts(info.requested_at),
            duration_secs: info.duration_ms / 1000,
            max_secs: info.max_ms / 1000,
            activated_at: None,
            activated_via: None,
            expires_at: None,
            expires_at_ms: None,
            remaining_secs: None,
            ended_at: None,
            ended_by: None,
            end_reason: None,
            approvals: vec![],
            approvals_needed: None,
            approvers_from: vec![],
            approval_timeout_at: None,
            extensions: 0,
            now: ts(now),
            review: None,
            flags: info.flags.clone(),
            drill: info.drill,
            training: info.training.clone(),
            credential: None,
            credential_status: None,
        };
        let approvals = |a: &[grant::ApprovalRecord]| {
            a.iter()
                .map(|a| ApprovalView {
                    by: a.by.clone(),
                    at: ts(a.at),
                })
                .collect::<Vec<_>>()
        };
        let window = |v: &mut GrantView, w: &grant::Active| {
            v.activated_at = Some(ts(w.activated_at));
            v.activated_via = serde_json::to_value(w.via)
                .ok()
                .and_then(|x| x.as_str().map(String::from));
            v.expires_at = Some(ts(w.expires_at));
            v.expires_at_ms = Some(w.expires_at.0);
            v.extensions = u32::try_from(w.extensions.len()).unwrap_or(u32::MAX);
        };
        match g {
            AnyGrant::Pending(p) => {
                v.approvals = approvals(&p.state.approvals);
                v.approvals_needed = Some(p.state.needed);
                v.approvers_from = p.state.from.clone();
                v.approval_timeout_at = p.state.timeout_at.map(ts);
            }
            AnyGrant::Active(a) => {
                window(&mut v, &a.state);
                v.approvals = approvals(&a.state.approvals);
                v.remaining_secs = Some(now.until(a.state.expires_at).as_secs());
            }
            AnyGrant::Ended(e) => {
                if let Some(w) = &e.state.window {
                    window(&mut v, w);
                }
                v.approvals = approvals(&e.state.approvals);
                v.ended_at = Some(ts(e.state.ended_at));
                match &e.state.outcome {
                    grant::Outcome::Revoked { by, reason } => {
                        v.ended_by = Some(by.clone());
                        v.end_reason = reason.clone();
                    }
                    grant::Outcome::Denied { by, reason } => {
                        v.ended_by = Some(by.clone());
                        v.end_reason = Some(reason.clone());
                    }
                    grant::Outcome::Cancelled { by } => v.ended_by = Some(by.clone()),
                    grant::Outcome::Expired | grant::Outcome::TimedOut => {}
                }
            }
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOutput {
    pub token: String,
    pub user: String,
    pub groups: Vec<String>,
    pub expires_at: String,
    pub totp_enrolled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollOutput {
    pub otpauth_uri: String,
    pub secret_base32: String,
}

/// Input of a break-glass request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub resource: String,
    pub reason: String,
    #[serde(default)]
    pub ticket: Option<String>,
    /// `90s`, `30m`, `2h`; the policy default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub otp: Option<String>,
    /// The requester's OpenSSH public key (used for `kind: ssh` resources, ignored otherwise).
    #[serde(default)]
    pub ssh_public_key: Option<String>,
}
