//! The alert outbox.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// An alert to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub created_at: Timestamp,
    pub sink: String,
    pub kind: String,
    /// Stable per alert: receivers use it to drop duplicates of an at-least-once delivery.
    pub dedup_key: String,
    pub doc: serde_json::Value,
}

/// A queued, delivered or dead-lettered alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub created_at: Timestamp,
    pub sink: String,
    pub kind: String,
    pub dedup_key: String,
    pub doc: serde_json::Value,
    /// `pending`, `delivered` or `failed` (dead-lettered).
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

#[async_trait]
pub trait Alerts: Send + Sync {
    /// Pending alerts whose next attempt is due.
    async fn due_alerts(&self, now: Timestamp, limit: u32) -> Result<Vec<AlertRow>>;
    /// Alerts, newest first, optionally in one state.
    async fn alerts(&self, state: Option<&str>, limit: u32) -> Result<Vec<AlertRow>>;
    /// When the next pending alert is due.
    async fn next_alert_at(&self) -> Result<Option<Timestamp>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const ENQUEUE: &str = "INSERT INTO alerts (created_at, sink, kind, dedup_key, doc, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6)";
    /// Claims a due alert: only if still pending and nobody moved its next attempt.
    pub const LEASE: &str = "UPDATE alerts SET next_attempt_at = $1 \
         WHERE id = $2 AND state = 'pending' AND next_attempt_at = $3";
    pub const LEASE_HELD: &str =
        "SELECT COUNT(*) FROM alerts WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2";
    /// `$5` is the state again: `delivered` also stamps `delivered_at` (`$6`).
    pub const ATTEMPT: &str = "UPDATE alerts SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4, \
         delivered_at = CASE WHEN $5 = 'delivered' THEN $6 ELSE delivered_at END WHERE id = $7";
    pub const RETRY: &str = "UPDATE alerts SET state = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL \
         WHERE id = $2 AND state = 'failed'";
    pub const DUE: &str = "SELECT * FROM alerts WHERE state = 'pending' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2";
    pub const IN_STATE: &str = "SELECT * FROM alerts WHERE state = $1 ORDER BY id DESC LIMIT $2";
    pub const ALL: &str = "SELECT * FROM alerts ORDER BY id DESC LIMIT $1";
    pub const NEXT_AT: &str = "SELECT MIN(next_attempt_at) FROM alerts WHERE state = 'pending'";
}
