//! Offline glass cases. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, json, opt_ts, row, rows, to_json, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::glass_cases::sql;
use crate::{Change, GlassCase, GlassCases, GlassRole, GlassSerial, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn case_from_row(row: &DbRow) -> Result<GlassCase> {
    let seq: Option<i64> = row.try_get("chain_seq")?;
    let hash: Option<String> = row.try_get("chain_hash")?;
    let threshold: i64 = row.try_get("threshold")?;
    Ok(GlassCase {
        id: row.try_get("id")?,
        sealed_by: row.try_get("sealed_by")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
        threshold: u32::try_from(threshold)
            .map_err(|_| StoreError::Corrupt("glass case threshold out of range".into()))?,
        custodians: json(row, "custodians_json", "glass case custodians")?,
        chain_head: seq.zip(hash).map(|(s, h)| (s as u64, h)),
        journal_key: row.try_get("journal_key")?,
        state: row.try_get("state")?,
        warned_at: opt_ts(row, "warned_at")?,
        reconciled_at: opt_ts(row, "reconciled_at")?,
    })
}

fn serial_from_row(row: &DbRow) -> Result<GlassSerial> {
    let serial: i64 = row.try_get("serial")?;
    Ok(GlassSerial {
        case_id: row.try_get("case_id")?,
        // The u64 is stored as its bits.
        serial: serial as u64,
        resource: row.try_get("resource")?,
        valid_after: ts(row, "valid_after")?,
        valid_before: ts(row, "valid_before")?,
    })
}

fn role_from_row(row: &DbRow) -> Result<GlassRole> {
    Ok(GlassRole {
        case_id: row.try_get("case_id")?,
        resource: row.try_get("resource")?,
        role: row.try_get("role")?,
        valid_after: ts(row, "valid_after")?,
        valid_before: ts(row, "valid_before")?,
    })
}

#[async_trait]
impl GlassCases for Backend {
    async fn glass_case(&self, id: &str) -> Result<Option<GlassCase>> {
        row(&self.pool, sqlx::query(sql::BY_ID).bind(id), case_from_row).await
    }

    async fn glass_cases(&self, limit: u32) -> Result<Vec<GlassCase>> {
        rows(
            &self.pool,
            sqlx::query(sql::ALL).bind(i64::from(limit)),
            case_from_row,
        )
        .await
    }

    async fn glass_case_serials(&self, case_id: &str) -> Result<Vec<GlassSerial>> {
        let q = sqlx::query(sql::SERIALS).bind(case_id);
        rows(&self.pool, q, serial_from_row).await
    }

    async fn glass_case_revoked_serials(&self, after: Timestamp) -> Result<Vec<u64>> {
        let q = sqlx::query(sql::REVOKED).bind(after.0);
        rows(&self.pool, q, |r| {
            let s: i64 = r.try_get("serial")?;
            Ok(s as u64)
        })
        .await
    }

    async fn glass_case_roles(&self, case_id: &str) -> Result<Vec<GlassRole>> {
        let q = sqlx::query(sql::ROLES).bind(case_id);
        rows(&self.pool, q, role_from_row).await
    }

    async fn glass_case_live_roles(&self, now: Timestamp) -> Result<Vec<GlassRole>> {
        let q = sqlx::query(sql::LIVE_ROLES).bind(now.0);
        rows(&self.pool, q, role_from_row).await
    }

    async fn glass_cases_expiring(&self, before: Timestamp) -> Result<Vec<GlassCase>> {
        let q = sqlx::query(sql::EXPIRING).bind(before.0);
        rows(&self.pool, q, case_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::SealGlassCase {
            case,
            serials,
            roles,
        } => {
            let q = sqlx::query(sql::INSERT)
                .bind(case.id.clone())
                .bind(case.sealed_by)
                .bind(case.created_at.0)
                .bind(case.expires_at.0)
                .bind(i64::from(case.threshold))
                .bind(to_json(&case.custodians)?)
                .bind(case.chain_head.as_ref().map(|(s, _)| *s as i64))
                .bind(case.chain_head.map(|(_, h)| h))
                .bind(case.journal_key);
            write(conn, q).await?;
            for s in serials {
                let q = sqlx::query(sql::INSERT_SERIAL)
                    .bind(case.id.clone())
                    .bind(s.serial as i64)
                    .bind(s.resource)
                    .bind(s.valid_after.0)
                    .bind(s.valid_before.0);
                write(conn, q).await?;
            }
            for r in roles {
                let q = sqlx::query(sql::INSERT_ROLE)
                    .bind(case.id.clone())
                    .bind(r.resource)
                    .bind(r.role)
                    .bind(r.valid_after.0)
                    .bind(r.valid_before.0);
                write(conn, q).await?;
            }
        }
        Change::ReconcileGlassCase { id, at } => {
            let q = sqlx::query(sql::RECONCILE).bind(at.0).bind(id.clone());
            write_one(conn, q, || {
                StoreError::Conflict(format!("glass case {id} was reconciled already"))
            })
            .await?;
        }
        Change::WarnGlassCase { id, at } => {
            write(conn, sqlx::query(sql::WARN).bind(at.0).bind(id)).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
