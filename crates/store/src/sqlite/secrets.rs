//! Sealed secrets. SQLite backend.

use super::{SqliteStore, fetch_all, fetch_one_by};
use crate::{Change, Result, SecretRecord, Secrets, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn secret_from_row(row: &SqliteRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        resource: row.try_get("resource")?,
        sealed: row.try_get("sealed")?,
        version: row.try_get("version")?,
        must_rotate: row.try_get::<i64, _>("must_rotate")? != 0,
        updated_at: Timestamp(row.try_get("updated_at")?),
        updated_by: row.try_get("updated_by")?,
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::PutSecret {
            resource,
            sealed,
            version,
            by,
            at,
        } => {
            // Optimistic: version must follow the stored one (1 for a new secret).
            let res = sqlx::query(
                "INSERT INTO secrets (resource, sealed, version, must_rotate, updated_at, updated_by) VALUES (?, ?, ?, 0, ?, ?)
                 ON CONFLICT(resource) DO UPDATE SET sealed = excluded.sealed, version = excluded.version,
                   must_rotate = 0, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 WHERE secrets.version = excluded.version - 1",
            )
            .bind(&resource)
            .bind(sealed)
            .bind(version)
            .bind(at.0)
            .bind(&by)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "secret {resource} changed meanwhile"
                )));
            }
        }
        Change::FlagSecretRotation { resource } => {
            sqlx::query("UPDATE secrets SET must_rotate = 1 WHERE resource = ?")
                .bind(&resource)
                .execute(&mut *conn)
                .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Secrets for SqliteStore {
    async fn secret(&self, resource: &str) -> Result<Option<SecretRecord>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM secrets WHERE resource = ?",
            resource,
            secret_from_row,
        )
        .await
    }

    async fn secrets(&self) -> Result<Vec<SecretRecord>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM secrets ORDER BY resource",
            secret_from_row,
        )
        .await
    }
}
