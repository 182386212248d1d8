//! Leases of singleton jobs. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, row, ts, write};
use super::db::{Conn, DbRow};
use crate::leases::sql;
use crate::{Change, Lease, Leases, Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;

fn lease_from_row(row: &DbRow) -> Result<Lease> {
    Ok(Lease {
        name: row.try_get("name")?,
        holder: row.try_get("holder")?,
        term: row.try_get("term")?,
        until: ts(row, "until")?,
    })
}

#[async_trait]
impl Leases for Backend {
    async fn lease(&self, name: &str) -> Result<Option<Lease>> {
        row(
            &self.pool,
            sqlx::query(sql::BY_NAME).bind(name),
            lease_from_row,
        )
        .await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::ClaimLease {
            name,
            holder,
            now,
            until,
        } => {
            write(conn, sqlx::query(sql::ENSURE).bind(name.clone())).await?;
            let res = sqlx::query(sql::CLAIM)
                .bind(name.clone())
                .bind(holder)
                .bind(now.0)
                .bind(until.0)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "lease {name} is held by another node"
                )));
            }
        }
        Change::HoldsLease {
            name,
            holder,
            term,
            now,
        } => {
            let n: i64 = sqlx::query_scalar(sql::HOLDS)
                .bind(name.clone())
                .bind(holder)
                .bind(term)
                .bind(now.0)
                .fetch_one(&mut *conn)
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "this node no longer holds lease {name} (term {term})"
                )));
            }
        }
        Change::TakeLease {
            name,
            holder,
            previous,
            until,
        } => {
            let res = sqlx::query(sql::TAKE)
                .bind(name.clone())
                .bind(holder)
                .bind(previous)
                .bind(until.0)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "lease {name} changed hands meanwhile"
                )));
            }
        }
        Change::ReleaseLease { name, holder } => {
            write(conn, sqlx::query(sql::RELEASE).bind(name).bind(holder)).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
