//! MFA factors (TOTP, passkeys, recovery codes): enrolment and verification. Every check goes
//! through [`Engine::verify_proof`] with an [`MfaProof`] for one [`MfaAction`]. A code is accepted once and every wrong code counts, under any concurrency: a user's requests take turns on this node (the MFA lock) and the store writes the state by compare-and-swap in the same transaction as the action.

use super::views::EnrollOutput;
use super::{CAS_RETRIES, Engine, Principal, event};
use crate::error::{ApiError, MFA_CONFLICT};
use breakglass_core::audit::NewEvent;
use breakglass_core::mfa::{self, TotpOutcome};
use breakglass_core::time::Timestamp;
use breakglass_store::Change;
use rand::RngCore;
use serde_json::json;
use std::sync::Arc;

/// Held by a use case from reading the user's MFA state until its action is committed (or
/// refused): see [`Engine::mfa_lock`]. Dropping it lets the user's next request in.
#[must_use = "keep the MFA lock until the action it allows is committed"]
pub struct MfaLock(#[allow(dead_code)] Option<tokio::sync::OwnedMutexGuard<()>>);

impl MfaLock {
    /// For actions that need no MFA.
    pub fn none() -> Self {
        MfaLock(None)
    }
}

/// A verified code: the MFA state change and evidence to commit WITH the action, and the lock.
pub type MfaPass = (Vec<Change>, Vec<NewEvent>, MfaLock);

/// A fresh proof of a second factor.
#[derive(Debug, Clone)]
pub enum MfaProof {
    /// A 6-digit code from the authenticator app.
    Totp(String),
    /// A WebAuthn assertion (the browser's JSON) answering the ceremony `ceremony`.
    Passkey { ceremony: String, response: String },
    /// One of the user's recovery codes (login and adding a passkey only).
    Recovery(String),
}

/// What a proof is for: the purpose (`login`, `request`, `approve`, `deny`, `passkey-add`,
/// `recovery-codes`), its subject (a resource, a grant id; empty when none) and, in the web UI,
/// the session asking. A passkey ceremony proves only the action it was started for.
#[derive(Debug, Clone, Default)]
pub struct MfaAction {
    pub purpose: String,
    pub subject: String,
    pub session: Option<[u8; 32]>,
}

impl MfaAction {
    pub fn new(purpose: &str, subject: &str, session: Option<[u8; 32]>) -> Self {
        MfaAction {
            purpose: purpose.to_string(),
            subject: subject.to_string(),
            session,
        }
    }
}

/// The purposes a recovery code may prove.
pub const RECOVERY_PURPOSES: &[&str] = &["login", "passkey-add"];

pub(crate) fn totp_aad(user: &str) -> String {
    format!("totp:{user}")
}

/// On a failed action after a successful MFA check, the code is still spent: commit the MFA
/// state and its audit event, then return the error.
pub(crate) trait SpendMfaOnError<T> {
    async fn or_else_spend_mfa(
        self,
        engine: &Engine,
        changes: &[Change],
        events: &[NewEvent],
    ) -> Result<T, ApiError>;
}

impl<T> SpendMfaOnError<T> for Result<T, ApiError> {
    async fn or_else_spend_mfa(
        self,
        engine: &Engine,
        changes: &[Change],
        events: &[NewEvent],
    ) -> Result<T, ApiError> {
        if self.is_err() {
            let mfa_changes: Vec<Change> = changes
                .iter()
                .filter(|c| {
                    matches!(
                        c,
                        Change::PutMfaState { .. }
                            | Change::TakeCeremony { .. }
                            | Change::UpdatePasskey { .. }
                            | Change::UseRecoveryCode { .. }
                    )
                })
                .cloned()
                .collect();
            let mfa_events: Vec<NewEvent> = events
                .iter()
                .filter(|e| e.kind.starts_with("mfa."))
                .cloned()
                .collect();
            if !mfa_changes.is_empty() {
                engine.commit(mfa_changes, mfa_events).await?;
            }
        }
        self
    }
}

impl Engine {
    /// Waits for `user`'s MFA lock. Locks nobody holds are dropped from the map as it grows.
    pub async fn mfa_lock(&self, user: &str) -> MfaLock {
        let lock = {
            let mut map = match self.mfa_locks.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            if map.len() >= 1024 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(user.to_string()).or_default().clone()
        };
        MfaLock(Some(lock.lock_owned().await))
    }

    pub async fn totp_enroll(&self, who: &Principal) -> Result<EnrollOutput, ApiError> {
        let rec = self.store.mfa(&who.name).await?;
        if rec.totp_confirmed {
            return Err(ApiError::Conflict(format!(
                "{} already has a confirmed TOTP authenticator; an admin must reset it first (`breakglass admin user reset-mfa {}`)",
                who.name, who.name
            )));
        }
        let mut secret = zeroize::Zeroizing::new([0u8; mfa::SECRET_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut secret[..]);
        let sealed = self.keys.kek.seal(&totp_aad(&who.name), &secret[..]);
        self.commit(
            vec![Change::PutTotp {
                user: who.name.clone(),
                sealed: Some(sealed),
                confirmed: false,
            }],
            vec![event(
                self.now(),
                "mfa.totp_enrolment_started",
                Some(&who.name),
                None,
                json!({}),
            )],
        )
        .await?;
        Ok(EnrollOutput {
            otpauth_uri: mfa::otpauth_uri("breakglass", &who.name, &secret[..]),
            secret_base32: mfa::secret_base32(&secret[..]),
        })
    }

    pub async fn totp_confirm(&self, who: &Principal, code: &str) -> Result<(), ApiError> {
        let lock = self.mfa_lock(&who.name).await;
        let rec = self.store.mfa(&who.name).await?;
        if rec.totp_sealed.is_none() {
            return Err(ApiError::bad_hint(
                "no TOTP enrolment in progress",
                "run `breakglass mfa totp enroll` first",
            ));
        }
        if rec.totp_confirmed {
            return Err(ApiError::Conflict("TOTP is already confirmed".into()));
        }
        let sealed = rec.totp_sealed.clone();
        let (mut changes, mut events, _lock) =
            self.check_code(who, rec, code, "enrol", lock).await?;
        // Confirming keeps the guessing state just written (so the code cannot be reused); it
        // comes after the state's compare-and-swap, which names the version read above.
        changes.push(Change::PutTotp {
            user: who.name.clone(),
            sealed,
            confirmed: true,
        });
        events.push(event(
            self.now(),
            "mfa.totp_enrolled",
            Some(&who.name),
            None,
            json!({}),
        ));
        self.commit(changes, events).await
    }

    /// Verifies a fresh TOTP code (the API's and CLI's way): [`Engine::verify_proof`] with
    /// [`MfaProof::Totp`] for `purpose`.
    pub async fn verify_mfa(
        &self,
        who: &Principal,
        otp: Option<&str>,
        purpose: &str,
    ) -> Result<MfaPass, ApiError> {
        let proof = otp.map(|c| MfaProof::Totp(c.to_string()));
        self.verify_proof(who, proof.as_ref(), &MfaAction::new(purpose, "", None))
            .await
    }

    /// Verifies a fresh proof for `action`. On success returns the state change and audit
    /// events to commit WITH the action, and the user's MFA lock to hold until then; on failure
    /// commits the failure (state + audit) itself and returns an error. Under any concurrency a
    /// proof is accepted once and every failure is counted: the user's requests take turns on
    /// this node, and the store applies the state only at the version it was computed from (a
    /// passkey ceremony and a recovery code are also taken by the same transaction).
    pub async fn verify_proof(
        &self,
        who: &Principal,
        proof: Option<&MfaProof>,
        action: &MfaAction,
    ) -> Result<MfaPass, ApiError> {
        let purpose = action.purpose.as_str();
        let lock = self.mfa_lock(&who.name).await;
        let rec = self.store.mfa(&who.name).await?;
        match proof {
            Some(MfaProof::Passkey { ceremony, response }) => {
                let (c, e) = self
                    .check_passkey(who, &rec, ceremony, response, action)
                    .await?;
                return Ok((c, e, lock));
            }
            Some(MfaProof::Recovery(code)) => {
                let (c, e) = self.check_recovery(who, &rec, code, action).await?;
                return Ok((c, e, lock));
            }
            _ => {}
        }
        if !rec.totp_confirmed {
            let has_passkey = !self.store.passkeys(&who.name).await?.is_empty();
            if proof.is_none() && has_passkey {
                return Err(ApiError::Mfa {
                    slug: "mfa-required",
                    message: format!("{purpose} needs a passkey tap"),
                    hint: Some("use the web UI's passkey button".into()),
                });
            }
            self.audit_only(vec![event(
                self.now(),
                "mfa.refused",
                Some(&who.name),
                None,
                json!({"purpose": purpose, "why": "not-enrolled"}),
            )])
            .await?;
            return Err(ApiError::Mfa {
                slug: "mfa-not-enrolled",
                message: format!("{purpose} needs MFA but {} has no authenticator", who.name),
                hint: Some(
                    "run `breakglass mfa totp enroll`, add the URI to an authenticator app, then `breakglass mfa totp confirm CODE`".into(),
                ),
            });
        }
        let Some(MfaProof::Totp(code)) = proof else {
            return Err(ApiError::Mfa {
                slug: "mfa-required",
                message: format!("{purpose} needs a fresh one-time code from your authenticator"),
                hint: Some("pass --otp CODE (or run on a terminal to be prompted)".into()),
            });
        };
        self.check_code(who, rec, code, purpose, lock).await
    }

    pub(crate) async fn check_code(
        &self,
        who: &Principal,
        mut rec: breakglass_store::MfaRecord,
        code: &str,
        purpose: &str,
        lock: MfaLock,
    ) -> Result<MfaPass, ApiError> {
        let mut attempt = 0;
        loop {
            match self.check_code_once(who, &rec, code, purpose).await {
                Ok((changes, events)) => return Ok((changes, events, lock)),
                // Another node wrote the state between our read and our write: judge the code
                // again against what is stored now.
                Err(ApiError::Mfa { slug, .. })
                    if slug == MFA_CONFLICT && attempt < CAS_RETRIES =>
                {
                    attempt += 1;
                    rec = self.store.mfa(&who.name).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Judges one code against one read of the state; commits a failure with a compare-and-swap.
    pub(crate) async fn check_code_once(
        &self,
        who: &Principal,
        rec: &breakglass_store::MfaRecord,
        code: &str,
        purpose: &str,
    ) -> Result<(Vec<Change>, Vec<NewEvent>), ApiError> {
        let now = self.now();
        let secret = self.totp_secret(who, rec)?;
        let (outcome, state) = mfa::check_totp(&secret, code, now, &rec.state, &self.config.mfa);
        let change = Change::PutMfaState {
            user: who.name.clone(),
            expected_version: rec.version,
            state,
        };
        match judge(&outcome, &who.name) {
            Judged::Accepted { step } => Ok((
                vec![change],
                vec![event(
                    now,
                    "mfa.verified",
                    Some(&who.name),
                    None,
                    json!({"purpose": purpose, "method": "totp", "step": step}),
                )],
            )),
            Judged::Refused(err) => Err(err),
            Judged::Failed { kind, err } => {
                let change = outcome.changes_state().then_some(change);
                self.record_failed_code(who, purpose, kind, change, now)
                    .await?;
                Err(err)
            }
        }
    }

    /// The user's TOTP secret, unsealed.
    fn totp_secret(
        &self,
        who: &Principal,
        rec: &breakglass_store::MfaRecord,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
        let sealed = rec.totp_sealed.as_deref().unwrap_or_default();
        self.keys
            .kek
            .open(&totp_aad(&who.name), sealed)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Commits a code that counted against the user: the new MFA state (none while locked, as
    /// nothing was checked) and the audit event `kind`.
    pub(crate) async fn record_failed_code(
        &self,
        who: &Principal,
        purpose: &str,
        kind: &'static str,
        change: Option<Change>,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        self.metrics.mfa_failures.inc();
        self.commit(
            change.into_iter().collect(),
            vec![event(
                now,
                kind,
                Some(&who.name),
                None,
                json!({"purpose": purpose}),
            )],
        )
        .await
    }
}

/// How a code was judged.
pub(crate) enum Judged {
    Accepted {
        step: u64,
    },
    /// Refused before it counted as a guess (not six digits): nothing to record.
    Refused(ApiError),
    /// Counted against the user (wrong, replayed, or MFA locked): recorded as `kind`.
    Failed {
        kind: &'static str,
        err: ApiError,
    },
}

/// What `user` is told, and what is audited, for one outcome of a TOTP check.
fn judge(outcome: &TotpOutcome, user: &str) -> Judged {
    let (kind, err) = match *outcome {
        TotpOutcome::Accepted { step } => return Judged::Accepted { step },
        TotpOutcome::Malformed => {
            return Judged::Refused(ApiError::bad_hint(
                "a TOTP code is 6 digits",
                "type the 6-digit code your authenticator app shows",
            ));
        }
        TotpOutcome::Locked { until } => (
            "mfa.refused_locked",
            ApiError::Mfa {
                slug: "mfa-locked",
                message: format!(
                    "MFA for {user} is locked after too many wrong codes until {until}"
                ),
                hint: Some("wait for the lock-out to end or ask the security team".into()),
            },
        ),
        TotpOutcome::Wrong { remaining } => (
            "mfa.failed",
            ApiError::Mfa {
                slug: "mfa-invalid",
                message: format!("wrong one-time code; {remaining} tries left before MFA locks"),
                hint: Some("check your authenticator app and the device clock".into()),
            },
        ),
        TotpOutcome::Replayed { remaining } => (
            "mfa.replayed",
            ApiError::Mfa {
                slug: "mfa-replayed",
                message: format!(
                    "this one-time code was already used; wait for the next code ({remaining} tries left)"
                ),
                hint: Some("codes are single-use: wait up to 30 s for a new one".into()),
            },
        ),
        TotpOutcome::LockedNow { until } => (
            "mfa.locked",
            ApiError::Mfa {
                slug: "mfa-locked",
                message: format!("too many wrong codes: MFA for {user} is locked until {until}"),
                hint: Some("the security team has been told; wait or ask them".into()),
            },
        ),
    };
    Judged::Failed { kind, err }
}
