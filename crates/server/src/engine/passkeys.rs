//! Passkeys (WebAuthn, user verification required): registering, listing and removing them,
//! and checking an assertion as an MFA proof. Ceremony state lives in the store (any node can
//! finish a ceremony), bound to one user, one action and (signed in) one session; it is taken
//! by the transaction that finishes it (single use) and expires after [`CEREMONY_TTL`].

use super::factors::{MfaAction, MfaProof, RECOVERY_PURPOSES};
use super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::audit::NewEvent;
use breakglass_core::mfa::{self, TotpOutcome};
use breakglass_core::time::{self, Timestamp};
use breakglass_store::{Ceremony, Change, MfaRecord, PasskeyRecord};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

/// How long a started ceremony can be finished.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Most passkeys per user.
pub const MAX_PASSKEYS: usize = 10;
/// Largest browser answer accepted (a WebAuthn JSON is a few KiB).
const MAX_RESPONSE: usize = 32 * 1024;
/// The purposes a passkey ceremony can be started for.
pub const PASSKEY_PURPOSES: &[&str] = &["login", "request", "approve", "deny", "recovery-codes"];

/// A ceremony started: its id and the options for `navigator.credentials`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeremonyStart {
    pub ceremony: String,
    pub options: Value,
}

/// One passkey as the account page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    format!("{prefix}{}", b64(&b))
}

/// The WebAuthn user handle of `user` (stable, reveals nothing of the name).
fn user_handle(user: &str) -> Uuid {
    let d = Sha256::digest(format!("breakglass user handle:{user}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::from_bytes(b)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Engine {
    /// The relying party: the public URL's host name is the RP ID (an IP address cannot be one).
    fn webauthn(&self) -> Result<Webauthn, ApiError> {
        let off = || {
            ApiError::bad_hint(
                "passkeys are off: the server has no public URL with a host name",
                "start the server with --public-url http://localhost:PORT (or https://bg.example.com) and open the UI at that address",
            )
        };
        let url = self.config.public_url.as_deref().ok_or_else(off)?;
        let url = Url::parse(url).map_err(|_| off())?;
        let host = url.domain().ok_or_else(off)?.to_string();
        WebauthnBuilder::new(&host, &url)
            .and_then(|b| b.rp_name("breakglass").timeout(CEREMONY_TTL).build())
            .map_err(|_| off())
    }

    pub async fn passkeys_of(&self, who: &Principal) -> Result<Vec<PasskeyView>, ApiError> {
        Ok(self
            .store
            .passkeys(&who.name)
            .await?
            .into_iter()
            .map(|p| PasskeyView {
                id: p.id,
                name: p.name,
                created_at: time::rfc3339(p.created_at),
                last_used_at: p.last_used_at.map(time::rfc3339),
            })
            .collect())
    }

    /// Whether passkeys can be used on this server (the reason when not).
    pub fn passkeys_available(&self) -> Result<(), ApiError> {
        self.webauthn().map(|_| ())
    }

    fn stored_passkeys(recs: &[PasskeyRecord]) -> Result<Vec<Passkey>, ApiError> {
        recs.iter()
            .map(|r| serde_json::from_str(&r.passkey_json).map_err(internal))
            .collect()
    }

    /// Starts a passkey assertion for `action` (before login: `login` for `user`).
    pub async fn passkey_challenge(
        &self,
        user: &str,
        action: &MfaAction,
    ) -> Result<CeremonyStart, ApiError> {
        if !PASSKEY_PURPOSES.contains(&action.purpose.as_str()) || action.subject.len() > 200 {
            return Err(ApiError::bad("no passkey check is needed for that"));
        }
        let wa = self.webauthn()?;
        let recs = self.store.passkeys(user).await?;
        if recs.is_empty() {
            return Err(ApiError::bad_hint(
                format!("{user:.64} has no passkey"),
                "sign in with password and code, then add a passkey on your account page",
            ));
        }
        let (rcr, state) = wa
            .start_passkey_authentication(&Self::stored_passkeys(&recs)?)
            .map_err(internal)?;
        let id = random_id("wa_");
        let now = self.now();
        let ceremony = Ceremony {
            id: id.clone(),
            user: user.to_string(),
            kind: "authenticate".into(),
            purpose: action.purpose.clone(),
            subject: action.subject.clone(),
            session_hash: action.session.map(|h| h.to_vec()),
            state_json: serde_json::to_string(&state).map_err(internal)?,
            expires_at: now.plus(CEREMONY_TTL),
            created_at: now,
        };
        // A challenge is no state change of the account: it is stored, not audited (the
        // answer is, whatever it is).
        self.store
            .commit(vec![Change::StartCeremony(ceremony)], vec![])
            .await?;
        Ok(CeremonyStart {
            ceremony: id,
            options: serde_json::to_value(rcr).map_err(internal)?,
        })
    }

    /// Checks a passkey assertion for `action`: the ceremony must be the user's, for this
    /// action (and session), unexpired and unused; the assertion must verify with user
    /// verification and a counter that moved forward. Failures count like wrong codes.
    pub(crate) async fn check_passkey(
        &self,
        who: &Principal,
        rec: &MfaRecord,
        ceremony_id: &str,
        response: &str,
        action: &MfaAction,
    ) -> Result<(Vec<Change>, Vec<NewEvent>), ApiError> {
        let now = self.now();
        let ceremony = if ceremony_id.len() <= 64 {
            self.store.ceremony(ceremony_id).await?
        } else {
            None
        };
        let mut changes = Vec::new();
        if let Some(c) = &ceremony {
            changes.push(Change::TakeCeremony { id: c.id.clone() });
        }
        let verdict = self
            .judge_assertion(who, ceremony.as_ref(), response, action, now)
            .await;
        let (ok, why, used) = match verdict {
            Ok(used) => (true, "", Some(used)),
            Err(why) => (false, why, None),
        };
        let (mut outcome, state) = mfa::check_factor(ok, now, &rec.state, &self.config.mfa);
        if action.purpose == "login"
            && let TotpOutcome::Wrong { .. } | TotpOutcome::LockedNow { .. } = outcome
        {
            outcome = TotpOutcome::Malformed;
        }
        changes.push(Change::PutMfaState {
            user: who.name.clone(),
            expected_version: rec.version,
            state,
        });
        if let (TotpOutcome::Accepted { .. }, Some((pk, json))) = (&outcome, used) {
            changes.push(Change::UpdatePasskey {
                id: pk.id.clone(),
                passkey_json: json,
                last_used_at: now,
            });
            let events = vec![event(
                now,
                "mfa.verified",
                Some(&who.name),
                None,
                json!({"purpose": action.purpose, "subject": action.subject, "method": "passkey", "passkey": pk.name}),
            )];
            return Ok((changes, events));
        }
        let mut events = Vec::new();
        if why == "counter-went-back" {
            events.push(event(
                now,
                "mfa.passkey_clone_suspected",
                Some(&who.name),
                None,
                json!({"purpose": action.purpose}),
            ));
        }
        let (kind, err) = factor_failure(&outcome, &who.name, why);
        events.push(event(
            now,
            kind,
            Some(&who.name),
            None,
            json!({"purpose": action.purpose, "method": "passkey", "why": why}),
        ));
        // A passkey sign-in needs no password first: its failures go to the login throttle,
        // not the MFA lock-out (or anyone could lock anyone out).
        if !outcome.changes_state() || action.purpose == "login" {
            changes.retain(|c| !matches!(c, Change::PutMfaState { .. }));
        }
        self.metrics.mfa_failures.inc();
        self.commit(changes, events).await?;
        Err(err)
    }

    /// The passkey that answered, with its updated JSON; or why the assertion is refused.
    async fn judge_assertion(
        &self,
        who: &Principal,
        ceremony: Option<&Ceremony>,
        response: &str,
        action: &MfaAction,
        now: Timestamp,
    ) -> Result<(PasskeyRecord, String), &'static str> {
        let c = ceremony.ok_or("no-such-ceremony")?;
        if c.kind != "authenticate" || c.user != who.name {
            return Err("ceremony-of-another-user");
        }
        if c.purpose != action.purpose || c.subject != action.subject {
            return Err("ceremony-for-another-action");
        }
        if c.session_hash.as_deref() != action.session.as_ref().map(|h| &h[..]) {
            return Err("ceremony-of-another-session");
        }
        if c.expires_at <= now {
            return Err("ceremony-expired");
        }
        if response.len() > MAX_RESPONSE {
            return Err("malformed-assertion");
        }
        let cred: PublicKeyCredential =
            serde_json::from_str(response).map_err(|_| "malformed-assertion")?;
        let state: PasskeyAuthentication =
            serde_json::from_str(&c.state_json).map_err(|_| "corrupt-ceremony")?;
        let wa = self.webauthn().map_err(|_| "passkeys-off")?;
        let res = wa
            .finish_passkey_authentication(&cred, &state)
            .map_err(|e| match e {
                WebauthnError::CredentialPossibleCompromise => "counter-went-back",
                _ => "assertion-invalid",
            })?;
        if !res.user_verified() {
            return Err("no-user-verification");
        }
        let recs = self
            .store
            .passkeys(&who.name)
            .await
            .map_err(|_| "store-failed")?;
        let used = recs
            .into_iter()
            .find(|r| r.cred_id == b64(res.cred_id().as_slice()))
            .ok_or("unknown-passkey")?;
        let mut pk: Passkey =
            serde_json::from_str(&used.passkey_json).map_err(|_| "corrupt-passkey")?;
        pk.update_credential(&res);
        let json = serde_json::to_string(&pk).map_err(|_| "corrupt-passkey")?;
        Ok((used, json))
    }

    /// Starts adding a passkey named `name`: needs a fresh proof (TOTP, a passkey or a
    /// recovery code), spent here, and a session the ceremony is bound to.
    pub async fn passkey_register_start(
        &self,
        who: &Principal,
        session: [u8; 32],
        name: &str,
        proof: Option<&MfaProof>,
    ) -> Result<CeremonyStart, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_hint(
                "a passkey needs a name of 1 to 64 characters",
                "name it after the device, e.g. \"work laptop\"",
            ));
        }
        let wa = self.webauthn()?;
        let recs = self.store.passkeys(&who.name).await?;
        if recs.len() >= MAX_PASSKEYS {
            return Err(ApiError::Conflict(format!(
                "{} has {MAX_PASSKEYS} passkeys already: remove one first",
                who.name
            )));
        }
        debug_assert!(RECOVERY_PURPOSES.contains(&"passkey-add"));
        let action = MfaAction::new("passkey-add", name, Some(session));
        let (mut changes, mut events, _lock) = self.verify_proof(who, proof, &action).await?;
        let exclude = Self::stored_passkeys(&recs)?
            .iter()
            .map(|p| p.cred_id().clone())
            .collect();
        let (ccr, state) = wa
            .start_passkey_registration(user_handle(&who.name), &who.name, &who.name, Some(exclude))
            .map_err(internal)?;
        let id = random_id("wa_");
        let now = self.now();
        changes.push(Change::StartCeremony(Ceremony {
            id: id.clone(),
            user: who.name.clone(),
            kind: "register".into(),
            purpose: "passkey-add".into(),
            subject: name.to_string(),
            session_hash: Some(session.to_vec()),
            state_json: serde_json::to_string(&state).map_err(internal)?,
            expires_at: now.plus(CEREMONY_TTL),
            created_at: now,
        }));
        events.push(event(
            now,
            "mfa.passkey_registration_started",
            Some(&who.name),
            None,
            json!({"name": name}),
        ));
        self.commit(changes, events).await?;
        Ok(CeremonyStart {
            ceremony: id,
            options: serde_json::to_value(ccr).map_err(internal)?,
        })
    }

    /// Finishes adding a passkey: the ceremony must be this user's and session's, unexpired,
    /// unused; the credential id must be new.
    pub async fn passkey_register_finish(
        &self,
        who: &Principal,
        session: [u8; 32],
        ceremony_id: &str,
        response: &str,
    ) -> Result<PasskeyView, ApiError> {
        let refused = |why: &str| {
            ApiError::bad_hint(
                format!("the passkey was not added: {why}"),
                "start again from your account page",
            )
        };
        let c = match self.store.ceremony(ceremony_id).await? {
            Some(c)
                if c.kind == "register"
                    && c.user == who.name
                    && c.session_hash.as_deref() == Some(&session[..]) =>
            {
                c
            }
            _ => return Err(refused("this registration is unknown or not yours")),
        };
        let now = self.now();
        if c.expires_at <= now {
            return Err(refused("it took longer than 5 minutes"));
        }
        if response.len() > MAX_RESPONSE {
            return Err(refused("the browser's answer is too large"));
        }
        let reg: RegisterPublicKeyCredential = serde_json::from_str(response)
            .map_err(|_| refused("the browser's answer is not a WebAuthn registration"))?;
        let state: PasskeyRegistration = serde_json::from_str(&c.state_json).map_err(internal)?;
        let pk = self
            .webauthn()?
            .finish_passkey_registration(&reg, &state)
            .map_err(|e| refused(&format!("the authenticator's answer did not verify ({e})")))?;
        let rec = PasskeyRecord {
            id: random_id("pk_"),
            user: who.name.clone(),
            cred_id: b64(pk.cred_id().as_slice()),
            name: c.subject.clone(),
            passkey_json: serde_json::to_string(&pk).map_err(internal)?,
            created_at: now,
            last_used_at: None,
        };
        let view = PasskeyView {
            id: rec.id.clone(),
            name: rec.name.clone(),
            created_at: time::rfc3339(now),
            last_used_at: None,
        };
        let ev = event(
            now,
            "mfa.passkey_added",
            Some(&who.name),
            None,
            json!({"passkey": rec.id, "name": rec.name}),
        );
        self.commit(
            vec![Change::TakeCeremony { id: c.id }, Change::AddPasskey(rec)],
            vec![ev],
        )
        .await
        .map_err(|e| match e {
            ApiError::Conflict(m) if m.contains("credential id") => {
                refused("this authenticator is registered already")
            }
            e => e,
        })?;
        Ok(view)
    }

    /// Removes one of `who`'s passkeys.
    pub async fn passkey_remove(&self, who: &Principal, id: &str) -> Result<(), ApiError> {
        let recs = self.store.passkeys(&who.name).await?;
        let Some(rec) = recs.into_iter().find(|r| r.id == id) else {
            return Err(ApiError::NotFound(format!(
                "you have no passkey {id:.40}: reload your account page"
            )));
        };
        self.commit(
            vec![Change::RemovePasskey {
                user: who.name.clone(),
                id: rec.id.clone(),
            }],
            vec![event(
                self.now(),
                "mfa.passkey_removed",
                Some(&who.name),
                None,
                json!({"passkey": rec.id, "name": rec.name}),
            )],
        )
        .await
    }
}

/// The audit kind and the user's error for a failed non-TOTP factor.
pub(crate) fn factor_failure(
    outcome: &TotpOutcome,
    user: &str,
    why: &str,
) -> (&'static str, ApiError) {
    match *outcome {
        TotpOutcome::Locked { until } => (
            "mfa.refused_locked",
            ApiError::Mfa {
                slug: "mfa-locked",
                message: format!("MFA for {user} is locked after too many failures until {until}"),
                hint: Some("wait for the lock-out to end or ask the security team".into()),
            },
        ),
        TotpOutcome::LockedNow { until } => (
            "mfa.locked",
            ApiError::Mfa {
                slug: "mfa-locked",
                message: format!("too many failed checks: MFA for {user} is locked until {until}"),
                hint: Some("the security team has been told; wait or ask them".into()),
            },
        ),
        TotpOutcome::Wrong { remaining } | TotpOutcome::Replayed { remaining } => (
            "mfa.failed",
            ApiError::Mfa {
                slug: "mfa-invalid",
                message: format!(
                    "the second factor was refused ({why}); {remaining} tries left before MFA locks"
                ),
                hint: Some("start again: each passkey tap or recovery code works once".into()),
            },
        ),
        TotpOutcome::Accepted { .. } | TotpOutcome::Malformed => (
            "mfa.failed",
            ApiError::Mfa {
                slug: "mfa-invalid",
                message: format!("the second factor was refused ({why})"),
                hint: None,
            },
        ),
    }
}
