//! The audit log (hash chain) and its signed checkpoints. SQLite backend.

use super::SqliteStore;
use crate::{AuditLog, Result, StoreError, StoredCheckpoint};
use async_trait::async_trait;
use breakglass_core::audit::{AuditRecord, Head, IndexColumns, NewEvent};
use breakglass_core::time::Timestamp;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::path::Path;
use std::time::Duration;

pub(super) fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

pub(super) fn record_from_row(row: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: u64::try_from(row.try_get::<i64, _>("seq")?)
            .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
        body: row.try_get("body")?,
        leaf_hash: hash32(row.try_get("leaf")?, "leaf hash")?,
        chain_hash: hash32(row.try_get("chain")?, "chain hash")?,
    })
}

pub(super) async fn head(conn: &mut SqliteConnection) -> Result<Option<Head>> {
    let row = sqlx::query("SELECT seq, chain FROM audit ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(Head {
            seq: u64::try_from(r.try_get::<i64, _>("seq")?)
                .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
            chain_hash: hash32(r.try_get("chain")?, "chain hash")?,
        })),
    }
}

pub(super) fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq overflow".into()))
}

pub(super) fn read_audit(
    path: &Path,
    from: u64,
    limit: u32,
) -> Result<Vec<(AuditRecord, IndexColumns)>> {
    use rusqlite::{Connection, OpenFlags};
    let db = |e: rusqlite::Error| StoreError::CommitFailed(format!("audit read: {e}"));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, body, leaf, chain, ts, kind, grant_id FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(db)?;
    let mut rows = stmt.query((seq_i64(from)?, i64::from(limit))).map_err(db)?;
    let mut out = Vec::with_capacity(limit.min(100_000) as usize);
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        out.push((
            AuditRecord {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt("negative audit seq".into()))?,
                body: r.get(1).map_err(db)?,
                leaf_hash: hash32(r.get(2).map_err(db)?, "leaf hash")?,
                chain_hash: hash32(r.get(3).map_err(db)?, "chain hash")?,
            },
            IndexColumns {
                ts_ms: r.get(4).map_err(db)?,
                kind: r.get(5).map_err(db)?,
                grant_id: r.get(6).map_err(db)?,
            },
        ));
    }
    Ok(out)
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn audit_head(&self) -> Result<Option<Head>> {
        let mut conn = self.pool.acquire().await?;
        head(&mut conn).await
    }

    async fn audit_records(&self, from: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        Ok(self
            .audit_rows(from, limit)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    async fn audit_rows(&self, from: u64, limit: u32) -> Result<Vec<(AuditRecord, IndexColumns)>> {
        if let Some(path) = self.path.clone() {
            // Bulk reads (verification, export, checkpoints) bypass the async driver: a plain
            // read-only connection on a blocking thread is several times faster per row.
            return tokio::task::spawn_blocking(move || read_audit(&path, from, limit))
                .await
                .map_err(|e| StoreError::CommitFailed(format!("reader task: {e}")))?;
        }
        sqlx::query(
            "SELECT seq, body, leaf, chain, ts, kind, grant_id FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?",
        )
        .bind(seq_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                record_from_row(row)?,
                IndexColumns {
                    ts_ms: row.try_get("ts")?,
                    kind: row.try_get("kind")?,
                    grant_id: row.try_get("grant_id")?,
                },
            ))
        })
        .collect()
    }

    async fn audit_for_grant(&self, grant_id: &str) -> Result<Vec<AuditRecord>> {
        sqlx::query("SELECT seq, body, leaf, chain FROM audit WHERE grant_id = ? ORDER BY seq")
            .bind(grant_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    }

    async fn audit_kind_counts(&self, since: Timestamp) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            // Read from the hashed body, not the `kind`/`ts` index columns (`audit verify`
            // checks those, but a summary must not depend on it having been run).
            "SELECT json_extract(CAST(body AS TEXT), '$.kind') AS kind, COUNT(*) AS n FROM audit \
             WHERE json_extract(CAST(body AS TEXT), '$.ts') >= ? GROUP BY 1 ORDER BY 1",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind")?,
                    u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn add_checkpoint(&self, cp: StoredCheckpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO checkpoints (size, note, created_at) VALUES (?, ?, ?) ON CONFLICT(size) DO NOTHING",
        )
        .bind(seq_i64(cp.size)?)
        .bind(&cp.note)
        .bind(cp.created_at.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query("SELECT size, note, created_at FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredCheckpoint {
                    size: u64::try_from(r.try_get::<i64, _>("size")?)
                        .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
                    note: r.try_get("note")?,
                    created_at: Timestamp(r.try_get("created_at")?),
                })
            })
            .collect()
    }
}

/// Appends `events` to the hash chain after `prev`, inside the open transaction; returns the new
/// head.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    mut prev: Option<Head>,
) -> Result<Option<Head>> {
    for ev in events {
        let rec = breakglass_core::audit::seal(prev, ev);
        sqlx::query(
            "INSERT INTO audit (seq, body, leaf, chain, ts, kind, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq_i64(rec.seq)?)
        .bind(&rec.body)
        .bind(&rec.leaf_hash[..])
        .bind(&rec.chain_hash[..])
        .bind(ev.ts_ms)
        .bind(&ev.kind)
        .bind(&ev.grant_id)
        .execute(&mut *conn)
        .await?;
        prev = Some(Head {
            seq: rec.seq,
            chain_hash: rec.chain_hash,
        });
    }
    Ok(prev)
}
