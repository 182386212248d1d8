//! Post-incident reviews and their entries. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, json, opt_ts, row, rows, to_json, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::reviews::sql;
use crate::{Change, Result, Review, ReviewEntry, Reviews, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn review_from_row(row: &DbRow) -> Result<Review> {
    Ok(Review {
        grant_id: row.try_get("grant_id")?,
        requester: row.try_get("requester")?,
        opened_at: ts(row, "opened_at")?,
        due_at: ts(row, "due_at")?,
        by: json(row, "by_json", "review groups")?,
        state: row.try_get("state")?,
        escalated_at: opt_ts(row, "escalated_at")?,
    })
}

fn entry_from_row(row: &DbRow) -> Result<ReviewEntry> {
    Ok(ReviewEntry {
        grant_id: row.try_get("grant_id")?,
        reviewer: row.try_get("reviewer")?,
        verdict: row.try_get("verdict")?,
        notes: row.try_get("notes")?,
        at: ts(row, "at")?,
    })
}

#[async_trait]
impl Reviews for Backend {
    async fn review(&self, grant_id: &str) -> Result<Option<Review>> {
        let q = sqlx::query(sql::BY_GRANT).bind(grant_id);
        row(&self.pool, q, review_from_row).await
    }

    async fn reviews(&self, open_only: bool, limit: u32) -> Result<Vec<Review>> {
        let sql = if open_only { sql::OPEN_ONES } else { sql::ALL };
        let q = sqlx::query(sql).bind(i64::from(limit));
        rows(&self.pool, q, review_from_row).await
    }

    async fn review_entries(&self, grant_id: &str) -> Result<Vec<ReviewEntry>> {
        let q = sqlx::query(sql::ENTRIES).bind(grant_id);
        rows(&self.pool, q, entry_from_row).await
    }

    async fn overdue_reviews(&self, now: Timestamp) -> Result<Vec<Review>> {
        let q = sqlx::query(sql::OVERDUE).bind(now.0);
        rows(&self.pool, q, review_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::OpenReview(r) => {
            let q = sqlx::query(sql::OPEN)
                .bind(r.grant_id)
                .bind(r.opened_at.0)
                .bind(r.due_at.0)
                .bind(to_json(&r.by)?)
                .bind(r.requester);
            write(conn, q).await?;
        }
        Change::AddReviewEntry(e) => {
            let q = sqlx::query(sql::ADD_ENTRY)
                .bind(e.grant_id.clone())
                .bind(e.reviewer)
                .bind(e.verdict)
                .bind(e.notes)
                .bind(e.at.0);
            write(conn, q).await?;
            write(conn, sqlx::query(sql::MARK_DONE).bind(e.grant_id)).await?;
        }
        Change::EscalateReview { grant_id, at } => {
            let q = sqlx::query(sql::ESCALATE).bind(at.0).bind(grant_id.clone());
            write_one(conn, q, || {
                StoreError::Conflict(format!("review of {grant_id} already escalated"))
            })
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
