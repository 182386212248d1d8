//! Post-incident reviews and their entries. SQLite backend.

use super::{SqliteStore, fetch_one_by, to_json};
use crate::{Change, Result, Review, ReviewEntry, Reviews, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn review_from_row(row: &SqliteRow) -> Result<Review> {
    let by: String = row.try_get("by_json")?;
    Ok(Review {
        grant_id: row.try_get("grant_id")?,
        requester: row.try_get("requester")?,
        opened_at: Timestamp(row.try_get("opened_at")?),
        due_at: Timestamp(row.try_get("due_at")?),
        by: serde_json::from_str(&by)
            .map_err(|e| StoreError::Corrupt(format!("review groups: {e}")))?,
        state: row.try_get("state")?,
        escalated_at: row
            .try_get::<Option<i64>, _>("escalated_at")?
            .map(Timestamp),
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::OpenReview(r) => {
            sqlx::query(
                "INSERT INTO reviews (grant_id, opened_at, due_at, by_json, requester, state) VALUES (?, ?, ?, ?, ?, 'open')",
            )
            .bind(&r.grant_id)
            .bind(r.opened_at.0)
            .bind(r.due_at.0)
            .bind(to_json(&r.by)?)
            .bind(&r.requester)
            .execute(&mut *conn)
            .await?;
        }
        Change::AddReviewEntry(e) => {
            sqlx::query(
                "INSERT INTO review_entries (grant_id, reviewer, verdict, notes, at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&e.grant_id)
            .bind(&e.reviewer)
            .bind(&e.verdict)
            .bind(&e.notes)
            .bind(e.at.0)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE reviews SET state = 'done' WHERE grant_id = ?")
                .bind(&e.grant_id)
                .execute(&mut *conn)
                .await?;
        }
        Change::EscalateReview { grant_id, at } => {
            let res = sqlx::query(
                "UPDATE reviews SET escalated_at = ? WHERE grant_id = ? AND escalated_at IS NULL AND state = 'open'",
            )
            .bind(at.0)
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "review of {grant_id} already escalated"
                )));
            }
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Reviews for SqliteStore {
    async fn review(&self, grant_id: &str) -> Result<Option<Review>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM reviews WHERE grant_id = ?",
            grant_id,
            review_from_row,
        )
        .await
    }

    async fn reviews(&self, open_only: bool, limit: u32) -> Result<Vec<Review>> {
        let sql = if open_only {
            "SELECT * FROM reviews WHERE state = 'open' ORDER BY due_at LIMIT ?"
        } else {
            "SELECT * FROM reviews ORDER BY opened_at DESC LIMIT ?"
        };
        sqlx::query(sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(review_from_row)
            .collect()
    }

    async fn review_entries(&self, grant_id: &str) -> Result<Vec<ReviewEntry>> {
        let rows = sqlx::query("SELECT * FROM review_entries WHERE grant_id = ? ORDER BY id")
            .bind(grant_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewEntry {
                    grant_id: r.try_get("grant_id")?,
                    reviewer: r.try_get("reviewer")?,
                    verdict: r.try_get("verdict")?,
                    notes: r.try_get("notes")?,
                    at: Timestamp(r.try_get("at")?),
                })
            })
            .collect()
    }

    async fn overdue_reviews(&self, now: Timestamp) -> Result<Vec<Review>> {
        sqlx::query("SELECT * FROM reviews WHERE state = 'open' AND escalated_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT 100")
            .bind(now.0)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(review_from_row)
            .collect()
    }
}
