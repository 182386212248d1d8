//! Drills: one row per drill run with its steps, timings and verdict (the scheduler claims a
//! slot by inserting the row), and the people-drill windows.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// One drill run. `verdict` is `running`, `passed` or `failed` (then `failed_step`, `error`).
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRecord {
    pub id: String,
    pub resource: String,
    /// `scheduled` or `manual`.
    pub trigger: String,
    /// The schedule slot it ran for (scheduled runs): unique per resource.
    pub slot: Option<Timestamp>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub started_by: String,
    pub grant_id: Option<String>,
    pub verdict: String,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    /// `[{step, ok, ms, note}]`.
    pub steps: serde_json::Value,
    /// [`breakglass_core::drill::Timings`] as JSON.
    pub timings: serde_json::Value,
}

/// A people-drill window: grants requested inside it are marked training.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillWindow {
    pub id: String,
    pub opened_by: String,
    pub opened_at: Timestamp,
    /// When it ends (moved back to when it was closed, if closed early).
    pub until: Timestamp,
    /// The resources it covers; empty: every resource.
    pub resources: Vec<String>,
    pub reason: String,
    /// Who closed it early.
    pub closed_by: Option<String>,
}

impl DrillWindow {
    pub fn covers(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|r| r == resource)
    }
}

#[async_trait]
pub trait Drills: Send + Sync {
    /// Drill runs, newest first, of one resource or all.
    async fn drills(&self, resource: Option<&str>, limit: u32) -> Result<Vec<DrillRecord>>;
    /// The newest passed drill of a resource.
    async fn last_passed_drill(&self, resource: &str) -> Result<Option<DrillRecord>>;
    /// When a resource was first drilled.
    async fn first_drill_at(&self, resource: &str) -> Result<Option<Timestamp>>;
    /// The people-drill windows open at `now`.
    async fn open_drill_windows(&self, now: Timestamp) -> Result<Vec<DrillWindow>>;
    /// People-drill windows, newest first.
    async fn drill_windows(&self, limit: u32) -> Result<Vec<DrillWindow>>;
    /// Per user, when their newest people-drill (training) grant was requested.
    async fn last_people_drills(&self) -> Result<Vec<(String, Timestamp)>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    /// Fails on the unique slot index when another process claimed the slot.
    pub const START: &str = "INSERT INTO drills (id, resource, trigger, slot, started_at, started_by, \
         verdict, steps_json, timings_json) VALUES ($1, $2, $3, $4, $5, $6, 'running', '[]', '{}') \
         ON CONFLICT DO NOTHING";
    pub const FINISH: &str = "UPDATE drills SET finished_at = $1, grant_id = $2, verdict = $3, \
         failed_step = $4, error = $5, steps_json = $6, timings_json = $7 \
         WHERE id = $8 AND verdict = 'running'";
    pub const ALL: &str = "SELECT * FROM drills ORDER BY started_at DESC, id DESC LIMIT $1";
    pub const OF_RESOURCE: &str =
        "SELECT * FROM drills WHERE resource = $1 ORDER BY started_at DESC, id DESC LIMIT $2";
    pub const LAST_PASSED: &str = "SELECT * FROM drills WHERE resource = $1 AND verdict = 'passed' \
         ORDER BY started_at DESC LIMIT 1";
    pub const FIRST_AT: &str = "SELECT MIN(started_at) FROM drills WHERE resource = $1";
    pub const OPEN_WINDOW: &str = "INSERT INTO drill_windows (id, opened_by, opened_at, until, \
         resources_json, reason) VALUES ($1, $2, $3, $4, $5, $6)";
    /// Closes an open window at `$1` (a conflict when it already ended).
    pub const CLOSE_WINDOW: &str =
        "UPDATE drill_windows SET until = $1, closed_by = $2 WHERE id = $3 AND until > $1";
    /// Bounded: windows are opened by admins, a handful at a time.
    pub const WINDOWS_AT: &str = "SELECT * FROM drill_windows WHERE until > $1 AND opened_at <= $1 \
         ORDER BY opened_at DESC LIMIT 100";
    pub const WINDOWS: &str =
        "SELECT * FROM drill_windows ORDER BY opened_at DESC, id DESC LIMIT $1";
    pub const LAST_PEOPLE_DRILLS: &str = "SELECT user_name, MAX(created_at) AS last_at FROM grants \
         WHERE practice = 2 GROUP BY user_name";
}
