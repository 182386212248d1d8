//! Opening the post-incident review when a grant that had access ends.

use super::Engine;
use super::event;
use breakglass_core::audit::NewEvent;
use breakglass_core::grant::AnyGrant;
use breakglass_core::time;
use breakglass_store::Change;
use serde_json::json;
use std::time::Duration;

impl Engine {
    /// The review to open when `change` ends an active grant.
    pub(crate) fn review_for(&self, change: &Change) -> Option<(Change, NewEvent)> {
        let Change::UpdateGrant {
            expected_state: "active",
            grant: AnyGrant::Ended(e),
        } = change
        else {
            return None;
        };
        let info = &e.info;
        let now = e.state.ended_at;
        let within = Duration::from_millis(info.review_within_ms.unwrap_or(72 * 3600 * 1000));
        let by = if info.review_by.is_empty() {
            self.policy().set.admins.groups.clone()
        } else {
            info.review_by.clone()
        };
        let due = now.plus(within);
        Some((
            Change::OpenReview(breakglass_store::Review {
                grant_id: info.id.clone(),
                requester: info.user.clone(),
                opened_at: now,
                due_at: due,
                by: by.clone(),
                state: "open".into(),
                escalated_at: None,
            }),
            event(
                now,
                "review.opened",
                Some("system"),
                Some(info),
                json!({"due_at": time::rfc3339(due), "by": by}),
            ),
        ))
    }
}
