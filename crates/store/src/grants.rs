//! Grants: the requests for access and their state.

use crate::error::Result;
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

/// What [`Grants::grant_stats`] counts: `user`'s grants since `user_since`, `resource`'s since
/// `resource_since`.
#[derive(Debug, Clone, Copy)]
pub struct StatsQuery<'a> {
    pub user: &'a str,
    pub resource: &'a str,
    pub user_since: Timestamp,
    pub resource_since: Timestamp,
}

#[async_trait]
pub trait Grants: Send + Sync {
    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>>;
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>>;
    /// For anomaly flags: the user's grants since `user_since`, the resource's grants since
    /// `resource_since`, and whether the user ever had a grant on the resource. Counts stop at
    /// [`GRANT_STATS_CAP`] so the cost of a request stays bounded however busy the window.
    async fn grant_stats(&self, q: &StatsQuery<'_>) -> Result<(u64, u64, bool)>;
    /// Grants requested at or after `since`, oldest first.
    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// How many grants are in `state`.
    async fn count_grants(&self, state: &str) -> Result<u64>;
    /// Pending or active grants whose deadline is at or before `now`.
    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>>;
    /// The earliest deadline of any pending or active grant.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const INSERT: &str = "INSERT INTO grants (id, user_name, resource, state, deadline, created_at, doc, practice) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    /// Compare-and-swap: `$6` the state and `$7` the revision the caller read.
    pub const UPDATE: &str = "UPDATE grants SET state = $1, deadline = $2, doc = $3, rev = $4 \
         WHERE id = $5 AND state = $6 AND rev = $7";
    pub const BY_ID: &str = "SELECT doc FROM grants WHERE id = $1";
    /// The user's grants since `$2` and the resource's since `$5`, each counted up to `$3`/`$6`
    /// ([`crate::GRANT_STATS_CAP`]), and whether the user ever had the resource. Practice
    /// grants (drills, people drills: `practice <> 0`) are no real use and are left out.
    pub const STATS: &str = "SELECT \
         (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE user_name = $1 AND created_at >= $2 AND practice = 0 LIMIT $3) AS uw) AS u, \
         (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE resource = $4 AND created_at >= $5 AND practice = 0 LIMIT $6) AS rw) AS r, \
         CAST(CASE WHEN EXISTS(SELECT 1 FROM grants WHERE user_name = $7 AND resource = $8 AND practice = 0) THEN 1 ELSE 0 END AS BIGINT) AS e";
    pub const SINCE: &str =
        "SELECT doc FROM grants WHERE created_at >= $1 ORDER BY created_at LIMIT $2";
    pub const COUNT_IN_STATE: &str = "SELECT COUNT(*) FROM grants WHERE state = $1";
    pub const DUE: &str = "SELECT doc FROM grants WHERE deadline IS NOT NULL AND deadline <= $1 \
         ORDER BY deadline LIMIT $2";
    pub const NEXT_DEADLINE: &str = "SELECT MIN(deadline) FROM grants WHERE deadline IS NOT NULL";
}
