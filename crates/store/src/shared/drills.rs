//! Drill runs and people-drill windows. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, json, opt_ts, row, rows, to_json, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::drills::sql;
use crate::{Change, DrillRecord, DrillWindow, Drills, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn drill_from_row(row: &DbRow) -> Result<DrillRecord> {
    Ok(DrillRecord {
        id: row.try_get("id")?,
        resource: row.try_get("resource")?,
        trigger: row.try_get("trigger")?,
        slot: opt_ts(row, "slot")?,
        started_at: ts(row, "started_at")?,
        finished_at: opt_ts(row, "finished_at")?,
        started_by: row.try_get("started_by")?,
        grant_id: row.try_get("grant_id")?,
        verdict: row.try_get("verdict")?,
        failed_step: row.try_get("failed_step")?,
        error: row.try_get("error")?,
        steps: json(row, "steps_json", "drill steps")?,
        timings: json(row, "timings_json", "drill timings")?,
    })
}

fn window_from_row(row: &DbRow) -> Result<DrillWindow> {
    Ok(DrillWindow {
        id: row.try_get("id")?,
        opened_by: row.try_get("opened_by")?,
        opened_at: ts(row, "opened_at")?,
        until: ts(row, "until")?,
        resources: json(row, "resources_json", "drill window resources")?,
        reason: row.try_get("reason")?,
        closed_by: row.try_get("closed_by")?,
    })
}

#[async_trait]
impl Drills for Backend {
    async fn drills(&self, resource: Option<&str>, limit: u32) -> Result<Vec<DrillRecord>> {
        let limit = i64::from(limit);
        match resource {
            Some(r) => {
                let q = sqlx::query(sql::OF_RESOURCE).bind(r).bind(limit);
                rows(&self.pool, q, drill_from_row).await
            }
            None => {
                rows(
                    &self.pool,
                    sqlx::query(sql::ALL).bind(limit),
                    drill_from_row,
                )
                .await
            }
        }
    }

    async fn last_passed_drill(&self, resource: &str) -> Result<Option<DrillRecord>> {
        let q = sqlx::query(sql::LAST_PASSED).bind(resource);
        row(&self.pool, q, drill_from_row).await
    }

    async fn first_drill_at(&self, resource: &str) -> Result<Option<Timestamp>> {
        let v: Option<i64> = sqlx::query_scalar(sql::FIRST_AT)
            .bind(resource)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.map(Timestamp))
    }

    async fn open_drill_windows(&self, now: Timestamp) -> Result<Vec<DrillWindow>> {
        let q = sqlx::query(sql::WINDOWS_AT).bind(now.0);
        rows(&self.pool, q, window_from_row).await
    }

    async fn drill_windows(&self, limit: u32) -> Result<Vec<DrillWindow>> {
        let q = sqlx::query(sql::WINDOWS).bind(i64::from(limit));
        rows(&self.pool, q, window_from_row).await
    }

    async fn last_people_drills(&self) -> Result<Vec<(String, Timestamp)>> {
        let got: Vec<(String, i64)> = sqlx::query_as(sql::LAST_PEOPLE_DRILLS)
            .fetch_all(&self.pool)
            .await?;
        Ok(got.into_iter().map(|(u, t)| (u, Timestamp(t))).collect())
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::StartDrill(d) => {
            let q = sqlx::query(sql::START)
                .bind(d.id)
                .bind(d.resource.clone())
                .bind(d.trigger)
                .bind(d.slot.map(|t| t.0))
                .bind(d.started_at.0)
                .bind(d.started_by);
            write_one(conn, q, || {
                StoreError::Conflict(format!(
                    "a drill of {} already ran for this slot",
                    d.resource
                ))
            })
            .await?;
        }
        Change::FinishDrill(d) => {
            let id = d.id.clone();
            let q = sqlx::query(sql::FINISH)
                .bind(d.finished_at.map(|t| t.0))
                .bind(d.grant_id)
                .bind(d.verdict)
                .bind(d.failed_step)
                .bind(d.error)
                .bind(to_json(&d.steps)?)
                .bind(to_json(&d.timings)?)
                .bind(d.id);
            write_one(conn, q, || {
                StoreError::Conflict(format!("drill {id} already finished"))
            })
            .await?;
        }
        Change::OpenDrillWindow(w) => {
            let q = sqlx::query(sql::OPEN_WINDOW)
                .bind(w.id)
                .bind(w.opened_by)
                .bind(w.opened_at.0)
                .bind(w.until.0)
                .bind(to_json(&w.resources)?)
                .bind(w.reason);
            write(conn, q).await?;
        }
        Change::CloseDrillWindow { id, by, at } => {
            let q = sqlx::query(sql::CLOSE_WINDOW)
                .bind(at.0)
                .bind(by)
                .bind(id.clone());
            write_one(conn, q, || {
                StoreError::Conflict(format!("people-drill window {id} is not open"))
            })
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
