//! Sealed secrets.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A sealed secret's metadata and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub resource: String,
    pub sealed: Vec<u8>,
    pub version: i64,
    pub must_rotate: bool,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

#[async_trait]
pub trait Secrets: Send + Sync {
    async fn secret(&self, resource: &str) -> Result<Option<SecretRecord>>;
    async fn secrets(&self) -> Result<Vec<SecretRecord>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    /// Optimistic: the new version must follow the stored one (1 for a new secret).
    pub const PUT: &str = "INSERT INTO secrets (resource, sealed, version, must_rotate, updated_at, updated_by) \
         VALUES ($1, $2, $3, 0, $4, $5) \
         ON CONFLICT(resource) DO UPDATE SET sealed = excluded.sealed, version = excluded.version, \
           must_rotate = 0, updated_at = excluded.updated_at, updated_by = excluded.updated_by \
         WHERE secrets.version = excluded.version - 1";
    pub const FLAG_ROTATION: &str = "UPDATE secrets SET must_rotate = 1 WHERE resource = $1";
    pub const BY_RESOURCE: &str = "SELECT * FROM secrets WHERE resource = $1";
    pub const ALL: &str = "SELECT * FROM secrets ORDER BY resource";
}
