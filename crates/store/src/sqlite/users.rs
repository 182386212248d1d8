//! Users, their login sessions and their MFA state. SQLite backend.

use super::{SqliteStore, fetch_all, fetch_one_by, to_json};
use crate::{Change, MfaRecord, Result, Session, StoreError, User, Users};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) fn user_from_row(row: &SqliteRow) -> Result<User> {
    let groups: String = row.try_get("groups_json")?;
    Ok(User {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        groups: serde_json::from_str(&groups)
            .map_err(|e| StoreError::Corrupt(format!("user groups: {e}")))?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut SqliteConnection, change: Change) -> Result<Option<Change>> {
    match change {
        Change::AddUser(u) => {
            let res = sqlx::query(
                "INSERT INTO users (name, password_hash, groups_json, disabled, created_at)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
            )
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(to_json(&u.groups)?)
            .bind(i64::from(u.disabled))
            .bind(u.created_at.0)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists(format!("user {}", u.name)));
            }
        }
        Change::SetUserDisabled { name, disabled } => {
            let res = sqlx::query("UPDATE users SET disabled = ? WHERE name = ?")
                .bind(i64::from(disabled))
                .bind(&name)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("user {name}")));
            }
        }
        Change::CreateSession {
            token_hash,
            session,
        } => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&token_hash[..])
            .bind(&session.user)
            .bind(session.created_at.0)
            .bind(session.expires_at.0)
            .execute(&mut *conn)
            .await?;
        }
        Change::DeleteSession { token_hash } => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(&token_hash[..])
                .execute(&mut *conn)
                .await?;
        }
        Change::DeleteUserSessions { user } => {
            sqlx::query("DELETE FROM sessions WHERE user_name = ?")
                .bind(&user)
                .execute(&mut *conn)
                .await?;
        }
        Change::PutTotp {
            user,
            sealed,
            confirmed,
        } => {
            sqlx::query(
                "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json) VALUES (?, ?, ?, '{}')
                 ON CONFLICT(user_name) DO UPDATE SET totp_sealed = excluded.totp_sealed,
                   totp_confirmed = excluded.totp_confirmed, version = mfa.version + 1",
            )
            .bind(&user)
            .bind(sealed)
            .bind(i64::from(confirmed))
            .execute(&mut *conn)
            .await?;
        }
        Change::PutMfaState {
            user,
            expected_version,
            state,
        } => {
            // Compare-and-swap: only if nobody wrote the state since it was read.
            let json = to_json(&state)?;
            let mut res = sqlx::query(
                "UPDATE mfa SET state_json = ?, version = version + 1 WHERE user_name = ? AND version = ?",
            )
            .bind(&json)
            .bind(&user)
            .bind(expected_version)
            .execute(&mut *conn)
            .await?;
            if res.rows_affected() == 0 && expected_version == 0 {
                res = sqlx::query(
                    "INSERT INTO mfa (user_name, totp_sealed, totp_confirmed, state_json, version)
                     VALUES (?, NULL, 0, ?, 1) ON CONFLICT(user_name) DO NOTHING",
                )
                .bind(&user)
                .bind(&json)
                .execute(&mut *conn)
                .await?;
            }
            if res.rows_affected() == 0 {
                return Err(StoreError::MfaConflict(user));
            }
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}

#[async_trait]
impl Users for SqliteStore {
    async fn user(&self, name: &str) -> Result<Option<User>> {
        fetch_one_by(
            &self.pool,
            "SELECT * FROM users WHERE name = ?",
            name,
            user_from_row,
        )
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        fetch_all(
            &self.pool,
            "SELECT * FROM users ORDER BY name",
            user_from_row,
        )
        .await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT user_name, created_at, expires_at FROM sessions WHERE token_hash = ?",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                user: r.try_get("user_name")?,
                created_at: Timestamp(r.try_get("created_at")?),
                expires_at: Timestamp(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn mfa(&self, user: &str) -> Result<MfaRecord> {
        let row = sqlx::query(
            "SELECT totp_sealed, totp_confirmed, state_json, version FROM mfa WHERE user_name = ?",
        )
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(MfaRecord::default());
        };
        let state: String = r.try_get("state_json")?;
        Ok(MfaRecord {
            totp_sealed: r.try_get("totp_sealed")?,
            totp_confirmed: r.try_get::<i64, _>("totp_confirmed")? != 0,
            state: serde_json::from_str(&state)
                .map_err(|e| StoreError::Corrupt(format!("mfa state: {e}")))?,
            version: r.try_get("version")?,
        })
    }
}
