//! Delivery cursors of the audit streams and witnesses. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, attempts, count, opt_ts, row, rows, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::streams::sql;
use crate::{Change, Cursor, Cursors, Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;

fn cursor_from_row(row: &DbRow) -> Result<Cursor> {
    Ok(Cursor {
        name: row.try_get("name")?,
        position: count(row, "position")?,
        failures: attempts(row, "failures")?,
        last_error: row.try_get("last_error")?,
        last_attempt_at: opt_ts(row, "last_attempt_at")?,
        delivered_at: opt_ts(row, "delivered_at")?,
        created_at: ts(row, "created_at")?,
    })
}

fn pos(p: u64) -> Result<i64> {
    i64::try_from(p).map_err(|_| StoreError::Corrupt(format!("cursor position {p} overflows")))
}

#[async_trait]
impl Cursors for Backend {
    async fn cursors(&self) -> Result<Vec<Cursor>> {
        rows(&self.pool, sqlx::query(sql::ALL), cursor_from_row).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<Cursor>> {
        row(
            &self.pool,
            sqlx::query(sql::BY_NAME).bind(name),
            cursor_from_row,
        )
        .await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::OpenCursor { name, position, at } => {
            let q = sqlx::query(sql::OPEN)
                .bind(name)
                .bind(pos(position)?)
                .bind(at.0);
            write(conn, q).await?;
        }
        Change::AdvanceCursor { name, from, to, at } => {
            let q = sqlx::query(sql::ADVANCE)
                .bind(pos(to)?)
                .bind(at.0)
                .bind(name.clone())
                .bind(pos(from)?);
            write_one(conn, q, || {
                StoreError::Conflict(format!("cursor {name} is no longer at {from}"))
            })
            .await?;
        }
        Change::CursorFailed { name, error, at } => {
            let q = sqlx::query(sql::FAILED)
                .bind(error)
                .bind(at.0)
                .bind(name.clone());
            write_one(conn, q, || StoreError::NotFound(format!("cursor {name}"))).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
