//! The `drills:` section: which resources are drilled, how often, as which identity, and where
//! the DRILL-tagged alerts go. Checked in `validate/drills.rs`; the schedule arithmetic is in
//! [`crate::drill`].

use std::time::Duration;

/// Scheduled drills: the real break-glass path, end to end, as a dedicated identity.
#[derive(Debug, Clone)]
pub struct Drills {
    /// The dedicated drill user (created by the server on first use; it can never log in).
    pub identity: String,
    /// Sinks that receive every drill alert (in addition to the grant's usual sinks).
    pub notify: Vec<String>,
    pub runs: Vec<DrillSchedule>,
}

/// One drilled resource.
#[derive(Debug, Clone)]
pub struct DrillSchedule {
    pub resource: String,
    /// A drill runs once per slot of this length.
    pub every: Duration,
    /// Minutes after midnight UTC at which slots start (`at: "03:00"`); 0 when absent.
    pub at_minute: u32,
    /// How long the drill waits for revocation to take at the target before it fails.
    pub verify_within: Duration,
    /// The ticket the drill's request carries (must satisfy the policy's ticket pattern).
    pub ticket: String,
}

impl Drills {
    pub fn run(&self, resource: &str) -> Option<&DrillSchedule> {
        self.runs.iter().find(|r| r.resource == resource)
    }
}

/// The reason a drill's request carries.
pub const DRILL_REASON: &str = "scheduled breakglass drill: end-to-end check of the emergency path";
/// Default `verify_within`.
pub const DEFAULT_VERIFY_WITHIN: Duration = Duration::from_secs(60);
/// Default ticket of a drill request.
pub const DEFAULT_DRILL_TICKET: &str = "DRILL";
