//! Grants: the requests for access and their state. SQLite backend.

use super::{SqliteStore, fetch_one_by, to_json};
use crate::{Change, GrantFilter, Grants, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::grant::AnyGrant;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn grant_from_row(row: &SqliteRow) -> Result<AnyGrant> {
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("grant document: {e}")))
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::InsertGrant(g) => {
            let info = g.info();
            sqlx::query(
                "INSERT INTO grants (id, user_name, resource, state, deadline, created_at, doc)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&info.id)
            .bind(&info.user)
            .bind(&info.resource)
            .bind(g.state_name())
            .bind(g.deadline().map(|t| t.0))
            .bind(info.requested_at.0)
            .bind(to_json(&g)?)
            .execute(&mut *conn)
            .await?;
        }
        Change::UpdateGrant {
            expected_state,
            grant,
        } => {
            // Compare-and-swap on the revision the caller read: a change computed from a grant
            // that someone else changed since (a concurrent approval, an expiry) is refused.
            let read_rev = grant.info().rev;
            let mut next = grant;
            next.info_mut().rev = read_rev + 1;
            let res = sqlx::query(
                "UPDATE grants SET state = ?, deadline = ?, doc = ?, rev = ? WHERE id = ? AND state = ? AND rev = ?",
            )
            .bind(next.state_name())
            .bind(next.deadline().map(|t| t.0))
            .bind(to_json(&next)?)
            .bind(i64::try_from(read_rev + 1).unwrap_or(i64::MAX))
            .bind(next.id())
            .bind(expected_state)
            .bind(i64::try_from(read_rev).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "grant {} changed while this request was in flight (it is no longer the {expected_state} grant this request read)",
                    next.id()
                )));
            }
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Grants for SqliteStore {
    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>> {
        fetch_one_by(
            &self.pool,
            "SELECT doc FROM grants WHERE id = ?",
            id,
            grant_from_row,
        )
        .await
    }

    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>> {
        let mut sql = String::from("SELECT doc FROM grants WHERE 1=1");
        if filter.user.is_some() {
            sql.push_str(" AND user_name = ?");
        }
        if !filter.states.is_empty() {
            sql.push_str(" AND state IN (");
            sql.push_str(&vec!["?"; filter.states.len()].join(","));
            sql.push(')');
        }
        sql.push_str(" ORDER BY created_at DESC, id LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(u) = &filter.user {
            q = q.bind(u);
        }
        for s in &filter.states {
            q = q.bind(s);
        }
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        q = q.bind(i64::from(limit));
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    async fn grant_stats(
        &self,
        user: &str,
        resource: &str,
        user_since: Timestamp,
        resource_since: Timestamp,
    ) -> Result<(u64, u64, bool)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE user_name = ? AND created_at >= ? LIMIT ?)) AS u,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM grants WHERE resource = ? AND created_at >= ? LIMIT ?)) AS r,
                    EXISTS(SELECT 1 FROM grants WHERE user_name = ? AND resource = ?) AS e",
        )
        .bind(user)
        .bind(user_since.0)
        .bind(crate::GRANT_STATS_CAP as i64)
        .bind(resource)
        .bind(resource_since.0)
        .bind(crate::GRANT_STATS_CAP as i64)
        .bind(user)
        .bind(resource)
        .fetch_one(&self.pool)
        .await?;
        let n =
            |k: &str| -> Result<u64> { Ok(u64::try_from(row.try_get::<i64, _>(k)?).unwrap_or(0)) };
        Ok((n("u")?, n("r")?, row.try_get::<i64, _>("e")? != 0))
    }

    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        sqlx::query("SELECT doc FROM grants WHERE created_at >= ? ORDER BY created_at LIMIT ?")
            .bind(since.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    async fn count_grants(&self, state: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM grants WHERE state = ?")
            .bind(state)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        sqlx::query(
            "SELECT doc FROM grants WHERE deadline IS NOT NULL AND deadline <= ? ORDER BY deadline LIMIT ?",
        )
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(deadline) FROM grants WHERE deadline IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.map(Timestamp))
    }
}
