//! Drills: the real break-glass path, end to end, as a dedicated drill identity — request →
//! policy → MFA (the server's code through the normal check) → credential → USE at the target
//! → revoke → VERIFY refused at the target → audit verify → every sink got the DRILL alert.
//! `run.rs` walks the steps, `identity.rs` keeps the drill identity, `target.rs` uses and
//! verifies credentials at the target, `people.rs` keeps game-day (people drill) windows. Each drill is a row (claimed before it runs, so a
//! scheduled slot runs once across processes) with its steps, timings and verdict.

mod identity;
mod people;
mod run;
mod target;

use super::{Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::drill;
use breakglass_core::policy::DrillSchedule;
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, DrillRecord, User};
use serde_json::{Value, json};

pub use identity::DRILL_PASSWORD_MARK;
pub use people::{DRILL_EVERY_DAYS, PeopleDrillInput};

/// The audit-chain check a drill runs (implemented over the store by `crate::audit`, which
/// sits above the engine).
#[async_trait::async_trait]
pub trait AuditCheck: Send + Sync {
    /// Ok(a one-line summary) when the whole chain and its checkpoints verify.
    async fn verify(&self, engine: &Engine) -> Result<String, String>;
}

/// A drill as the API shows it.
pub fn drill_json(d: &DrillRecord) -> Value {
    json!({
        "id": d.id, "resource": d.resource, "trigger": d.trigger,
        "slot": d.slot.map(rfc3339),
        "started_at": rfc3339(d.started_at), "finished_at": d.finished_at.map(rfc3339),
        "started_by": d.started_by, "grant_id": d.grant_id, "verdict": d.verdict,
        "failed_step": d.failed_step, "error": d.error, "steps": d.steps, "timings": d.timings,
    })
}

impl Engine {
    /// Whether `name` (or the stored `rec`) is the drill identity.
    pub(crate) fn is_drill_identity(&self, name: &str, rec: Option<&User>) -> bool {
        rec.is_some_and(|u| u.password_hash == DRILL_PASSWORD_MARK)
            || self
                .policy()
                .set
                .drills
                .as_ref()
                .is_some_and(|d| d.identity == name)
    }

    /// The drill identity was used outside a drill: audited (a security alert), refused.
    pub(crate) async fn drill_identity_misuse(&self, name: &str, what: &str) -> ApiError {
        let ev = event(
            self.now(),
            "drill.identity_misuse",
            Some(name),
            None,
            json!({"attempt": what, "message": format!("the drill identity {name} was used outside a drill ({what})")}),
        );
        if let Err(e) = self.audit_only(vec![ev]).await {
            return e;
        }
        ApiError::Forbidden(format!(
            "{name} is the drill identity: only the server's drills use it; this attempt was reported to the security team"
        ))
    }

    fn drill_schedule(&self, resource: &str) -> Result<DrillSchedule, ApiError> {
        let policy = self.policy();
        let Some(d) = policy.set.drills.as_ref() else {
            return Err(ApiError::bad_hint(
                "the policy declares no drills",
                "add a drills: section (see README, Drills)",
            ));
        };
        d.run(resource).cloned().ok_or_else(|| {
            let names: Vec<&str> = d.runs.iter().map(|r| r.resource.as_str()).collect();
            ApiError::NotFound(format!(
                "no drill for {resource:?} in the policy; drilled resources: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Runs the drill of `resource` now (admins), or of every drilled resource when `None`.
    pub async fn run_drills(
        &self,
        who: &Principal,
        resource: Option<&str>,
        audit: &dyn AuditCheck,
    ) -> Result<Vec<Value>, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden("only admins may run drills".into()));
        }
        let schedules = match resource {
            Some(r) => {
                check_text("resource", r, 64)?;
                vec![self.drill_schedule(r)?]
            }
            None => self
                .policy()
                .set
                .drills
                .as_ref()
                .map(|d| d.runs.clone())
                .unwrap_or_default(),
        };
        if schedules.is_empty() {
            return Err(ApiError::bad_hint(
                "the policy declares no drills",
                "add a drills: section (see README, Drills)",
            ));
        }
        let mut out = Vec::new();
        for s in &schedules {
            let d = self.drill(s, "manual", None, &who.name, audit).await?;
            out.push(drill_json(&d));
        }
        Ok(out)
    }

    /// Drill results, newest first (admins).
    pub async fn drill_history(
        &self,
        who: &Principal,
        resource: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Value>, ApiError> {
        if !self.is_admin(who) {
            return Err(ApiError::Forbidden("only admins may see drills".into()));
        }
        if let Some(r) = resource {
            check_text("resource", r, 64)?;
        }
        let rows = self.store.drills(resource, limit.clamp(1, 1000)).await?;
        Ok(rows.iter().map(drill_json).collect())
    }

    /// Per drilled resource: the last drill, the last success, and whether it is overdue.
    pub async fn drill_status(&self) -> Result<Vec<Value>, ApiError> {
        let policy = self.policy();
        let Some(d) = policy.set.drills.as_ref() else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let mut out = Vec::new();
        for s in &d.runs {
            let last = self.store.drills(Some(&s.resource), 1).await?.pop();
            let passed = self.store.last_passed_drill(&s.resource).await?;
            let first = self.store.first_drill_at(&s.resource).await?;
            let overdue =
                drill::overdue(passed.as_ref().map(|p| p.started_at), first, now, s.every);
            out.push(json!({
                "resource": s.resource,
                "every": breakglass_core::duration::format(s.every),
                "next_due": rfc3339(drill::next_due(now, s.every, s.at_minute)),
                "last": last.as_ref().map(drill_json),
                "last_success": passed.as_ref().map(|p| rfc3339(p.started_at)),
                "overdue": overdue,
            }));
        }
        Ok(out)
    }

    /// Audits and alerts that a resource's drill is overdue (the scheduler, once per slot).
    pub(crate) async fn drill_overdue(
        &self,
        s: &DrillSchedule,
        last_success: Option<Timestamp>,
    ) -> Result<(), ApiError> {
        self.audit_only(vec![event(
            self.now(),
            "drill.overdue",
            Some("system"),
            None,
            json!({
                "resource": s.resource, "every": breakglass_core::duration::format(s.every),
                "last_success": last_success.map(rfc3339),
                "message": format!("the drill of {} has not passed within two slots", s.resource),
            }),
        )])
        .await
    }

    pub(crate) async fn start_drill(&self, rec: &DrillRecord) -> Result<(), ApiError> {
        self.commit(
            vec![Change::StartDrill(rec.clone())],
            vec![event(
                rec.started_at,
                "drill.started",
                Some(&rec.started_by),
                None,
                json!({"drill": rec.id, "resource": rec.resource, "trigger": rec.trigger,
                       "slot": rec.slot.map(rfc3339)}),
            )],
        )
        .await
    }
}
