//! Sealed secrets. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, flag, row, rows, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::secrets::sql;
use crate::{Change, Result, SecretRecord, Secrets, StoreError};
use async_trait::async_trait;
use sqlx::Row;

fn secret_from_row(row: &DbRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        resource: row.try_get("resource")?,
        sealed: row.try_get("sealed")?,
        version: row.try_get("version")?,
        must_rotate: flag(row, "must_rotate")?,
        updated_at: ts(row, "updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

#[async_trait]
impl Secrets for Backend {
    async fn secret(&self, resource: &str) -> Result<Option<SecretRecord>> {
        let q = sqlx::query(sql::BY_RESOURCE).bind(resource);
        row(&self.pool, q, secret_from_row).await
    }

    async fn secrets(&self) -> Result<Vec<SecretRecord>> {
        rows(&self.pool, sqlx::query(sql::ALL), secret_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::PutSecret {
            resource,
            sealed,
            version,
            by,
            at,
        } => {
            let q = sqlx::query(sql::PUT)
                .bind(resource.clone())
                .bind(sealed)
                .bind(version)
                .bind(at.0)
                .bind(by);
            write_one(conn, q, || {
                StoreError::Conflict(format!("secret {resource} changed meanwhile"))
            })
            .await?;
        }
        Change::FlagSecretRotation { resource } => {
            write(conn, sqlx::query(sql::FLAG_ROTATION).bind(resource)).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
