//! Who is calling: passwords, login sessions, and disabling a user (which ends what they hold).

use super::factors::{MfaAction, MfaLock, MfaPass, MfaProof};
use super::views::LoginOutput;
use super::{CAS_RETRIES, Engine, Principal, event};
use crate::error::ApiError;
pub use crate::hash_pool::hash_password;
use crate::login_throttle::Attempt;
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::AnyGrant;
use breakglass_core::time::{self, Timestamp};
use breakglass_store::{Change, GrantFilter, Session, User};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

/// SHA-256 of a session token (tokens are 256-bit random, so a fast hash is enough).
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!(
        "bgs_{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b)
    )
}

/// Checks a user or group name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        })
}

impl Engine {
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > 128 {
            return Err(ApiError::Unauthenticated);
        }
        let Some(session) = self.store.session(&token_hash(token)).await? else {
            return Err(ApiError::Unauthenticated);
        };
        if session.expires_at <= self.now() {
            return Err(ApiError::Unauthenticated);
        }
        match self.store.user(&session.user).await? {
            Some(u) if !u.disabled => Ok(Principal {
                name: u.name,
                groups: u.groups,
            }),
            _ => Err(ApiError::Unauthenticated),
        }
    }

    /// Logs in `user` from `source` (the TCP peer). Wrong passwords slow further tries (see
    /// [`crate::login_throttle`]); a throttled try is refused with 429 before any check.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        otp: Option<&str>,
        source: std::net::IpAddr,
    ) -> Result<LoginOutput, ApiError> {
        let proof = otp.map(|c| MfaProof::Totp(c.to_string()));
        self.login_with_proof(user, password, proof, source).await
    }

    /// Logs in with a password and, when given, a second factor (a TOTP code or a recovery
    /// code, spent with the session).
    pub async fn login_with_proof(
        &self,
        user: &str,
        password: &str,
        proof: Option<MfaProof>,
        source: std::net::IpAddr,
    ) -> Result<LoginOutput, ApiError> {
        if !valid_name(user) || password.len() > 1024 {
            return Err(ApiError::InvalidCredentials);
        }
        let now = self.now();
        let attempt = self.reserve_login(user, source, now).await?;
        let record = self.store.user(user).await?;
        // The drill identity can never log in: any attempt is a security alert.
        if self.is_drill_identity(user, record.as_ref()) {
            return match self.drill_identity_misuse(user, "login").await {
                ApiError::Forbidden(_) => Err(ApiError::InvalidCredentials),
                e => Err(e),
            };
        }
        let ok = self.check_password(record.as_ref(), password).await?;
        let user_rec = match record {
            Some(u) if ok && !u.disabled => u,
            other => {
                self.audit_failed_login(user, other.as_ref(), attempt, source, now)
                    .await?;
                return Err(ApiError::InvalidCredentials);
            }
        };
        attempt.succeeded();
        let principal = Principal {
            name: user_rec.name.clone(),
            groups: user_rec.groups.clone(),
        };
        let pass = match self.login_mfa(&principal, proof.as_ref()).await {
            Ok(p) => p,
            Err(e) => {
                // The password was right: its counters are cleared on every node all the same.
                self.commit(vec![Self::clear_login_failures(user, source)], Vec::new())
                    .await?;
                return Err(e);
            }
        };
        let method = match &proof {
            None => None,
            Some(MfaProof::Totp(_)) => Some("totp"),
            Some(MfaProof::Recovery(_)) => Some("recovery-code"),
            Some(MfaProof::Passkey { .. }) => Some("passkey"),
        };
        self.start_login_session(user_rec, pass, method, source, now)
            .await
    }

    /// Logs in with a passkey alone (user verification makes it two factors): the assertion
    /// must answer a `login` ceremony started for `user` by [`Engine::passkey_challenge`].
    /// Failed tries count on the login throttle (they need no password, so they do not count
    /// towards the MFA lock-out: anyone could lock anyone out).
    pub async fn login_passkey(
        &self,
        user: &str,
        ceremony: &str,
        response: &str,
        source: std::net::IpAddr,
    ) -> Result<LoginOutput, ApiError> {
        if !valid_name(user) {
            return Err(ApiError::InvalidCredentials);
        }
        let now = self.now();
        let attempt = self.reserve_login(user, source, now).await?;
        let user_rec = match self.store.user(user).await? {
            Some(u) if !u.disabled => u,
            other => {
                self.audit_failed_login(user, other.as_ref(), attempt, source, now)
                    .await?;
                return Err(ApiError::InvalidCredentials);
            }
        };
        let principal = Principal {
            name: user_rec.name.clone(),
            groups: user_rec.groups.clone(),
        };
        let proof = MfaProof::Passkey {
            ceremony: ceremony.to_string(),
            response: response.to_string(),
        };
        let action = MfaAction::new("login", user, None);
        let pass = match self.verify_proof(&principal, Some(&proof), &action).await {
            Ok(p) => {
                attempt.succeeded();
                p
            }
            Err(e) => {
                let bursts = attempt.failed(now);
                let counted = self.count_login_failure(user, source, now);
                self.commit(
                    vec![counted],
                    crate::login_throttle::burst_events(now, &bursts),
                )
                .await?;
                return Err(e);
            }
        };
        self.start_login_session(user_rec, pass, Some("passkey"), source, now)
            .await
    }

    /// Creates a session for `user_rec`, committed with the MFA proof's state and evidence.
    async fn start_login_session(
        &self,
        user_rec: User,
        pass: MfaPass,
        method: Option<&str>,
        source: std::net::IpAddr,
        now: Timestamp,
    ) -> Result<LoginOutput, ApiError> {
        let user = user_rec.name.as_str();
        let (mut changes, mut events, _mfa) = pass;
        changes.push(Self::clear_login_failures(user, source));
        let mfa_rec = self.store.mfa(user).await?;
        let token = random_token();
        let expires_at = now.plus(self.config.session_ttl);
        changes.push(Change::CreateSession {
            token_hash: token_hash(&token),
            session: Session {
                user: user.to_string(),
                created_at: now,
                expires_at,
            },
        });
        events.push(event(
            now,
            "auth.login",
            Some(user),
            None,
            json!({"mfa": method.is_some(), "method": method, "session_expires_at": time::rfc3339(expires_at)}),
        ));
        self.commit(changes, events).await?;
        Ok(LoginOutput {
            token,
            user: user_rec.name.clone(),
            groups: user_rec.groups,
            expires_at: time::rfc3339(expires_at),
            totp_enrolled: mfa_rec.totp_confirmed,
        })
    }

    /// A password check for `user` from `source`, or the throttle's refusal (audited).
    async fn reserve_login(
        &self,
        user: &str,
        source: std::net::IpAddr,
        now: Timestamp,
    ) -> Result<Attempt<'_>, ApiError> {
        // What every node counted (several nodes on one store): failures spread over nodes
        // count as one guesser's.
        let keys = crate::login_throttle::shared_keys(user, source);
        let shared: Vec<_> = self
            .store
            .login_failures(&keys)
            .await?
            .into_iter()
            .map(|f| (f.key, f.failures, f.last_at))
            .collect();
        self.login_throttle.merge_shared(user, source, &shared, now);
        match self.login_throttle.reserve(user, source, now) {
            Ok(a) => Ok(a),
            Err(refusal) => {
                self.metrics.logins_throttled.inc();
                self.audit_only(crate::login_throttle::burst_events(now, &refusal.bursts))
                    .await?;
                Err(crate::login_throttle::refusal_error(user, source, &refusal))
            }
        }
    }

    /// Checks `password` on the hash pool; an unknown user is checked against a dummy hash so
    /// that it takes as long.
    async fn check_password(
        &self,
        record: Option<&User>,
        password: &str,
    ) -> Result<bool, ApiError> {
        let phc = record
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let pw = zeroize::Zeroizing::new(password.to_string());
        let check = move |mem: &mut _| crate::hash_pool::verify(mem, pw.as_bytes(), &phc);
        match self.hash_pool.run(check).await {
            Ok(ok) => Ok(ok),
            Err(e) => {
                self.metrics.logins_busy.inc();
                Err(e)
            }
        }
    }

    /// Counts a failed login (wrong password, unknown or disabled user) and audits it.
    async fn audit_failed_login(
        &self,
        user: &str,
        record: Option<&User>,
        attempt: Attempt<'_>,
        source: std::net::IpAddr,
        now: Timestamp,
    ) -> Result<(), ApiError> {
        let src = attempt.source();
        let bursts = attempt.failed(now);
        let counted = self.count_login_failure(user, source, now);
        let mut events = vec![event(
            now,
            "auth.login_failed",
            Some(user),
            None,
            json!({"known_user": record.is_some(), "disabled": record.map(|u| u.disabled).unwrap_or(false), "source": src}),
        )];
        events.extend(crate::login_throttle::burst_events(now, &bursts));
        self.commit(vec![counted], events).await?;
        Ok(())
    }

    /// The shared counters' side of a failed login (committed with its audit event).
    fn count_login_failure(&self, user: &str, source: std::net::IpAddr, now: Timestamp) -> Change {
        let forget = self.config.login_throttle.forget_after;
        Change::CountLoginFailure {
            keys: crate::login_throttle::shared_keys(user, source).to_vec(),
            at: now,
            forget_before: Timestamp(
                now.0
                    .saturating_sub(i64::try_from(forget.as_millis()).unwrap_or(i64::MAX)),
            ),
        }
    }

    /// The right password (or passkey): this source starts afresh on this account on every
    /// node, as it does on this one.
    fn clear_login_failures(user: &str, source: std::net::IpAddr) -> Change {
        let [pair, _, account] = crate::login_throttle::shared_keys(user, source);
        Change::ClearLoginFailures {
            keys: vec![pair, account],
        }
    }

    /// A code given at login is verified (and spent) with the session; none is not asked for.
    async fn login_mfa(
        &self,
        principal: &Principal,
        proof: Option<&MfaProof>,
    ) -> Result<MfaPass, ApiError> {
        match proof {
            Some(p) => {
                let action = MfaAction::new("login", &principal.name, None);
                self.verify_proof(principal, Some(p), &action).await
            }
            None => Ok((Vec::new(), Vec::new(), MfaLock::none())),
        }
    }

    pub async fn logout(&self, token: &str, who: &Principal) -> Result<(), ApiError> {
        self.commit(
            vec![Change::DeleteSession {
                token_hash: token_hash(token),
            }],
            vec![event(
                self.now(),
                "auth.logout",
                Some(&who.name),
                None,
                json!({}),
            )],
        )
        .await
    }

    /// Alerts for admins: the outbox, newest first.
    /// Disables a user: no new login, their sessions end, and every grant they hold ends now,
    /// in one transaction — active grants are revoked (their target credentials queued for
    /// revocation, reviews opened, alerts queued by [`Engine::commit`]), pending ones cancelled.
    /// Returns the ids of the grants it ended.
    pub async fn disable_user(&self, name: &str, actor: &str) -> Result<Vec<String>, ApiError> {
        let mut attempt = 0;
        loop {
            if self.store.user(name).await?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "no user {name}: see `breakglass admin user list`"
                )));
            }
            let open = self
                .store
                .grants(&GrantFilter {
                    user: Some(name.to_string()),
                    states: vec!["pending".into(), "active".into()],
                    limit: 10_000,
                })
                .await?;
            let now = self.now();
            let mut changes = vec![
                Change::SetUserDisabled {
                    name: name.to_string(),
                    disabled: true,
                },
                Change::DeleteUserSessions {
                    user: name.to_string(),
                },
            ];
            let mut events = Vec::new();
            let mut ended = Vec::new();
            for g in open {
                let info = g.info().clone();
                let (expected, next, kind) = match g {
                    AnyGrant::Active(a) => (
                        "active",
                        AnyGrant::from(a.revoke(actor, Some("user disabled".into()), now)),
                        "grant.revoked",
                    ),
                    AnyGrant::Pending(p) => (
                        "pending",
                        AnyGrant::from(p.cancel(actor, now)),
                        "grant.cancelled",
                    ),
                    AnyGrant::Ended(_) => continue,
                };
                changes.push(Change::UpdateGrant {
                    expected_state: expected,
                    grant: next,
                });
                events.push(event(
                    now,
                    kind,
                    Some(actor),
                    Some(&info),
                    json!({"reason": "user disabled"}),
                ));
                ended.push(info.id);
            }
            events.insert(
                0,
                NewEvent {
                    ts_ms: now.0,
                    kind: "admin.user_disabled".into(),
                    actor: Some(actor.to_string()),
                    grant_id: None,
                    resource: None,
                    data: json!({"user": name, "details": {"ended_grants": ended}}),
                },
            );
            match self.commit(changes, events).await {
                // A grant of the user changed while we read them (an extension, an expiry).
                Err(ApiError::Conflict(_)) if attempt < CAS_RETRIES => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => {
                    self.metrics.revocations.add(ended.len() as u64);
                    self.wake.notify_one();
                    return Ok(ended);
                }
            }
        }
    }

    pub async fn user_exists(&self, name: &str) -> Result<Option<User>, ApiError> {
        Ok(self.store.user(name).await?)
    }
}
