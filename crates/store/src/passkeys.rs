//! A user's second factors beside TOTP: passkeys (WebAuthn credentials), the WebAuthn
//! ceremonies in flight (server-side, so any node can finish one), and recovery codes.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A registered passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub user: String,
    /// The credential id (base64url); unique across users.
    pub cred_id: String,
    pub name: String,
    /// The credential as the WebAuthn library serialises it (public key, counter).
    pub passkey_json: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A WebAuthn ceremony started and not finished: taken (deleted) when finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub id: String,
    pub user: String,
    /// `register` or `authenticate`.
    pub kind: String,
    /// The action it proves (`login`, `approve`, …) and its subject (a grant id, a resource).
    pub purpose: String,
    pub subject: String,
    /// The session that started it (None before login).
    pub session_hash: Option<Vec<u8>>,
    pub state_json: String,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
}

/// One recovery code (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCode {
    pub hash: Vec<u8>,
    pub used_at: Option<Timestamp>,
}

/// Most ceremonies a user has in flight: starting one more drops their oldest.
pub const CEREMONIES_PER_USER: i64 = 8;

#[async_trait]
pub trait Passkeys: Send + Sync {
    async fn passkeys(&self, user: &str) -> Result<Vec<PasskeyRecord>>;
    async fn ceremony(&self, id: &str) -> Result<Option<Ceremony>>;
    async fn recovery_codes(&self, user: &str) -> Result<Vec<RecoveryCode>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const ADD: &str = "INSERT INTO passkeys (id, user_name, cred_id, name, passkey_json, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)";
    pub const UPDATE: &str =
        "UPDATE passkeys SET passkey_json = $1, last_used_at = $2 WHERE id = $3";
    pub const REMOVE: &str = "DELETE FROM passkeys WHERE id = $1 AND user_name = $2";
    pub const BY_USER: &str = "SELECT * FROM passkeys WHERE user_name = $1 ORDER BY created_at, id";
    pub const PURGE_CEREMONIES: &str = "DELETE FROM webauthn_ceremonies WHERE expires_at <= $1";
    /// Keeps the user's newest ceremonies only (`$2` − 1 of them, before one more is added).
    pub const CAP_CEREMONIES: &str = "DELETE FROM webauthn_ceremonies WHERE user_name = $1 AND id NOT IN \
         (SELECT id FROM webauthn_ceremonies WHERE user_name = $1 ORDER BY created_at DESC, id LIMIT $2 - 1)";
    pub const START_CEREMONY: &str = "INSERT INTO webauthn_ceremonies \
         (id, user_name, kind, purpose, subject, session_hash, state_json, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    pub const TAKE_CEREMONY: &str = "DELETE FROM webauthn_ceremonies WHERE id = $1";
    pub const CEREMONY: &str = "SELECT * FROM webauthn_ceremonies WHERE id = $1";
    pub const CLEAR_RECOVERY: &str = "DELETE FROM recovery_codes WHERE user_name = $1";
    pub const ADD_RECOVERY: &str = "INSERT INTO recovery_codes (user_name, hash, created_at, used_at) VALUES ($1, $2, $3, NULL)";
    pub const USE_RECOVERY: &str = "UPDATE recovery_codes SET used_at = $1 \
         WHERE user_name = $2 AND hash = $3 AND used_at IS NULL";
    pub const RECOVERY: &str =
        "SELECT hash, used_at FROM recovery_codes WHERE user_name = $1 ORDER BY created_at, hash";
}
