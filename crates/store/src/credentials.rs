//! Credentials issued at targets, and their revocation.

use crate::error::Result;
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

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const RECORD: &str = "INSERT INTO credentials \
         (grant_id, resource, kind, fingerprint, handle, issued_at, state, pickup) \
         VALUES ($1, $2, $3, $4, $5, $6, 'issued', $7)";
    pub const START_REVOCATION: &str = "UPDATE credentials SET state = 'revoking', next_attempt_at = $1, pickup = NULL \
         WHERE grant_id = $2 AND state = 'issued'";
    pub const TAKE_PICKUP: &str =
        "UPDATE credentials SET pickup = NULL WHERE grant_id = $1 AND pickup IS NOT NULL";
    pub const LEASE_REVOCATION: &str = "UPDATE credentials SET next_attempt_at = $1 \
         WHERE grant_id = $2 AND state = 'revoking' AND next_attempt_at = $3";
    pub const REVOCATION_LEASE_HELD: &str = "SELECT COUNT(*) FROM credentials \
         WHERE grant_id = $1 AND state = 'revoking' AND next_attempt_at = $2";
    pub const REVOCATION_ATTEMPT: &str = "UPDATE credentials \
         SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4, revoked_at = $5 \
         WHERE grant_id = $6 AND state = 'revoking'";
    pub const BY_GRANT: &str = "SELECT * FROM credentials WHERE grant_id = $1";
    pub const DUE: &str = "SELECT * FROM credentials WHERE state = 'revoking' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2";
    pub const OPEN_AT: &str =
        "SELECT * FROM credentials WHERE resource = $1 AND state <> 'revoked'";
    pub const REVOKED_OF_KIND: &str =
        "SELECT * FROM credentials WHERE kind = $1 AND state IN ('revoking', 'revoked')";
}
