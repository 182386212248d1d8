//! Passkeys, WebAuthn ceremonies and recovery codes. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, opt_ts, row, rows, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::passkeys::{CEREMONIES_PER_USER, sql};
use crate::{Ceremony, Change, PasskeyRecord, Passkeys, RecoveryCode, Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;

fn passkey_from_row(row: &DbRow) -> Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        cred_id: row.try_get("cred_id")?,
        name: row.try_get("name")?,
        passkey_json: row.try_get("passkey_json")?,
        created_at: ts(row, "created_at")?,
        last_used_at: opt_ts(row, "last_used_at")?,
    })
}

fn ceremony_from_row(row: &DbRow) -> Result<Ceremony> {
    Ok(Ceremony {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        kind: row.try_get("kind")?,
        purpose: row.try_get("purpose")?,
        subject: row.try_get("subject")?,
        session_hash: row.try_get("session_hash")?,
        state_json: row.try_get("state_json")?,
        expires_at: ts(row, "expires_at")?,
        created_at: ts(row, "created_at")?,
    })
}

fn code_from_row(row: &DbRow) -> Result<RecoveryCode> {
    Ok(RecoveryCode {
        hash: row.try_get("hash")?,
        used_at: opt_ts(row, "used_at")?,
    })
}

#[async_trait]
impl Passkeys for Backend {
    async fn passkeys(&self, user: &str) -> Result<Vec<PasskeyRecord>> {
        let q = sqlx::query(sql::BY_USER).bind(user);
        rows(&self.pool, q, passkey_from_row).await
    }

    async fn ceremony(&self, id: &str) -> Result<Option<Ceremony>> {
        let q = sqlx::query(sql::CEREMONY).bind(id);
        row(&self.pool, q, ceremony_from_row).await
    }

    async fn recovery_codes(&self, user: &str) -> Result<Vec<RecoveryCode>> {
        let q = sqlx::query(sql::RECOVERY).bind(user);
        rows(&self.pool, q, code_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::AddPasskey(p) => {
            let q = sqlx::query(sql::ADD)
                .bind(p.id)
                .bind(p.user)
                .bind(p.cred_id)
                .bind(p.name)
                .bind(p.passkey_json)
                .bind(p.created_at.0);
            q.execute(&mut *conn).await.map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    StoreError::AlreadyExists("a passkey with this credential id".into())
                }
                e => StoreError::Db(e),
            })?;
        }
        Change::UpdatePasskey {
            id,
            passkey_json,
            last_used_at,
        } => {
            let q = sqlx::query(sql::UPDATE)
                .bind(passkey_json)
                .bind(last_used_at.0)
                .bind(id.clone());
            write_one(conn, q, || StoreError::NotFound(format!("passkey {id}"))).await?;
        }
        Change::RemovePasskey { user, id } => {
            let q = sqlx::query(sql::REMOVE).bind(id.clone()).bind(user);
            write_one(conn, q, || StoreError::NotFound(format!("passkey {id}"))).await?;
        }
        Change::StartCeremony(c) => {
            write(
                conn,
                sqlx::query(sql::PURGE_CEREMONIES).bind(c.created_at.0),
            )
            .await?;
            let cap = sqlx::query(sql::CAP_CEREMONIES)
                .bind(c.user.clone())
                .bind(CEREMONIES_PER_USER);
            write(conn, cap).await?;
            let q = sqlx::query(sql::START_CEREMONY)
                .bind(c.id)
                .bind(c.user)
                .bind(c.kind)
                .bind(c.purpose)
                .bind(c.subject)
                .bind(c.session_hash)
                .bind(c.state_json)
                .bind(c.expires_at.0)
                .bind(c.created_at.0);
            write(conn, q).await?;
        }
        Change::TakeCeremony { id } => {
            let q = sqlx::query(sql::TAKE_CEREMONY).bind(id);
            write_one(conn, q, || {
                StoreError::Conflict("this passkey ceremony was already used".into())
            })
            .await?;
        }
        Change::ReplaceRecoveryCodes { user, hashes, at } => {
            write(conn, sqlx::query(sql::CLEAR_RECOVERY).bind(user.clone())).await?;
            for h in hashes {
                let q = sqlx::query(sql::ADD_RECOVERY)
                    .bind(user.clone())
                    .bind(h.to_vec())
                    .bind(at.0);
                write(conn, q).await?;
            }
        }
        Change::UseRecoveryCode { user, hash, at } => {
            let q = sqlx::query(sql::USE_RECOVERY)
                .bind(at.0)
                .bind(user)
                .bind(hash.to_vec());
            write_one(conn, q, || {
                StoreError::Conflict("this recovery code was already used".into())
            })
            .await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
