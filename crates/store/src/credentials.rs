//! Credentials issued at targets, and their revocation.

use crate::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A credential issued at a target (fingerprints and handles only, never the secret).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRecord {
    pub grant_id: String,
    pub resource: String,
    pub kind: String,
    pub fingerprint: String,
    pub handle: serde_json::Value,
    pub issued_at: Timestamp,
    /// `issued`, `revoking` (revocation pending) or `revoked`.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub revoked_at: Option<Timestamp>,
    /// The credential sealed under the KEK, waiting for its holder (approver-activated grants).
    pub pickup: Option<Vec<u8>>,
}

#[async_trait]
pub trait Credentials: Send + Sync {
    async fn credential(&self, grant_id: &str) -> Result<Option<CredentialRecord>>;
    /// Credentials whose revocation attempt is due.
    async fn due_revocations(&self, now: Timestamp, limit: u32) -> Result<Vec<CredentialRecord>>;
    /// Credentials at a resource not yet confirmed revoked (issued, or revocation pending).
    async fn open_credentials(&self, resource: &str) -> Result<Vec<CredentialRecord>>;
    /// Credentials of a kind whose revocation started (pending or confirmed).
    async fn revoked_credentials(&self, kind: &str) -> Result<Vec<CredentialRecord>>;
}
