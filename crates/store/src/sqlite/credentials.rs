//! Credentials issued at targets, and their revocation. SQLite backend.

use super::{SqliteStore, fetch_one_by, to_json};
use crate::{Change, CredentialRecord, Credentials, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn credential_from_row(row: &SqliteRow) -> Result<CredentialRecord> {
    let handle: String = row.try_get("handle")?;
    Ok(CredentialRecord {
        grant_id: row.try_get("grant_id")?,
        resource: row.try_get("resource")?,
        kind: row.try_get("kind")?,
        fingerprint: row.try_get("fingerprint")?,
        handle: serde_json::from_str(&handle)
            .map_err(|e| StoreError::Corrupt(format!("credential handle: {e}")))?,
        issued_at: Timestamp(row.try_get("issued_at")?),
        state: row.try_get("state")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: row
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(Timestamp),
        last_error: row.try_get("last_error")?,
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
        pickup: row.try_get("pickup")?,
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::RecordCredential(c) => {
            sqlx::query(
                "INSERT INTO credentials (grant_id, resource, kind, fingerprint, handle, issued_at, state, pickup) VALUES (?, ?, ?, ?, ?, ?, 'issued', ?)",
            )
            .bind(&c.grant_id)
            .bind(&c.resource)
            .bind(&c.kind)
            .bind(&c.fingerprint)
            .bind(to_json(&c.handle)?)
            .bind(c.issued_at.0)
            .bind(&c.pickup)
            .execute(&mut *conn)
            .await?;
        }
        Change::StartRevocation { grant_id, at } => {
            sqlx::query("UPDATE credentials SET state = 'revoking', next_attempt_at = ?, pickup = NULL WHERE grant_id = ? AND state = 'issued'")
                .bind(at.0)
                .bind(&grant_id)
                .execute(&mut *conn)
                .await?;
        }
        Change::TakeCredentialPickup { grant_id } => {
            let r = sqlx::query(
                "UPDATE credentials SET pickup = NULL WHERE grant_id = ? AND pickup IS NOT NULL",
            )
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "the credential of {grant_id} was picked up already"
                )));
            }
        }
        Change::RevocationAttempt {
            grant_id,
            done,
            attempts,
            next_attempt_at,
            last_error,
            at,
        } => {
            sqlx::query(
                "UPDATE credentials SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, revoked_at = ?
                 WHERE grant_id = ? AND state = 'revoking'",
            )
            .bind(if done { "revoked" } else { "revoking" })
            .bind(i64::from(attempts))
            .bind((!done).then_some(next_attempt_at.0))
            .bind(last_error)
            .bind(done.then_some(at.0))
            .bind(&grant_id)
            .execute(&mut *conn)
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Credentials for SqliteStore {
    async fn credential(&self, grant_id: &str) -> Result<Option<CredentialRecord>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM credentials WHERE grant_id = ?",
            grant_id,
            credential_from_row,
        )
        .await
    }

    async fn due_revocations(&self, now: Timestamp, limit: u32) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE state = 'revoking' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?")
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }

    async fn open_credentials(&self, resource: &str) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE resource = ? AND state <> 'revoked'")
            .bind(resource)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }

    async fn revoked_credentials(&self, kind: &str) -> Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT * FROM credentials WHERE kind = ? AND state IN ('revoking', 'revoked')")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from_row)
            .collect()
    }
}
