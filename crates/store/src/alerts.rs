//! The alert outbox.

use crate::Result;
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
