//! Time-driven transitions: expiries and approval time-outs (safe on several nodes at once).

use super::request::activation_event;
use super::{Engine, event};
use crate::error::ApiError;
use breakglass_core::grant::{Active, AnyGrant, Grant, Pending, TimedOut};
use breakglass_core::time;
use breakglass_core::time::Timestamp;
use breakglass_store::Change;
use serde_json::json;

/// Due grants ended at once (each a unit of work of its own, batched by the writer).
const DUE_AT_ONCE: usize = 32;

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
            // Concurrently, so the group-commit writer puts them in a few transactions: one
            // after another, a burst of deadlines (or a node catching up) ends late.
            use futures_util::StreamExt;
            let results: Vec<(String, Result<bool, ApiError>)> = futures_util::stream::iter(due)
                .map(|g| async move {
                    let id = g.id().to_string();
                    let result = match g {
                        AnyGrant::Active(a) => self.expire(a, now).await,
                        AnyGrant::Pending(p) => self.time_out(p, now).await,
                        AnyGrant::Ended(_) => Ok(true),
                    };
                    (id, result)
                })
                .buffer_unordered(DUE_AT_ONCE)
                .collect()
                .await;
            let mut failed = None;
            for (id, result) in results {
                match result {
                    Ok(changed) => done += usize::from(changed),
                    // Another node or request got there first: fine.
                    Err(ApiError::Conflict(_)) => {}
                    Err(e) => {
                        tracing::error!(grant = %id, error = %e, "time-driven transition failed; will retry");
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if batch < 256 {
                return Ok(done);
            }
        }
    }

    /// Ends an active grant at its deadline (its revocation and review follow in `commit`).
    async fn expire(&self, a: Grant<Active>, now: Timestamp) -> Result<bool, ApiError> {
        let deadline = a.state.expires_at;
        let info = a.info.clone();
        let Ok(e) = a.expire(now) else {
            return Ok(true);
        };
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
        .await?;
        self.metrics.expiries.inc();
        Ok(true)
    }

    /// A pending grant whose approval window closed: denied, or activated by the policy's
    /// fallback (with its credential; if the target refuses, the grant stays for the next run).
    async fn time_out(&self, p: Grant<Pending>, now: Timestamp) -> Result<bool, ApiError> {
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
                .await?;
                Ok(true)
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
                // The compare-and-swap first: if an approval activated the grant meanwhile,
                // this is a conflict, not a collision of two credential records.
                let mut changes = vec![Change::UpdateGrant {
                    expected_state: "pending",
                    grant: a.clone().into(),
                }];
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
                    Err(_) => return Ok(false),
                }
                self.commit(changes, events).await?;
                self.metrics.activations.inc();
                Ok(true)
            }
            Err(_) => Ok(true),
        }
    }
}
