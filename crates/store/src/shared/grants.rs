//! Grants: the requests for access and their state. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, count, earliest, json, row, rows, to_json, write, write_one};
use super::db::{Conn, DbRow};
use crate::grants::sql;
use crate::{Change, GRANT_STATS_CAP, GrantFilter, Grants, Result, StatsQuery, StoreError};
use async_trait::async_trait;
use breakglass_core::grant::AnyGrant;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn grant_from_row(row: &DbRow) -> Result<AnyGrant> {
    json(row, "doc", "grant document")
}

/// A revision as stored (saturating; revisions never get near it).
fn rev_i64(rev: u64) -> i64 {
    i64::try_from(rev).unwrap_or(i64::MAX)
}

#[async_trait]
impl Grants for Backend {
    async fn grant(&self, id: &str) -> Result<Option<AnyGrant>> {
        row(&self.pool, sqlx::query(sql::BY_ID).bind(id), grant_from_row).await
    }

    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<AnyGrant>> {
        // Built at run time (one placeholder per state), so it stays here.
        // Numbered placeholders, in bind order (both dialects take `$N`).
        let mut sql = String::from("SELECT doc FROM grants WHERE 1=1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.user.is_some() {
            sql.push_str(&format!(" AND user_name = {}", next()));
        }
        if !filter.states.is_empty() {
            let marks: Vec<String> = filter.states.iter().map(|_| next()).collect();
            sql.push_str(&format!(" AND state IN ({})", marks.join(",")));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT {}", next()));
        let mut q = sqlx::query(&sql);
        if let Some(u) = &filter.user {
            q = q.bind(u);
        }
        for s in &filter.states {
            q = q.bind(s);
        }
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        rows(&self.pool, q.bind(i64::from(limit)), grant_from_row).await
    }

    async fn grant_stats(&self, q: &StatsQuery<'_>) -> Result<(u64, u64, bool)> {
        let cap = GRANT_STATS_CAP as i64;
        let row = sqlx::query(sql::STATS)
            .bind(q.user)
            .bind(q.user_since.0)
            .bind(cap)
            .bind(q.resource)
            .bind(q.resource_since.0)
            .bind(cap)
            .bind(q.user)
            .bind(q.resource)
            .fetch_one(&self.pool)
            .await?;
        Ok((
            count(&row, "u")?,
            count(&row, "r")?,
            row.try_get::<i64, _>("e")? != 0,
        ))
    }

    async fn grants_since(&self, since: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        let q = sqlx::query(sql::SINCE).bind(since.0).bind(i64::from(limit));
        rows(&self.pool, q, grant_from_row).await
    }

    async fn count_grants(&self, state: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql::COUNT_IN_STATE)
            .bind(state)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn due_grants(&self, now: Timestamp, limit: u32) -> Result<Vec<AnyGrant>> {
        let q = sqlx::query(sql::DUE).bind(now.0).bind(i64::from(limit));
        rows(&self.pool, q, grant_from_row).await
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        earliest(&self.pool, sql::NEXT_DEADLINE).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::InsertGrant(g) => {
            let info = g.info();
            let q = sqlx::query(sql::INSERT)
                .bind(&info.id)
                .bind(&info.user)
                .bind(&info.resource)
                .bind(g.state_name())
                .bind(g.deadline().map(|t| t.0))
                .bind(info.requested_at.0)
                .bind(to_json(&g)?)
                .bind(info.practice());
            write(conn, q).await?;
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
            let q = sqlx::query(sql::UPDATE)
                .bind(next.state_name())
                .bind(next.deadline().map(|t| t.0))
                .bind(to_json(&next)?)
                .bind(rev_i64(read_rev + 1))
                .bind(next.id())
                .bind(expected_state)
                .bind(rev_i64(read_rev));
            write_one(conn, q, || {
                StoreError::Conflict(format!(
                    "grant {} changed while this request was in flight (it is no longer the {expected_state} grant this request read)",
                    next.id()
                ))
            })
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
