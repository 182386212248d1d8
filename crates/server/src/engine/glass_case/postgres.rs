//! The glass case's emergency PostgreSQL logins: for every postgres resource with
//! `glass_case: true`, one role per day of the ladder, created at the target when the case is
//! sealed, `VALID UNTIL` the end of its day, a member of the resource's `grant_roles` only.
//!
//! PostgreSQL has no "valid after", so a day's role could log in before its day if its password
//! leaked: the passwords exist only inside the encrypted bundle, the opener releases only the
//! day's login (journalled), and reconcile drops every role of the case, used or not. The sweep
//! leaves a role alone only while its case is sealed and its day has not ended; after that it
//! is dropped like any orphan (audited `credential.orphan_removed`), so an unreconciled case's
//! roles disappear day by day and a reconcile that could not reach the target is finished by
//! the sweep.

use super::super::Engine;
use crate::error::ApiError;
use breakglass_connectors::IssueRequest;
use breakglass_core::glass_case::PgItem;
use breakglass_core::grant::GrantInfo;
use breakglass_core::policy::{Resource, ResourceKind};
use breakglass_core::time::Timestamp;
use breakglass_store::GlassRole;
use serde_json::{Value, json};

/// The policy setting that puts a postgres resource's emergency logins in glass cases.
pub const SETTING: &str = "glass_case";

/// Whether `r` gets emergency PostgreSQL logins in glass cases.
pub fn in_case(r: &Resource) -> bool {
    r.kind == ResourceKind::Postgres
        && r.settings.get(SETTING).and_then(Value::as_bool) == Some(true)
}

/// What [`Engine::drop_glass_roles`] did.
#[derive(Default)]
pub struct Dropped {
    pub dropped: Vec<String>,
    /// Role and why it could not be dropped now (the sweep drops it later).
    pub pending: Vec<(String, String)>,
    /// Objects the dropped roles left behind (reassigned and disarmed, as for any grant).
    pub left_behind: usize,
}

impl Engine {
    /// Creates the day logins of every resource [`in_case`]. On any failure the roles already
    /// created are dropped again and the seal is refused.
    pub(super) async fn glass_case_pg_logins(
        &self,
        case_id: &str,
        ladder: &[(Timestamp, Timestamp)],
        now: Timestamp,
    ) -> Result<(Vec<PgItem>, Vec<GlassRole>), ApiError> {
        let policy = self.policy();
        let mut items = Vec::new();
        let mut roles = Vec::new();
        for r in policy.set.resources.iter().filter(|r| in_case(r)) {
            let res = self
                .day_logins(r, case_id, ladder, now, &mut items, &mut roles)
                .await;
            if let Err(e) = res {
                let undone = self.drop_glass_roles(&roles).await;
                if !undone.pending.is_empty() {
                    tracing::warn!(
                        case = case_id,
                        pending = undone.pending.len(),
                        "glass case seal failed; the sweep drops the logins left at the target"
                    );
                }
                return Err(e);
            }
        }
        Ok((items, roles))
    }

    async fn day_logins(
        &self,
        r: &Resource,
        case_id: &str,
        ladder: &[(Timestamp, Timestamp)],
        now: Timestamp,
        items: &mut Vec<PgItem>,
        roles: &mut Vec<GlassRole>,
    ) -> Result<(), ApiError> {
        let target = |e: breakglass_connectors::ConnectorError| {
            ApiError::Target(format!("glass case login at {}: {e}", r.name))
        };
        let c = self
            .connector(r)
            .await
            .map_err(target)?
            .ok_or_else(|| ApiError::Internal(format!("{} has no connector", r.name)))?;
        let hex = case_id.trim_start_matches("gc-");
        for (day, (after, before)) in ladder.iter().enumerate() {
            let info = GrantInfo {
                id: format!("g-{hex}{day:02x}"),
                user: "glass-case".into(),
                resource: r.name.clone(),
                policy: "glass-case".into(),
                reason: format!("glass case {case_id}, day {}", day + 1),
                ticket: None,
                requested_at: now,
                duration_ms: (before.0 - now.0).max(0) as u64,
                max_ms: (before.0 - now.0).max(0) as u64,
                review_by: vec![],
                review_within_ms: None,
                notify: vec![],
                flags: vec![],
                ssh_public_key: None,
                drill: false,
                training: None,
                rev: 0,
            };
            let issued = c
                .issue(&IssueRequest {
                    grant: &info,
                    now,
                    expires_at: *before,
                    ssh_public_key: None,
                    recorder: None,
                    gateway: None,
                })
                .await
                .map_err(target)?;
            let cred = issued.credential.unwrap_or_default();
            let role = issued.handle["role"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            roles.push(GlassRole {
                case_id: case_id.into(),
                resource: r.name.clone(),
                role: role.clone(),
                valid_after: *after,
                valid_before: *before,
            });
            items.push(PgItem {
                resource: r.name.clone(),
                role,
                valid_after: after.0,
                valid_before: before.0,
                url: cred["url"].as_str().unwrap_or_default().to_string(),
                roles: serde_json::from_value(cred["roles"].clone()).unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Drops `roles` at their targets (idempotent: a role already gone counts as dropped).
    /// Stops at a resource's first failure: the target is likely down, and the sweep finishes.
    pub(super) async fn drop_glass_roles(&self, roles: &[GlassRole]) -> Dropped {
        let policy = self.policy();
        let mut out = Dropped::default();
        let mut down: Vec<(&str, String)> = Vec::new();
        for g in roles {
            if let Some((_, why)) = down.iter().find(|(r, _)| *r == g.resource) {
                out.pending.push((g.role.clone(), why.clone()));
                continue;
            }
            let conn = match policy.set.resource(&g.resource) {
                Some(r) => self.connector(r).await.map_err(|e| e.to_string()),
                None => Err(format!(
                    "resource {} is no longer in the policy",
                    g.resource
                )),
            };
            let res = match conn {
                Ok(Some(c)) => c
                    .revoke(&json!({"role": g.role}))
                    .await
                    .map_err(|e| e.to_string()),
                Ok(None) => Err(format!("{} has no connector", g.resource)),
                Err(e) => Err(e),
            };
            match res {
                Ok(r) => {
                    out.left_behind += r.left_behind.len();
                    out.dropped.push(g.role.clone());
                }
                Err(e) => {
                    down.push((&g.resource, e.clone()));
                    out.pending.push((g.role.clone(), e));
                }
            }
        }
        out
    }
}
