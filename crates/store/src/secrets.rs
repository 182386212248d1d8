//! Sealed secrets.

use crate::Result;
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
