//! What every aggregate module shares: the unit-of-work job, running a query and mapping its
//! rows, "exactly one row or this error" writes, and column readers.

pub(super) use super::db::Backend;
use super::db::{Conn, Db, DbRow, Pool};
use crate::{Change, Result, StoreError};
use breakglass_core::audit::{Head, NewEvent};
use breakglass_core::time::Timestamp;
use sqlx::Row;

/// A unit of work for the writer task.
pub(super) struct Job {
    pub changes: Vec<Change>,
    pub events: Vec<NewEvent>,
    pub reply: tokio::sync::oneshot::Sender<Result<Option<Head>>>,
}

/// A query with its binds.
pub(super) type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;

/// Maps one row to a domain value.
pub(super) type FromRow<T> = fn(&DbRow) -> Result<T>;

/// Every row of `query`, mapped by `f`.
pub(super) async fn rows<T>(pool: &Pool, query: Query<'_>, f: FromRow<T>) -> Result<Vec<T>> {
    query.fetch_all(pool).await?.iter().map(f).collect()
}

/// The row of `query`, if any, mapped by `f`.
pub(super) async fn row<T>(pool: &Pool, query: Query<'_>, f: FromRow<T>) -> Result<Option<T>> {
    query
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(f)
        .transpose()
}

/// The timestamp a `SELECT MIN(…)` query answers (None when no row qualifies).
pub(super) async fn earliest(pool: &Pool, sql: &'static str) -> Result<Option<Timestamp>> {
    let v: Option<i64> = sqlx::query_scalar(sql).fetch_one(pool).await?;
    Ok(v.map(Timestamp))
}

/// Runs a write that must touch a row (a compare-and-swap, a guarded update); `none` is the
/// error when it touched none (nothing else of the unit is applied then).
pub(super) async fn write_one(
    conn: &mut Conn,
    query: Query<'_>,
    none: impl FnOnce() -> StoreError,
) -> Result<()> {
    if query.execute(conn).await?.rows_affected() == 0 {
        return Err(none());
    }
    Ok(())
}

/// Runs a write that may touch no row.
pub(super) async fn write(conn: &mut Conn, query: Query<'_>) -> Result<()> {
    query.execute(conn).await?;
    Ok(())
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A JSON text column; `what` names it in the corruption error.
pub(super) fn json<T: serde::de::DeserializeOwned>(
    row: &DbRow,
    col: &str,
    what: &str,
) -> Result<T> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn ts(row: &DbRow, col: &str) -> Result<Timestamp> {
    Ok(Timestamp(row.try_get(col)?))
}

pub(super) fn opt_ts(row: &DbRow, col: &str) -> Result<Option<Timestamp>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

/// An INTEGER 0/1 column.
pub(super) fn flag(row: &DbRow, col: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

/// A non-negative count; saturates at `u32::MAX`.
pub(super) fn attempts(row: &DbRow, col: &str) -> Result<u32> {
    Ok(u32::try_from(row.try_get::<i64, _>(col)?).unwrap_or(u32::MAX))
}

/// A count; a negative one (never written) reads as 0.
pub(super) fn count(row: &DbRow, col: &str) -> Result<u64> {
    Ok(u64::try_from(row.try_get::<i64, _>(col)?).unwrap_or(0))
}
