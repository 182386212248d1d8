//! Users, their login sessions and their MFA state.

use crate::Result;
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

#[async_trait]
pub trait Users: Send + Sync {
    async fn user(&self, name: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>>;
    async fn mfa(&self, user: &str) -> Result<MfaRecord>;
}
