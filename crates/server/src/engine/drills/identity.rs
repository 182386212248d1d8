//! The drill identity: a dedicated user the server creates on first use, with its own TOTP
//! secret sealed under the KEK like every user's. It can never log in (its password hash is a
//! marker no password matches; any attempt is a security alert). The server computes its code,
//! which then goes through the normal MFA check (single use, lock-out).

use super::super::{Engine, Principal, event};
use crate::error::ApiError;
use breakglass_core::mfa;
use breakglass_store::{Change, User};
use rand::RngCore;
use serde_json::json;

/// The stored password hash of the drill identity: not a PHC string, so no password matches.
pub const DRILL_PASSWORD_MARK: &str = "!breakglass-drill-identity: never logs in";

impl Engine {
    /// The drill identity, created (with a confirmed authenticator) if it does not exist yet.
    /// A real user of that name is refused: the drill identity must be dedicated.
    pub(crate) async fn drill_principal(&self, name: &str) -> Result<Principal, ApiError> {
        if let Some(u) = self.store.user(name).await? {
            if u.password_hash != DRILL_PASSWORD_MARK {
                return Err(ApiError::Conflict(format!(
                    "{name} is a real user, not a drill identity: name a new user in drills.identity"
                )));
            }
            if u.disabled {
                return Err(ApiError::Forbidden(format!(
                    "the drill identity {name} is disabled"
                )));
            }
            return Ok(Principal {
                name: u.name,
                groups: u.groups,
            });
        }
        let now = self.now();
        let mut secret = zeroize::Zeroizing::new([0u8; mfa::SECRET_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut secret[..]);
        let sealed = self
            .keys
            .kek
            .seal(&super::super::factors::totp_aad(name), &secret[..]);
        self.commit(
            vec![
                Change::AddUser(User {
                    name: name.to_string(),
                    password_hash: DRILL_PASSWORD_MARK.to_string(),
                    groups: Vec::new(),
                    disabled: false,
                    created_at: now,
                }),
                Change::PutTotp {
                    user: name.to_string(),
                    sealed: Some(sealed),
                    confirmed: true,
                },
            ],
            vec![event(
                now,
                "drill.identity_created",
                Some("system"),
                None,
                json!({"user": name, "mfa": "totp (sealed, server-held)"}),
            )],
        )
        .await?;
        Ok(Principal {
            name: name.to_string(),
            groups: Vec::new(),
        })
    }

    /// A fresh code for the drill identity: the current step's, or the next one's when the
    /// current was already used (a drill just before); waits for a new step otherwise.
    pub(crate) async fn drill_code(&self, who: &Principal) -> Result<String, ApiError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(65);
        loop {
            let rec = self.store.mfa(&who.name).await?;
            let sealed = rec.totp_sealed.as_deref().unwrap_or_default();
            let secret = self
                .keys
                .kek
                .open(&super::super::factors::totp_aad(&who.name), sealed)
                .map_err(|e| {
                    ApiError::Internal(format!("the drill identity's TOTP secret: {e}"))
                })?;
            let now_step = mfa::step_at(self.now());
            let hi = now_step.saturating_add(self.config.mfa.skew_steps);
            let next = rec
                .state
                .last_step
                .map_or(now_step, |l| (l + 1).max(now_step));
            if next <= hi {
                return Ok(mfa::code_for_step(&secret, next));
            }
            if std::time::Instant::now() > deadline {
                return Err(ApiError::Internal(
                    "no unused TOTP step for the drill identity".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}
