//! Where the audit streams and the checkpoint witness stand, for admins
//! (`GET /api/v1/audit/streams`, `breakglass audit streams`).

use super::{Engine, Principal};
use crate::error::ApiError;
use breakglass_core::time::rfc3339;
use breakglass_store::Cursor;
use serde_json::{Value, json};

fn cursor_json(c: Option<&Cursor>, behind: impl Fn(u64) -> u64) -> Value {
    match c {
        None => json!({"position": null, "behind": null, "failures": 0, "last_error": null,
                       "last_attempt_at": null, "delivered_at": null, "state": "starting"}),
        Some(c) => json!({
            "position": c.position,
            "behind": behind(c.position),
            "failures": c.failures,
            "last_error": c.last_error,
            "last_attempt_at": c.last_attempt_at.map(rfc3339),
            "delivered_at": c.delivered_at.map(rfc3339),
            "state": if c.failures > 0 { "failing" } else { "ok" },
        }),
    }
}

impl Engine {
    pub async fn audit_streams(&self, who: &Principal) -> Result<Value, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden(
                "audit streams are for admins (policy `admins`)".into(),
            ));
        }
        let head = self.store.audit_head().await?.map_or(0, |h| h.seq);
        let checkpoint = self.store.latest_checkpoint().await?.map_or(0, |c| c.size);
        let cursors = self.store.cursors().await?;
        let find = |name: &str| cursors.iter().find(|c| c.name == name);
        let policy = self.policy();
        let streams: Vec<Value> = policy
            .set
            .streams
            .iter()
            .map(|s| {
                let mut v = cursor_json(find(&s.name), |p| head.saturating_sub(p));
                v["name"] = json!(s.name);
                v["kind"] = json!(s.kind());
                v["destination"] = json!(crate::stream::destination(s));
                v
            })
            .collect();
        let mut witnesses = Vec::new();
        if let Some(w) = &policy.set.witness {
            for (kind, dest) in [("dir", &w.dir), ("url", &w.url)] {
                if let Some(d) = dest {
                    let c = find(&format!("witness:{kind}"));
                    // Behind: the newest checkpoint is not copied yet.
                    let mut v = cursor_json(c, |p| u64::from(p < checkpoint));
                    v["kind"] = json!(kind);
                    v["destination"] = json!(d);
                    witnesses.push(v);
                }
            }
        }
        Ok(json!({
            "head": head,
            "latest_checkpoint": checkpoint,
            "streams": streams,
            "witnesses": witnesses,
        }))
    }
}
