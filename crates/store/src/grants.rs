//! Grants: the requests for access and their state.

use crate::Result;
use async_trait::async_trait;
use breakglass_core::grant::AnyGrant;
use breakglass_core::time::Timestamp;

/// Which grants to list.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub user: Option<String>,
    /// Only grants in these states (`pending`, `active`, …); all when empty.
    pub states: Vec<String>,
    pub limit: u32,
}

/// Where [`Grants::grant_stats`] stops counting (anomaly thresholds are far below it).
pub const GRANT_STATS_CAP: u64 = 1000;

#[async_trait]
pub trait Grants: Send + Sync {
    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>>;
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>>;
    /// For anomaly flags: the user's grants since `user_since`, the resource's grants since
    /// `resource_since`, and whether the user ever had a grant on the resource. Counts stop at
    /// [`GRANT_STATS_CAP`] so the cost of a request stays bounded however busy the window.
    async fn grant_stats(
        &self,
        user: &str,
        resource: &str,
        user_since: Timestamp,
        resource_since: Timestamp,
    ) -> Result<(u64, u64, bool)>;
    /// Grants requested at or after `since`, oldest first.
    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// How many grants are in `state`.
    async fn count_grants(&self, state: &str) -> Result<u64>;
    /// Pending or active grants whose deadline is at or before `now`.
    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// The earliest deadline of any pending or active grant.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
}
