//! The audit log (hash chain) and its signed checkpoints.

use crate::error::Result;
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
    /// The newest (largest) checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;
    /// Checkpoints larger than `size`, smallest first, at most `limit`.
    async fn checkpoints_after(&self, size: u64, limit: u32) -> Result<Vec<StoredCheckpoint>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    /// The chain's last link.
    pub const HEAD: &str = "SELECT seq, chain FROM audit ORDER BY seq DESC LIMIT 1";
    /// Followed by the rows' VALUES (the writer appends a batch's events in a few statements).
    pub const APPEND_ROWS: &str = "INSERT INTO audit (seq, body, leaf, chain, ts, kind, grant_id) ";
    /// Records and their index columns from seq `$1`, at most `$2`.
    pub const ROWS: &str = "SELECT seq, body, leaf, chain, ts, kind, grant_id FROM audit \
         WHERE seq >= $1 ORDER BY seq LIMIT $2";
    pub const FOR_GRANT: &str =
        "SELECT seq, body, leaf, chain FROM audit WHERE grant_id = $1 ORDER BY seq";
    pub const ADD_CHECKPOINT: &str = "INSERT INTO checkpoints (size, note, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT(size) DO NOTHING";
    pub const CHECKPOINTS: &str = "SELECT size, note, created_at FROM checkpoints ORDER BY size";
    pub const LATEST_CHECKPOINT: &str =
        "SELECT size, note, created_at FROM checkpoints ORDER BY size DESC LIMIT 1";
    pub const CHECKPOINTS_AFTER: &str = "SELECT size, note, created_at FROM checkpoints WHERE size > $1 \
         ORDER BY size LIMIT $2";
}
