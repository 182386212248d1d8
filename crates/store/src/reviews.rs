//! Post-incident reviews and their entries.

use crate::error::Result;
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

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const OPEN: &str = "INSERT INTO reviews (grant_id, opened_at, due_at, by_json, requester, state) \
         VALUES ($1, $2, $3, $4, $5, 'open')";
    pub const ADD_ENTRY: &str = "INSERT INTO review_entries (grant_id, reviewer, verdict, notes, at) \
         VALUES ($1, $2, $3, $4, $5)";
    pub const MARK_DONE: &str = "UPDATE reviews SET state = 'done' WHERE grant_id = $1";
    pub const ESCALATE: &str = "UPDATE reviews SET escalated_at = $1 \
         WHERE grant_id = $2 AND escalated_at IS NULL AND state = 'open'";
    pub const BY_GRANT: &str = "SELECT * FROM reviews WHERE grant_id = $1";
    pub const OPEN_ONES: &str =
        "SELECT * FROM reviews WHERE state = 'open' ORDER BY due_at LIMIT $1";
    pub const ALL: &str = "SELECT * FROM reviews ORDER BY opened_at DESC LIMIT $1";
    pub const ENTRIES: &str = "SELECT * FROM review_entries WHERE grant_id = $1 ORDER BY id";
    pub const OVERDUE: &str = "SELECT * FROM reviews \
         WHERE state = 'open' AND escalated_at IS NULL AND due_at <= $1 ORDER BY due_at LIMIT 100";
}
