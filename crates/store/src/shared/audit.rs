//! The audit log (hash chain) and its signed checkpoints. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, count, rows, ts};
use super::db::{Conn, DbRow};
use crate::audit::sql;
use crate::{AuditLog, Result, StoreError, StoredCheckpoint};
use async_trait::async_trait;
use breakglass_core::audit::{AuditRecord, Head, IndexColumns, NewEvent};
use breakglass_core::time::Timestamp;
use sqlx::Row;

/// The rows of [`sql::ROWS`] through the pool.
pub(super) async fn rows_from(
    pool: &super::db::Pool,
    from: u64,
    limit: u32,
) -> Result<Vec<(AuditRecord, IndexColumns)>> {
    let q = sqlx::query(sql::ROWS)
        .bind(seq_i64(from)?)
        .bind(i64::from(limit));
    rows(pool, q, indexed_record_from_row).await
}

pub(super) fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

pub(super) fn seq_u64(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative audit seq".into()))
}

pub(super) fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt("audit seq overflow".into()))
}

fn record_from_row(row: &DbRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: seq_u64(row.try_get("seq")?)?,
        body: row.try_get("body")?,
        leaf_hash: hash32(row.try_get("leaf")?, "leaf hash")?,
        chain_hash: hash32(row.try_get("chain")?, "chain hash")?,
    })
}

fn indexed_record_from_row(row: &DbRow) -> Result<(AuditRecord, IndexColumns)> {
    Ok((
        record_from_row(row)?,
        IndexColumns {
            ts_ms: row.try_get("ts")?,
            kind: row.try_get("kind")?,
            grant_id: row.try_get("grant_id")?,
        },
    ))
}

fn head_from_row(row: &DbRow) -> Result<Head> {
    Ok(Head {
        seq: seq_u64(row.try_get("seq")?)?,
        chain_hash: hash32(row.try_get("chain")?, "chain hash")?,
    })
}

fn checkpoint_from_row(row: &DbRow) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: u64::try_from(row.try_get::<i64, _>("size")?)
            .map_err(|_| StoreError::Corrupt("negative checkpoint size".into()))?,
        note: row.try_get("note")?,
        created_at: ts(row, "created_at")?,
    })
}

pub(super) async fn head(conn: &mut Conn) -> Result<Option<Head>> {
    sqlx::query(sql::HEAD)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(head_from_row)
        .transpose()
}

#[async_trait]
impl AuditLog for Backend {
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
        super::dialect::audit_rows(self, from, limit).await
    }

    async fn audit_for_grant(&self, grant_id: &str) -> Result<Vec<AuditRecord>> {
        let q = sqlx::query(sql::FOR_GRANT).bind(grant_id);
        rows(&self.pool, q, record_from_row).await
    }

    async fn audit_kind_counts(&self, since: Timestamp) -> Result<Vec<(String, u64)>> {
        // Read from the hashed body, not the `kind`/`ts` index columns (`audit verify` checks
        // those, but a summary must not depend on it having run); JSON access is per dialect.
        let q = sqlx::query(super::dialect::KIND_COUNTS).bind(since.0);
        rows(&self.pool, q, |r| Ok((r.try_get("kind")?, count(r, "n")?))).await
    }

    async fn add_checkpoint(&self, cp: StoredCheckpoint) -> Result<()> {
        sqlx::query(sql::ADD_CHECKPOINT)
            .bind(seq_i64(cp.size)?)
            .bind(&cp.note)
            .bind(cp.created_at.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let q = sqlx::query(sql::LATEST_CHECKPOINT);
        super::common::row(&self.pool, q, checkpoint_from_row).await
    }

    async fn checkpoints_after(&self, size: u64, limit: u32) -> Result<Vec<StoredCheckpoint>> {
        let q = sqlx::query(sql::CHECKPOINTS_AFTER)
            .bind(seq_i64(size)?)
            .bind(i64::from(limit));
        rows(&self.pool, q, checkpoint_from_row).await
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        rows(
            &self.pool,
            sqlx::query(sql::CHECKPOINTS),
            checkpoint_from_row,
        )
        .await
    }
}

/// Most audit rows in one INSERT (7 parameters each; SQLite allows 32,766 per statement).
const ROWS_PER_INSERT: usize = 256;

/// Seals each unit's events after `prev`, in order, and inserts them all in a few multi-row
/// statements: the head row is locked meanwhile, so other nodes wait for as few round trips as
/// can be (one per 256 events, not one per event). Returns the head after each unit.
pub(super) async fn append_units(
    conn: &mut Conn,
    units: &[&[NewEvent]],
    mut prev: Option<Head>,
) -> Result<Vec<Option<Head>>> {
    let mut heads = Vec::with_capacity(units.len());
    let mut rows: Vec<(i64, AuditRecord, &NewEvent)> = Vec::new();
    for events in units {
        for ev in *events {
            let rec = breakglass_core::audit::seal(prev, ev);
            prev = Some(Head {
                seq: rec.seq,
                chain_hash: rec.chain_hash,
            });
            rows.push((seq_i64(rec.seq)?, rec, ev));
        }
        heads.push(prev);
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<super::db::Db>::new(sql::APPEND_ROWS);
        q.push_values(chunk, |mut b, (seq, rec, ev)| {
            b.push_bind(*seq)
                .push_bind(rec.body.clone())
                .push_bind(rec.leaf_hash.to_vec())
                .push_bind(rec.chain_hash.to_vec())
                .push_bind(ev.ts_ms)
                .push_bind(ev.kind.clone())
                .push_bind(ev.grant_id.clone());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(heads)
}
