//! The audit log (hash chain) and its signed checkpoints.

use crate::Result;
use async_trait::async_trait;
use breakglass_core::audit::{AuditRecord, Head, IndexColumns};
use breakglass_core::time::Timestamp;

/// A stored checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn audit_head(&self) -> Result<Option<Head>>;
    /// Records with `seq >= from`, in order, at most `limit`.
    async fn audit_records(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// [`AuditLog::audit_records`] with the columns the store keeps beside each body for its
    /// indexes (for verification: they are outside the hash).
    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>>;
    /// Records about one grant, in order.
    async fn audit_for_grant(&self, grant_id: &str) -> Result<Vec<AuditRecord>>;
    /// Audit events at or after `since`, counted by kind.
    async fn audit_kind_counts(&self, since: Timestamp) -> Result<Vec<(String, u64)>>;
    async fn add_checkpoint(&self, cp: StoredCheckpoint) -> Result<()>;
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>>;
}
