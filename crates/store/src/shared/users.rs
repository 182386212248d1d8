//! Users, their login sessions and their MFA state. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, flag, json, row, rows, to_json, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::users::sql;
use crate::{Change, LoginFailures, MfaRecord, Result, Session, StoreError, User, Users};
use async_trait::async_trait;
use sqlx::Row;

fn user_from_row(row: &DbRow) -> Result<User> {
    Ok(User {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        groups: json(row, "groups_json", "user groups")?,
        disabled: flag(row, "disabled")?,
        created_at: ts(row, "created_at")?,
    })
}

fn session_from_row(row: &DbRow) -> Result<Session> {
    Ok(Session {
        user: row.try_get("user_name")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
    })
}

fn mfa_from_row(row: &DbRow) -> Result<MfaRecord> {
    Ok(MfaRecord {
        totp_sealed: row.try_get("totp_sealed")?,
        totp_confirmed: flag(row, "totp_confirmed")?,
        state: json(row, "state_json", "mfa state")?,
        version: row.try_get("version")?,
    })
}

#[async_trait]
impl Users for Backend {
    async fn user(&self, name: &str) -> Result<Option<User>> {
        row(
            &self.pool,
            sqlx::query(sql::BY_NAME).bind(name),
            user_from_row,
        )
        .await
    }

    async fn users(&self) -> Result<Vec<User>> {
        rows(&self.pool, sqlx::query(sql::ALL), user_from_row).await
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>> {
        let q = sqlx::query(sql::SESSION).bind(&token_hash[..]);
        row(&self.pool, q, session_from_row).await
    }

    async fn mfa(&self, user: &str) -> Result<MfaRecord> {
        let q = sqlx::query(sql::MFA).bind(user);
        Ok(row(&self.pool, q, mfa_from_row).await?.unwrap_or_default())
    }

    async fn login_failures(&self, keys: &[String]) -> Result<Vec<LoginFailures>> {
        let mut out = Vec::new();
        for key in keys {
            let q = sqlx::query(sql::LOGIN_FAILURES).bind(key.as_str());
            if let Some(f) = row(&self.pool, q, login_failures_from_row).await? {
                out.push(f);
            }
        }
        Ok(out)
    }
}

fn login_failures_from_row(row: &DbRow) -> Result<LoginFailures> {
    let n: i64 = row.try_get("failures")?;
    Ok(LoginFailures {
        key: row.try_get("key")?,
        failures: u32::try_from(n.max(0)).unwrap_or(u32::MAX),
        last_at: ts(row, "last_at")?,
    })
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::AddUser(u) => {
            let q = sqlx::query(sql::ADD)
                .bind(u.name.clone())
                .bind(u.password_hash)
                .bind(to_json(&u.groups)?)
                .bind(i64::from(u.disabled))
                .bind(u.created_at.0);
            write_one(conn, q, || {
                StoreError::AlreadyExists(format!("user {}", u.name))
            })
            .await?;
        }
        Change::SetUserDisabled { name, disabled } => {
            let q = sqlx::query(sql::SET_DISABLED)
                .bind(i64::from(disabled))
                .bind(name.clone());
            write_one(conn, q, || StoreError::NotFound(format!("user {name}"))).await?;
        }
        Change::CreateSession {
            token_hash,
            session,
        } => {
            let q = sqlx::query(sql::CREATE_SESSION)
                .bind(token_hash.to_vec())
                .bind(session.user)
                .bind(session.created_at.0)
                .bind(session.expires_at.0);
            write(conn, q).await?;
        }
        Change::DeleteSession { token_hash } => {
            let q = sqlx::query(sql::DELETE_SESSION).bind(token_hash.to_vec());
            write(conn, q).await?;
        }
        Change::DeleteUserSessions { user } => {
            write(conn, sqlx::query(sql::DELETE_USER_SESSIONS).bind(user)).await?;
        }
        Change::PutTotp {
            user,
            sealed,
            confirmed,
        } => {
            let q = sqlx::query(sql::PUT_TOTP)
                .bind(user)
                .bind(sealed)
                .bind(i64::from(confirmed));
            write(conn, q).await?;
        }
        Change::PutMfaState {
            user,
            expected_version,
            state,
        } => {
            // Compare-and-swap: only if nobody wrote the state since it was read.
            let json = to_json(&state)?;
            let mut res = sqlx::query(sql::PUT_MFA_STATE)
                .bind(json.clone())
                .bind(user.clone())
                .bind(expected_version)
                .execute(&mut *conn)
                .await?;
            if res.rows_affected() == 0 && expected_version == 0 {
                res = sqlx::query(sql::INSERT_MFA_STATE)
                    .bind(user.clone())
                    .bind(json)
                    .execute(&mut *conn)
                    .await?;
            }
            if res.rows_affected() == 0 {
                return Err(StoreError::MfaConflict(user));
            }
        }
        Change::CountLoginFailure {
            keys,
            at,
            forget_before,
        } => {
            write(
                conn,
                sqlx::query(sql::PRUNE_LOGIN_FAILURES).bind(forget_before.0),
            )
            .await?;
            for key in keys {
                let q = sqlx::query(sql::COUNT_LOGIN_FAILURE)
                    .bind(key)
                    .bind(at.0)
                    .bind(forget_before.0);
                write(conn, q).await?;
            }
        }
        Change::ClearLoginFailures { keys } => {
            for key in keys {
                write(conn, sqlx::query(sql::CLEAR_LOGIN_FAILURES).bind(key)).await?;
            }
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
