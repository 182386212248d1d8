//! People drills (game days): an admin opens a training window over some resources (or all);
//! real responders break glass through the real path, and every grant requested inside the
//! window is marked training — decided by the server when the request arrives, never by the
//! client and never after the fact. Training grants are real access (alerted, reviewed, secrets
//! rotated) but are not counted as real use by anomaly rules, and the period report shows per
//! person when they last drilled and who is past [`DRILL_EVERY_DAYS`].

use super::super::{Engine, Principal, check_text, event};
use crate::error::ApiError;
use breakglass_core::time::{Timestamp, rfc3339};
use breakglass_store::{Change, DrillWindow};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Each person who may break glass should have drilled within this many days (Microsoft's
/// advice for emergency accounts; NIST SP 800-53 CP-4).
pub const DRILL_EVERY_DAYS: i64 = 90;
/// The longest a training window may stay open.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_WINDOW: Duration = Duration::from_secs(2 * 3600);
/// The most windows open at once (every request reads the open ones).
const MAX_OPEN: usize = 16;

/// What an admin asks for when opening a people drill.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleDrillInput {
    /// How long the window stays open (`2h` when not given, at most 24h).
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// Resources it covers; every resource when empty.
    #[serde(default)]
    pub resources: Vec<String>,
    pub reason: String,
}

/// A window as the API shows it.
fn window_json(w: &DrillWindow, now: Timestamp) -> Value {
    json!({
        "id": w.id, "opened_by": w.opened_by, "opened_at": rfc3339(w.opened_at),
        "until": rfc3339(w.until), "resources": w.resources, "reason": w.reason,
        "closed_by": w.closed_by, "open": w.opened_at <= now && now < w.until,
    })
}

impl Engine {
    /// Opens a people-drill window (admins): audited and alerted.
    pub async fn open_people_drill(
        &self,
        who: &Principal,
        input: PeopleDrillInput,
    ) -> Result<Value, ApiError> {
        self.admin_only(who, "starting a people drill")?;
        let reason = input.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::bad_hint(
                "a people drill needs a reason",
                "say what the game day exercises, e.g. --reason \"Q4 game day: DB locked\"",
            ));
        }
        check_text("reason", reason, 500)?;
        let length = match input.duration.as_deref() {
            None => DEFAULT_WINDOW,
            Some(d) => breakglass_core::duration::parse(d).map_err(|e| {
                ApiError::bad_hint(format!("bad duration {d:.20?}: {e}"), "use e.g. 90m or 2h")
            })?,
        };
        if length.is_zero() || length > MAX_WINDOW {
            return Err(ApiError::bad_hint(
                "a people drill lasts more than 0 and at most 24h",
                "use e.g. --for 2h",
            ));
        }
        if input.resources.len() > 64 {
            return Err(ApiError::bad("name at most 64 resources"));
        }
        let policy = self.policy();
        for r in &input.resources {
            check_text("resource", r, 64)?;
            if policy.set.resource(r).is_none() {
                return Err(ApiError::NotFound(format!(
                    "no resource {r:?} in the policy; see `breakglass policy`"
                )));
            }
        }
        let now = self.now();
        if self.store.open_drill_windows(now).await?.len() >= MAX_OPEN {
            return Err(ApiError::bad_hint(
                format!("{MAX_OPEN} people drills are open already"),
                "end one first: `breakglass drill windows`, then `breakglass drill stop --window ID`",
            ));
        }
        let mut resources = input.resources.clone();
        resources.sort();
        resources.dedup();
        let until = now.plus(length);
        let w = DrillWindow {
            id: super::super::request::new_grant_id().replacen("g-", "w-", 1),
            opened_by: who.name.clone(),
            opened_at: now,
            until,
            resources: resources.clone(),
            reason: reason.to_string(),
            closed_by: None,
        };
        let covers = if resources.is_empty() {
            "every resource".to_string()
        } else {
            resources.join(", ")
        };
        let ev = event(
            now,
            "drill.people_opened",
            Some(&who.name),
            None,
            json!({
                "window": w.id, "resources": resources, "until": rfc3339(until), "reason": reason,
                "message": format!("a people drill is open until {} on {covers}: grants requested there are marked training", rfc3339(until)),
            }),
        );
        self.commit(vec![Change::OpenDrillWindow(w.clone())], vec![ev])
            .await?;
        Ok(window_json(&w, now))
    }

    /// Closes the open people-drill windows (admins), or only `id`.
    pub async fn close_people_drill(
        &self,
        who: &Principal,
        id: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        self.admin_only(who, "stopping a people drill")?;
        let now = self.now();
        let open = self.store.open_drill_windows(now).await?;
        let chosen: Vec<DrillWindow> = match id {
            Some(id) => {
                check_text("window", id, 64)?;
                let w = open.into_iter().find(|w| w.id == id).ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "no open people drill {id}; see `breakglass drill windows`"
                    ))
                })?;
                vec![w]
            }
            None => open,
        };
        if chosen.is_empty() {
            return Err(ApiError::NotFound(
                "no people drill is open; see `breakglass drill windows`".into(),
            ));
        }
        let mut out = Vec::new();
        for mut w in chosen {
            let ev = event(
                now,
                "drill.people_closed",
                Some(&who.name),
                None,
                json!({"window": w.id, "opened_at": rfc3339(w.opened_at)}),
            );
            let close = Change::CloseDrillWindow {
                id: w.id.clone(),
                by: who.name.clone(),
                at: now,
            };
            self.commit(vec![close], vec![ev]).await?;
            w.until = now;
            w.closed_by = Some(who.name.clone());
            out.push(window_json(&w, now));
        }
        Ok(out)
    }

    /// People-drill windows, newest first (admins).
    pub async fn people_drill_windows(
        &self,
        who: &Principal,
        limit: u32,
    ) -> Result<Vec<Value>, ApiError> {
        self.admin_only(who, "seeing people drills")?;
        let now = self.now();
        let rows = self.store.drill_windows(limit.clamp(1, 1000)).await?;
        Ok(rows.iter().map(|w| window_json(w, now)).collect())
    }

    /// The open people-drill window covering `resource` at `now`, if any: a request arriving
    /// now is training.
    pub(crate) async fn training_window(
        &self,
        resource: &str,
        now: Timestamp,
    ) -> Result<Option<String>, ApiError> {
        let open = self.store.open_drill_windows(now).await?;
        Ok(open.into_iter().find(|w| w.covers(resource)).map(|w| w.id))
    }

    /// The period report's people-drill section: per person who may break glass (the policy's
    /// `who`, users named or in a named group), when they last drilled and whether that is
    /// more than [`DRILL_EVERY_DAYS`] ago (or never).
    pub(crate) async fn people_drill_report(&self, now: Timestamp) -> Result<Value, ApiError> {
        let policy = self.policy();
        let mut people: BTreeSet<String> = BTreeSet::new();
        for p in &policy.set.policies {
            for u in &p.who.users {
                if !self.is_drill_identity(u, None) {
                    people.insert(u.clone());
                }
            }
        }
        let groups: Vec<&String> = policy
            .set
            .policies
            .iter()
            .flat_map(|p| &p.who.groups)
            .collect();
        for u in self.store.users().await? {
            let eligible = !u.disabled && u.groups.iter().any(|g| groups.contains(&g));
            if eligible && !self.is_drill_identity(&u.name, Some(&u)) {
                people.insert(u.name);
            }
        }
        let last: HashMap<String, Timestamp> =
            self.store.last_people_drills().await?.into_iter().collect();
        let day_ms = 24 * 3600 * 1000;
        let mut overdue = Vec::new();
        let rows: Vec<Value> = people
            .iter()
            .map(|name| {
                let at = last.get(name).copied();
                let days = at.map(|t| (now.0 - t.0).max(0) / day_ms);
                let late = days.is_none_or(|d| d > DRILL_EVERY_DAYS);
                if late {
                    overdue.push(name.clone());
                }
                json!({"user": name, "last_drilled": at.map(rfc3339), "days_ago": days,
                       "overdue": late})
            })
            .collect();
        Ok(json!({"every_days": DRILL_EVERY_DAYS, "people": rows, "overdue": overdue}))
    }
}
