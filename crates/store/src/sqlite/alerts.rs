//! The alert outbox. SQLite backend.

use super::{SqliteStore, to_json};
use crate::{AlertRow, Alerts, Change, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn alert_from_row(row: &SqliteRow) -> Result<AlertRow> {
    let doc: String = row.try_get("doc")?;
    Ok(AlertRow {
        id: row.try_get("id")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sink: row.try_get("sink")?,
        kind: row.try_get("kind")?,
        dedup_key: row.try_get("dedup_key")?,
        doc: serde_json::from_str(&doc)
            .map_err(|e| StoreError::Corrupt(format!("alert document: {e}")))?,
        state: row.try_get("state")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        delivered_at: row
            .try_get::<Option<i64>, _>("delivered_at")?
            .map(Timestamp),
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::EnqueueAlert(a) => {
            sqlx::query(
                "INSERT INTO alerts (created_at, sink, kind, dedup_key, doc, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(a.created_at.0)
            .bind(&a.sink)
            .bind(&a.kind)
            .bind(&a.dedup_key)
            .bind(to_json(&a.doc)?)
            .bind(a.created_at.0)
            .execute(&mut *conn)
            .await?;
        }
        Change::LeaseAlert {
            id,
            expected_next,
            until,
        } => {
            let res = sqlx::query(
                "UPDATE alerts SET next_attempt_at = ? WHERE id = ? AND state = 'pending' AND next_attempt_at = ?",
            )
            .bind(until.0)
            .bind(id)
            .bind(expected_next.0)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "alert {id} is being delivered elsewhere"
                )));
            }
        }
        Change::AlertAttempt {
            id,
            state,
            attempts,
            next_attempt_at,
            last_error,
            at,
        } => {
            sqlx::query(
                "UPDATE alerts SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
                   delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
            )
            .bind(state)
            .bind(i64::from(attempts))
            .bind(next_attempt_at.0)
            .bind(last_error)
            .bind(state)
            .bind(at.0)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        Change::RetryAlert { id, now } => {
            let res = sqlx::query(
                "UPDATE alerts SET state = 'pending', attempts = 0, next_attempt_at = ?, last_error = NULL WHERE id = ? AND state = 'failed'",
            )
            .bind(now.0)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("failed alert {id}")));
            }
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Alerts for SqliteStore {
    async fn due_alerts(&self, now: Timestamp, limit: u32) -> Result<Vec<AlertRow>> {
        sqlx::query("SELECT * FROM alerts WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    async fn alerts(&self, state: Option<&str>, limit: u32) -> Result<Vec<AlertRow>> {
        let rows = match state {
            Some(s) => {
                sqlx::query("SELECT * FROM alerts WHERE state = ? ORDER BY id DESC LIMIT ?")
                    .bind(s)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM alerts ORDER BY id DESC LIMIT ?")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(alert_from_row).collect()
    }

    async fn next_alert_at(&self) -> Result<Option<Timestamp>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM alerts WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.map(Timestamp))
    }
}
