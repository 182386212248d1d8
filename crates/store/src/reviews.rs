//! Post-incident reviews and their entries.

use crate::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A post-incident review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub grant_id: String,
    pub requester: String,
    pub opened_at: Timestamp,
    pub due_at: Timestamp,
    /// Groups whose members may review.
    pub by: Vec<String>,
    /// `open` or `done`.
    pub state: String,
    pub escalated_at: Option<Timestamp>,
}

/// One reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewEntry {
    pub grant_id: String,
    pub reviewer: String,
    /// `appropriate` or `inappropriate`.
    pub verdict: String,
    pub notes: String,
    pub at: Timestamp,
}

#[async_trait]
pub trait Reviews: Send + Sync {
    async fn review(&self, grant_id: &str) -> Result<Option<Review>>;
    /// Reviews, newest first; only open ones when `open_only`.
    async fn reviews(&self, open_only: bool, limit: u32) -> Result<Vec<Review>>;
    async fn review_entries(&self, grant_id: &str) -> Result<Vec<ReviewEntry>>;
    /// Open reviews past their due date that were not escalated yet.
    async fn overdue_reviews(&self, now: Timestamp) -> Result<Vec<Review>>;
}
