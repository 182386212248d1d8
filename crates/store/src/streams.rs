//! Delivery cursors of the audit streams and checkpoint witnesses.
//!
//! A stream's cursor is the seq of the last audit event delivered to it (a witness's: the size
//! of the last checkpoint copied). Events are never queued per stream: the audit log itself is
//! the outbox, gapless and durable in the same transaction as the action it records; the
//! cursor moves only after a delivery succeeded, by compare-and-swap, so a crash re-delivers
//! from the last recorded position (at least once) and two nodes never move it backwards.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// Where a stream or witness stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub name: String,
    /// Last delivered audit seq (streams) or checkpoint size (witnesses); 0 = none yet.
    pub position: u64,
    /// Failed attempts since the last success.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait Cursors: Send + Sync {
    /// Every cursor, by name.
    async fn cursors(&self) -> Result<Vec<Cursor>>;
    async fn cursor(&self, name: &str) -> Result<Option<Cursor>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const OPEN: &str = "INSERT INTO stream_cursors (name, position, failures, created_at) \
         VALUES ($1, $2, 0, $3) ON CONFLICT(name) DO NOTHING";
    /// Compare-and-swap: only from the position the delivery started at.
    pub const ADVANCE: &str = "UPDATE stream_cursors SET position = $1, failures = 0, last_error = NULL, \
         last_attempt_at = $2, delivered_at = $2 WHERE name = $3 AND position = $4";
    pub const FAILED: &str = "UPDATE stream_cursors SET failures = failures + 1, last_error = $1, \
         last_attempt_at = $2 WHERE name = $3";
    pub const ALL: &str = "SELECT * FROM stream_cursors ORDER BY name";
    pub const BY_NAME: &str = "SELECT * FROM stream_cursors WHERE name = $1";
}
