//! The grant state machine.
//!
//! ```text
//!   request ──► Pending ──approve (quorum met)──► Active ──expire──► Ended(Expired)
//!      │           │  └─deny / cancel / time-out─► Ended       └─revoke──► Ended(Revoked)
//!      └── (auto) ─┴──────────────────────────────► Active ──extend──► Active
//! ```
//!
//! Each state is its own type ([`Grant<Pending>`], [`Grant<Active>`], [`Grant<Ended>`]) and the
//! transitions are methods that consume the grant, so an illegal transition (say, approving
//! an expired grant or extending a pending one) does not type-check. [`AnyGrant`] is the
//! stored form: load it, match on the state, call a transition.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// How a new grant is to be approved (derived from the policy's `approval`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Approval {
    /// Access now; review afterwards.
    Auto,
    /// `count` approvals from members of `from`; optional timeout.
    Quorum {
        count: u32,
        from: Vec<String>,
        timeout: Option<Duration>,
        on_timeout: OnTimeout,
    },
}

/// What happens when a quorum request's approval window passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    Deny,
    Auto,
}

/// What every grant carries regardless of its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub policy: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub requested_at: Timestamp,
    /// Length of the access window once active.
    pub duration_ms: u64,
    /// The policy maximum at request time (extensions may not exceed it).
    pub max_ms: u64,
    /// Review groups and deadline length, if the policy asks for review.
    pub review_by: Vec<String>,
    pub review_within_ms: Option<u64>,
    /// Alert sinks named by the policy.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Anomaly flags raised on this grant.
    #[serde(default)]
    pub flags: Vec<crate::anomaly::Flag>,
    /// The requester's OpenSSH public key, for resources that issue SSH certificates (public,
    /// kept so a certificate can be issued when approvers activate the grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// How many times the stored grant was changed: the store's optimistic concurrency check
    /// (a change computed from revision n is applied only while the stored grant is at n).
    #[serde(default)]
    pub rev: u64,
    /// A drill grant (scheduled drill or people drill): marked as such in the audit trail,
    /// alerts, reports and reviews, and not counted as real use by anomaly rules.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// The people-drill (game day) window this grant was requested in: a real responder's
    /// real grant, marked training. Decided by the server when the request arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<String>,
}

impl GrantInfo {
    /// Whether this grant is practice: 0 real use, 1 a scheduled drill, 2 a people drill
    /// (stored beside the grant so anomaly counts can leave practice out).
    pub fn practice(&self) -> i64 {
        if self.drill {
            1
        } else if self.training.is_some() {
            2
        } else {
            0
        }
    }
}

/// One approval of a pending grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub by: String,
    pub at: Timestamp,
}

/// Waiting for approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub needed: u32,
    pub from: Vec<String>,
    pub approvals: Vec<ApprovalRecord>,
    pub timeout_at: Option<Timestamp>,
    pub on_timeout: OnTimeout,
}

/// How a grant became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// The policy grants access at once (true break-glass).
    Auto,
    /// The quorum of approvals was reached.
    Quorum,
    /// Approval timed out and the policy falls back to access now.
    TimeoutFallback,
}

/// Access is live until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub activated_at: Timestamp,
    pub expires_at: Timestamp,
    pub via: Activation,
    pub approvals: Vec<ApprovalRecord>,
    pub extensions: Vec<Extension>,
}

/// One extension of an active grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub by: String,
    pub at: Timestamp,
    pub old_expiry: Timestamp,
    pub new_expiry: Timestamp,
}

/// Why a grant ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Expired,
    Revoked { by: String, reason: Option<String> },
    Denied { by: String, reason: String },
    Cancelled { by: String },
    TimedOut,
}

impl Outcome {
    pub fn state_name(&self) -> &'static str {
        match self {
            Outcome::Expired => "expired",
            Outcome::Revoked { .. } => "revoked",
            Outcome::Denied { .. } => "denied",
            Outcome::Cancelled { .. } => "cancelled",
            Outcome::TimedOut => "timed-out",
        }
    }
}

/// The grant is over; `window` is the access it had, if it ever became active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub outcome: Outcome,
    pub ended_at: Timestamp,
    pub window: Option<Active>,
    pub approvals: Vec<ApprovalRecord>,
}

/// A grant in state `S`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant<S> {
    pub info: GrantInfo,
    pub state: S,
}

/// A grant in any state: the stored form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state_kind", content = "grant", rename_all = "kebab-case")]
pub enum AnyGrant {
    Pending(Grant<Pending>),
    Active(Grant<Active>),
    Ended(Grant<Ended>),
}

/// A transition the rules refuse (the grant is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GrantError {
    #[error("you requested this grant, so you cannot approve it: another member of {0:?} must")]
    SelfApproval(Vec<String>),
    #[error("{user} is not an approver for this grant: approvals must come from {from:?}")]
    NotApprover { user: String, from: Vec<String> },
    #[error("{0} has already approved this grant")]
    AlreadyApproved(String),
    #[error("the grant is not due yet: it ends at {0}")]
    NotDue(Timestamp),
    #[error("the new expiry {new} is not after the current expiry {current}")]
    NotLonger { new: Timestamp, current: Timestamp },
}

/// The result of an approval: still waiting, or now active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approved {
    StillPending(Grant<Pending>),
    Activated(Grant<Active>),
}

/// The result of a pending grant's approval timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimedOut {
    Ended(Grant<Ended>),
    Activated(Grant<Active>),
}

/// Creates a grant from an allowed request: active at once for `auto`, pending for `quorum`.
pub fn request(info: GrantInfo, approval: &Approval, now: Timestamp) -> AnyGrant {
    match approval {
        Approval::Auto => AnyGrant::Active(Grant {
            state: activate(&info, now, Activation::Auto, Vec::new()),
            info,
        }),
        Approval::Quorum {
            count,
            from,
            timeout,
            on_timeout,
        } => AnyGrant::Pending(Grant {
            state: Pending {
                needed: (*count).max(1),
                from: from.clone(),
                approvals: Vec::new(),
                timeout_at: timeout.map(|t| now.plus(t)),
                on_timeout: *on_timeout,
            },
            info,
        }),
    }
}

fn activate(
    info: &GrantInfo,
    now: Timestamp,
    via: Activation,
    approvals: Vec<ApprovalRecord>,
) -> Active {
    Active {
        activated_at: now,
        expires_at: now.plus(Duration::from_millis(info.duration_ms)),
        via,
        approvals,
        extensions: Vec::new(),
    }
}

impl Grant<Pending> {
    /// Checks whether `user` (in `groups`) may approve, without changing anything.
    pub fn check_approver(&self, user: &str, groups: &[String]) -> Result<(), GrantError> {
        if user == self.info.user {
            return Err(GrantError::SelfApproval(self.state.from.clone()));
        }
        if !groups.iter().any(|g| self.state.from.contains(g)) {
            return Err(GrantError::NotApprover {
                user: user.to_string(),
                from: self.state.from.clone(),
            });
        }
        if self.state.approvals.iter().any(|a| a.by == user) {
            return Err(GrantError::AlreadyApproved(user.to_string()));
        }
        Ok(())
    }

    /// Records an approval; activates the grant when the quorum is reached.
    pub fn approve(
        mut self,
        user: &str,
        groups: &[String],
        now: Timestamp,
    ) -> Result<Approved, GrantError> {
        self.check_approver(user, groups)?;
        self.state.approvals.push(ApprovalRecord {
            by: user.to_string(),
            at: now,
        });
        if self.state.approvals.len() as u64 >= u64::from(self.state.needed) {
            let active = activate(&self.info, now, Activation::Quorum, self.state.approvals);
            Ok(Approved::Activated(Grant {
                info: self.info,
                state: active,
            }))
        } else {
            Ok(Approved::StillPending(self))
        }
    }

    /// An approver refuses the request.
    pub fn deny(
        self,
        user: &str,
        groups: &[String],
        reason: String,
        now: Timestamp,
    ) -> Result<Grant<Ended>, GrantError> {
        self.check_approver(user, groups)?;
        Ok(self.end(
            Outcome::Denied {
                by: user.to_string(),
                reason,
            },
            now,
        ))
    }

    /// The requester (or an admin) withdraws the request.
    pub fn cancel(self, by: &str, now: Timestamp) -> Grant<Ended> {
        self.end(Outcome::Cancelled { by: by.to_string() }, now)
    }

    /// The approval window has passed: deny, or fall back to access now.
    pub fn time_out(self, now: Timestamp) -> Result<TimedOut, GrantError> {
        match self.state.timeout_at {
            Some(t) if now >= t => {}
            Some(t) => return Err(GrantError::NotDue(t)),
            None => return Err(GrantError::NotDue(Timestamp(i64::MAX))),
        }
        Ok(match self.state.on_timeout {
            OnTimeout::Deny => TimedOut::Ended(self.end(Outcome::TimedOut, now)),
            OnTimeout::Auto => {
                let active = activate(
                    &self.info,
                    now,
                    Activation::TimeoutFallback,
                    self.state.approvals,
                );
                TimedOut::Activated(Grant {
                    info: self.info,
                    state: active,
                })
            }
        })
    }

    fn end(self, outcome: Outcome, now: Timestamp) -> Grant<Ended> {
        Grant {
            info: self.info,
            state: Ended {
                outcome,
                ended_at: now,
                window: None,
                approvals: self.state.approvals,
            },
        }
    }
}

impl Grant<Active> {
    /// Ends the grant at its deadline. Refused before the deadline.
    pub fn expire(self, now: Timestamp) -> Result<Grant<Ended>, GrantError> {
        if now < self.state.expires_at {
            return Err(GrantError::NotDue(self.state.expires_at));
        }
        Ok(self.end(Outcome::Expired, now))
    }

    /// Ends the grant early.
    pub fn revoke(self, by: &str, reason: Option<String>, now: Timestamp) -> Grant<Ended> {
        self.end(
            Outcome::Revoked {
                by: by.to_string(),
                reason,
            },
            now,
        )
    }

    /// Moves the expiry to `new_expiry` (already checked against the policy by the caller).
    pub fn extend(
        mut self,
        by: &str,
        new_expiry: Timestamp,
        now: Timestamp,
    ) -> Result<Grant<Active>, GrantError> {
        if new_expiry <= self.state.expires_at {
            return Err(GrantError::NotLonger {
                new: new_expiry,
                current: self.state.expires_at,
            });
        }
        self.state.extensions.push(Extension {
            by: by.to_string(),
            at: now,
            old_expiry: self.state.expires_at,
            new_expiry,
        });
        self.state.expires_at = new_expiry;
        Ok(self)
    }

    fn end(self, outcome: Outcome, now: Timestamp) -> Grant<Ended> {
        let approvals = self.state.approvals.clone();
        Grant {
            info: self.info,
            state: Ended {
                outcome,
                ended_at: now,
                window: Some(self.state),
                approvals,
            },
        }
    }
}

impl AnyGrant {
    pub fn info(&self) -> &GrantInfo {
        match self {
            AnyGrant::Pending(g) => &g.info,
            AnyGrant::Active(g) => &g.info,
            AnyGrant::Ended(g) => &g.info,
        }
    }

    /// Everyone who approved the grant (they may not review it: separation of duties).
    pub fn approvers(&self) -> Vec<&str> {
        let list = match self {
            AnyGrant::Pending(g) => &g.state.approvals,
            AnyGrant::Active(g) => &g.state.approvals,
            AnyGrant::Ended(g) => &g.state.approvals,
        };
        list.iter().map(|a| a.by.as_str()).collect()
    }

    pub fn info_mut(&mut self) -> &mut GrantInfo {
        match self {
            AnyGrant::Pending(g) => &mut g.info,
            AnyGrant::Active(g) => &mut g.info,
            AnyGrant::Ended(g) => &mut g.info,
        }
    }
    pub fn id(&self) -> &str {
        &self.info().id
    }
    /// `pending`, `active`, `expired`, `revoked`, `denied`, `cancelled` or `timed-out`.
    pub fn state_name(&self) -> &'static str {
        match self {
            AnyGrant::Pending(_) => "pending",
            AnyGrant::Active(_) => "active",
            AnyGrant::Ended(g) => g.state.outcome.state_name(),
        }
    }
    /// The next instant at which time alone changes this grant (expiry or approval timeout).
    pub fn deadline(&self) -> Option<Timestamp> {
        match self {
            AnyGrant::Pending(g) => g.state.timeout_at,
            AnyGrant::Active(g) => Some(g.state.expires_at),
            AnyGrant::Ended(_) => None,
        }
    }
    /// Expiry of the access window, if the grant is or was active.
    pub fn expires_at(&self) -> Option<Timestamp> {
        match self {
            AnyGrant::Pending(_) => None,
            AnyGrant::Active(g) => Some(g.state.expires_at),
            AnyGrant::Ended(g) => g.state.window.as_ref().map(|w| w.expires_at),
        }
    }
}

impl From<Grant<Pending>> for AnyGrant {
    fn from(g: Grant<Pending>) -> Self {
        AnyGrant::Pending(g)
    }
}
impl From<Grant<Active>> for AnyGrant {
    fn from(g: Grant<Active>) -> Self {
        AnyGrant::Active(g)
    }
}
impl From<Grant<Ended>> for AnyGrant {
    fn from(g: Grant<Ended>) -> Self {
        AnyGrant::Ended(g)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn info() -> GrantInfo {
        GrantInfo {
            rev: 0,
            drill: false,
            training: None,
            id: "g1".into(),
            user: "bob".into(),
            resource: "bastion".into(),
            policy: "p".into(),
            reason: "orders table locked".into(),
            ticket: Some("INC-1".into()),
            requested_at: Timestamp(1_000),
            duration_ms: 60_000,
            max_ms: 120_000,
            review_by: vec![],
            review_within_ms: None,
            notify: vec![],
            flags: vec![],
            ssh_public_key: None,
        }
    }

    fn quorum(count: u32, on_timeout: OnTimeout) -> Approval {
        Approval::Quorum {
            count,
            from: vec!["security".into()],
            timeout: Some(Duration::from_secs(600)),
            on_timeout,
        }
    }

    fn sec() -> Vec<String> {
        vec!["security".into()]
    }

    #[test]
    fn auto_is_active_at_once_and_expires_exactly_at_deadline() {
        let AnyGrant::Active(g) = request(info(), &Approval::Auto, Timestamp(1_000)) else {
            panic!("auto must activate");
        };
        assert_eq!(g.state.expires_at, Timestamp(61_000));
        let g = g.expire(Timestamp(60_999)).unwrap_err();
        assert_eq!(g, GrantError::NotDue(Timestamp(61_000)));
    }

    #[test]
    fn expire_at_deadline() {
        let AnyGrant::Active(g) = request(info(), &Approval::Auto, Timestamp(1_000)) else {
            panic!()
        };
        let e = g.expire(Timestamp(61_000)).unwrap();
        assert_eq!(AnyGrant::from(e).state_name(), "expired");
    }

    #[test]
    fn quorum_needs_distinct_non_requester_approvers() {
        let AnyGrant::Pending(g) = request(info(), &quorum(2, OnTimeout::Deny), Timestamp(0))
        else {
            panic!()
        };
        assert!(matches!(
            g.check_approver("bob", &sec()),
            Err(GrantError::SelfApproval(_))
        ));
        assert!(matches!(
            g.check_approver("eve", &["oncall".into()]),
            Err(GrantError::NotApprover { .. })
        ));
        let Approved::StillPending(g) = g.approve("carol", &sec(), Timestamp(5)).unwrap() else {
            panic!()
        };
        assert!(matches!(
            g.clone().approve("carol", &sec(), Timestamp(6)),
            Err(GrantError::AlreadyApproved(_))
        ));
        let Approved::Activated(a) = g.approve("dave", &sec(), Timestamp(7)).unwrap() else {
            panic!()
        };
        assert_eq!(a.state.activated_at, Timestamp(7));
        assert_eq!(a.state.expires_at, Timestamp(60_007));
        assert_eq!(a.state.approvals.len(), 2);
    }

    #[test]
    fn timeout_modes() {
        let AnyGrant::Pending(g) = request(info(), &quorum(1, OnTimeout::Deny), Timestamp(0))
        else {
            panic!()
        };
        assert!(g.clone().time_out(Timestamp(599_999)).is_err());
        let TimedOut::Ended(e) = g.time_out(Timestamp(600_000)).unwrap() else {
            panic!()
        };
        assert_eq!(e.state.outcome, Outcome::TimedOut);

        let AnyGrant::Pending(g) = request(info(), &quorum(1, OnTimeout::Auto), Timestamp(0))
        else {
            panic!()
        };
        let TimedOut::Activated(a) = g.time_out(Timestamp(600_000)).unwrap() else {
            panic!()
        };
        assert_eq!(a.state.via, Activation::TimeoutFallback);
    }

    #[test]
    fn extend_moves_deadline_forward_only() {
        let AnyGrant::Active(g) = request(info(), &Approval::Auto, Timestamp(0)) else {
            panic!()
        };
        assert!(
            g.clone()
                .extend("bob", Timestamp(60_000), Timestamp(1))
                .is_err()
        );
        let g = g.extend("bob", Timestamp(90_000), Timestamp(1)).unwrap();
        assert_eq!(g.state.expires_at, Timestamp(90_000));
        let r = g.revoke("sec", Some("done".into()), Timestamp(2));
        assert_eq!(r.state.window.unwrap().extensions.len(), 1);
    }

    #[test]
    fn stored_form_round_trips() {
        let g = request(info(), &quorum(1, OnTimeout::Deny), Timestamp(0));
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<AnyGrant>(&json).unwrap(), g);
    }
}
