//! Credentials issued at targets, and their revocation. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, attempts, json, opt_ts, row, rows, to_json, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::credentials::sql;
use crate::{Change, CredentialRecord, Credentials, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn credential_from_row(row: &DbRow) -> Result<CredentialRecord> {
    Ok(CredentialRecord {
        grant_id: row.try_get("grant_id")?,
        resource: row.try_get("resource")?,
        kind: row.try_get("kind")?,
        fingerprint: row.try_get("fingerprint")?,
        handle: json(row, "handle", "credential handle")?,
        issued_at: ts(row, "issued_at")?,
        state: row.try_get("state")?,
        attempts: attempts(row, "attempts")?,
        next_attempt_at: opt_ts(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        revoked_at: opt_ts(row, "revoked_at")?,
        pickup: row.try_get("pickup")?,
    })
}

#[async_trait]
impl Credentials for Backend {
    async fn credential(&self, grant_id: &str) -> Result<Option<CredentialRecord>> {
        let q = sqlx::query(sql::BY_GRANT).bind(grant_id);
        row(&self.pool, q, credential_from_row).await
    }

    async fn due_revocations(&self, now: Timestamp, limit: u32) -> Result<Vec<CredentialRecord>> {
        let q = sqlx::query(sql::DUE).bind(now.0).bind(i64::from(limit));
        rows(&self.pool, q, credential_from_row).await
    }

    async fn open_credentials(&self, resource: &str) -> Result<Vec<CredentialRecord>> {
        let q = sqlx::query(sql::OPEN_AT).bind(resource);
        rows(&self.pool, q, credential_from_row).await
    }

    async fn revoked_credentials(&self, kind: &str) -> Result<Vec<CredentialRecord>> {
        let q = sqlx::query(sql::REVOKED_OF_KIND).bind(kind);
        rows(&self.pool, q, credential_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::RecordCredential(c) => {
            let q = sqlx::query(sql::RECORD)
                .bind(c.grant_id)
                .bind(c.resource)
                .bind(c.kind)
                .bind(c.fingerprint)
                .bind(to_json(&c.handle)?)
                .bind(c.issued_at.0)
                .bind(c.pickup);
            write(conn, q).await?;
        }
        Change::StartRevocation { grant_id, at } => {
            let q = sqlx::query(sql::START_REVOCATION).bind(at.0).bind(grant_id);
            write(conn, q).await?;
        }
        Change::TakeCredentialPickup { grant_id } => {
            let q = sqlx::query(sql::TAKE_PICKUP).bind(grant_id.clone());
            write_one(conn, q, || {
                StoreError::Conflict(format!(
                    "the credential of {grant_id} was picked up already"
                ))
            })
            .await?;
        }
        Change::LeaseRevocation {
            grant_id,
            expected_next,
            until,
        } => {
            let q = sqlx::query(sql::LEASE_REVOCATION)
                .bind(until.0)
                .bind(grant_id.clone())
                .bind(expected_next.0);
            write_one(conn, q, || {
                StoreError::Conflict(format!("revocation of {grant_id} is being done elsewhere"))
            })
            .await?;
        }
        Change::RevocationLeaseHeld { grant_id, until } => {
            let n: i64 = sqlx::query_scalar(sql::REVOCATION_LEASE_HELD)
                .bind(grant_id.clone())
                .bind(until.0)
                .fetch_one(&mut *conn)
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "revocation of {grant_id}: this node's lease ended and another node took it over"
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
            let q = sqlx::query(sql::REVOCATION_ATTEMPT)
                .bind(if done { "revoked" } else { "revoking" })
                .bind(i64::from(attempts))
                .bind((!done).then_some(next_attempt_at.0))
                .bind(last_error)
                .bind(done.then_some(at.0))
                .bind(grant_id);
            write(conn, q).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
