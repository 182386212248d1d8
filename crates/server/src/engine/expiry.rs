//! Time-driven transitions: expiries and approval time-outs (safe on several nodes at once).

use super::request::activation_event;
use super::{Engine, event};
use crate::error::ApiError;
use breakglass_core::grant::{AnyGrant, TimedOut};
use breakglass_core::time;
use breakglass_store::Change;
use serde_json::json;

impl Engine {
    /// Applies every time-driven transition that is due: expiries and approval time-outs.
    /// Returns how many grants changed. Safe to run on several nodes at once.
    pub async fn run_due(&self) -> Result<usize, ApiError> {
        let mut done = 0;
        loop {
            let now = self.now();
            let due = self.store.due_grants(now, 256).await?;
            if due.is_empty() {
                return Ok(done);
            }
            let batch = due.len();
            for g in due {
                let id = g.id().to_string();
                let result = match g {
                    AnyGrant::Active(a) => {
                        let deadline = a.state.expires_at;
                        let info = a.info.clone();
                        match a.expire(now) {
                            Ok(e) => {
                                let lag = now.0.saturating_sub(deadline.0);
                                self.metrics.observe_expiry_lag(lag);
                                self.commit(
                                    vec![Change::UpdateGrant {
                                        expected_state: "active",
                                        grant: e.into(),
                                    }],
                                    vec![event(
                                        now,
                                        "grant.expired",
                                        Some("system"),
                                        Some(&info),
                                        json!({"deadline": time::rfc3339(deadline), "lag_ms": lag}),
                                    )],
                                )
                                .await
                                .map(|_| self.metrics.expiries.inc())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                    AnyGrant::Pending(p) => {
                        let info = p.info.clone();
                        match p.time_out(now) {
                            Ok(TimedOut::Ended(e)) => {
                                self.commit(
                                    vec![Change::UpdateGrant {
                                        expected_state: "pending",
                                        grant: e.into(),
                                    }],
                                    vec![event(
                                        now,
                                        "grant.timed_out",
                                        Some("system"),
                                        Some(&info),
                                        json!({"on_timeout": "deny"}),
                                    )],
                                )
                                .await
                            }
                            Ok(TimedOut::Activated(a)) => {
                                let mut events = vec![
                                    event(
                                        now,
                                        "grant.timed_out",
                                        Some("system"),
                                        Some(&info),
                                        json!({"on_timeout": "auto", "review_required": true}),
                                    ),
                                    activation_event(now, &a.info, &a.state),
                                ];
                                let mut changes = Vec::new();
                                match self
                                    .issue_credential(&a.info, a.state.expires_at, true)
                                    .await
                                {
                                    Ok(Some((change, ev, _))) => {
                                        changes.push(change);
                                        events.push(ev);
                                    }
                                    Ok(None) => {}
                                    // The target refused: the fallback cannot give access; deny instead.
                                    Err(_) => continue,
                                }
                                changes.push(Change::UpdateGrant {
                                    expected_state: "pending",
                                    grant: a.into(),
                                });
                                self.commit(changes, events)
                                    .await
                                    .map(|_| self.metrics.activations.inc())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                    AnyGrant::Ended(_) => Ok(()),
                };
                match result {
                    Ok(()) => done += 1,
                    // Another node or request got there first: fine.
                    Err(ApiError::Conflict(_)) => {}
                    Err(e) => {
                        tracing::error!(grant = %id, error = %e, "time-driven transition failed; will retry");
                        return Err(e);
                    }
                }
            }
            if batch < 256 {
                return Ok(done);
            }
        }
    }
}
