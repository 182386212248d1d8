//! Users, their login sessions and their MFA state.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::mfa::MfaState;
use breakglass_core::time::Timestamp;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

/// A login session (only the hash of the token is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A user's MFA enrolment and guessing state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MfaRecord {
    /// The TOTP secret, sealed (encrypted) by the caller's key; never stored in clear.
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_confirmed: bool,
    pub state: MfaState,
    /// Bumped by every write of the record: [`crate::Change::PutMfaState`] names the version it read.
    pub version: i64,
}

/// A login throttle counter as every node sees it: failed logins, and the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailures {
    pub key: String,
    pub failures: u32,
    pub last_at: Timestamp,
}

#[async_trait]
pub trait Users: Send + Sync {
    async fn user(&self, name: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>>;
    async fn mfa(&self, user: &str) -> Result<MfaRecord>;
    /// The shared login throttle counters among `keys` (those with no failures are absent).
    async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const ADD: &str = "INSERT INTO users (name, password_hash, groups_json, disabled, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT(name) DO NOTHING";
    pub const SET_DISABLED: &str = "UPDATE users SET disabled = $1 WHERE name = $2";
    pub const CREATE_SESSION: &str = "INSERT INTO sessions (token_hash, user_name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)";
    pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";
    pub const DELETE_USER_SESSIONS: &str = "DELETE FROM sessions WHERE user_name = $1";
    /// Sets the TOTP enrolment; bumps the version so a concurrent state write is refused.
    pub const PUT_TOTP: &str = "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json) \
         VALUES ($1, $2, $3, '{}') \
         ON CONFLICT(user_name) DO UPDATE SET totp_sealed = excluded.totp_sealed, \
           totp_confirmed = excluded.totp_confirmed, version = mfa.version + 1";
    /// Compare-and-swap on the version read (`$3`).
    pub const PUT_MFA_STATE: &str = "UPDATE mfa SET state_json = $1, version = version + 1 WHERE user_name = $2 AND version = $3";
    /// The first state write of a user with no MFA row (version 0).
    pub const INSERT_MFA_STATE: &str = "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json, version) \
         VALUES ($1, NULL, 0, $2, 1) ON CONFLICT(user_name) DO NOTHING";
    /// One more failure; a counter idle since `$3` starts again.
    pub const COUNT_LOGIN_FAILURE: &str = "INSERT INTO login_failures (key, failures, last_at) \
         VALUES ($1, 1, $2) ON CONFLICT(key) DO UPDATE SET \
           failures = CASE WHEN login_failures.last_at < $3 THEN 1 ELSE login_failures.failures + 1 END, \
           last_at = excluded.last_at";
    pub const PRUNE_LOGIN_FAILURES: &str = "DELETE FROM login_failures WHERE last_at < $1";
    pub const CLEAR_LOGIN_FAILURES: &str = "DELETE FROM login_failures WHERE key = $1";
    pub const LOGIN_FAILURES: &str =
        "SELECT key, failures, last_at FROM login_failures WHERE key = $1";
    pub const BY_NAME: &str = "SELECT * FROM users WHERE name = $1";
    pub const ALL: &str = "SELECT * FROM users ORDER BY name";
    pub const SESSION: &str =
        "SELECT user_name, created_at, expires_at FROM sessions WHERE token_hash = $1";
    pub const MFA: &str =
        "SELECT totp_sealed, totp_confirmed, state_json, version FROM mfa WHERE user_name = $1";
}
