//! The alert outbox. Shared by both backends (compiled into each with its driver's types).

use super::common::{
    Backend, attempts, earliest, json, opt_ts, rows, to_json, ts, write, write_one,
};
use super::db::{Conn, DbRow};
use crate::alerts::sql;
use crate::{AlertRow, Alerts, Change, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn alert_from_row(row: &DbRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        created_at: ts(row, "created_at")?,
        sink: row.try_get("sink")?,
        kind: row.try_get("kind")?,
        dedup_key: row.try_get("dedup_key")?,
        doc: json(row, "doc", "alert document")?,
        state: row.try_get("state")?,
        attempts: attempts(row, "attempts")?,
        next_attempt_at: ts(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        delivered_at: opt_ts(row, "delivered_at")?,
    })
}

#[async_trait]
impl Alerts for Backend {
    async fn due_alerts(&self, now: Timestamp, limit: u32) -> Result<Vec<AlertRow>> {
        let q = sqlx::query(sql::DUE).bind(now.0).bind(i64::from(limit));
        rows(&self.pool, q, alert_from_row).await
    }

    async fn alerts(&self, state: Option<&str>, limit: u32) -> Result<Vec<AlertRow>> {
        let q = match state {
            Some(s) => sqlx::query(sql::IN_STATE).bind(s),
            None => sqlx::query(sql::ALL),
        };
        rows(&self.pool, q.bind(i64::from(limit)), alert_from_row).await
    }

    async fn next_alert_at(&self) -> Result<Option<Timestamp>> {
        earliest(&self.pool, sql::NEXT_AT).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::EnqueueAlert(a) => {
            let q = sqlx::query(sql::ENQUEUE)
                .bind(a.created_at.0)
                .bind(a.sink)
                .bind(a.kind)
                .bind(a.dedup_key)
                .bind(to_json(&a.doc)?)
                .bind(a.created_at.0);
            write(conn, q).await?;
        }
        Change::LeaseAlert {
            id,
            expected_next,
            until,
        } => {
            let q = sqlx::query(sql::LEASE)
                .bind(until.0)
                .bind(id)
                .bind(expected_next.0);
            write_one(conn, q, || {
                StoreError::Conflict(format!("alert {id} is being delivered elsewhere"))
            })
            .await?;
        }
        Change::AlertLeaseHeld { id, until } => {
            let n: i64 = sqlx::query_scalar(sql::LEASE_HELD)
                .bind(id)
                .bind(until.0)
                .fetch_one(&mut *conn)
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "alert {id}: this node's delivery lease ended and another node took it over"
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
            let q = sqlx::query(sql::ATTEMPT)
                .bind(state)
                .bind(i64::from(attempts))
                .bind(next_attempt_at.0)
                .bind(last_error)
                .bind(state)
                .bind(at.0)
                .bind(id);
            write(conn, q).await?;
        }
        Change::RetryAlert { id, now } => {
            let q = sqlx::query(sql::RETRY).bind(now.0).bind(id);
            write_one(conn, q, || {
                StoreError::NotFound(format!("failed alert {id}"))
            })
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
