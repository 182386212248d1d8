//! Session recordings. Shared by both backends (compiled into each with its driver's types).

use super::common::{Backend, count, flag, opt_ts, row, rows, ts, write, write_one};
use super::db::{Conn, DbRow};
use crate::recordings::sql;
use crate::{Change, Chunk, RecordingSession, Recordings, Result, StoreError};
use async_trait::async_trait;
use breakglass_core::time::Timestamp;
use sqlx::Row;

fn session_from_row(row: &DbRow) -> Result<RecordingSession> {
    let size =
        |c: &str| -> Result<u16> { Ok(u16::try_from(row.try_get::<i64, _>(c)?).unwrap_or(0)) };
    Ok(RecordingSession {
        id: row.try_get("id")?,
        grant_id: row.try_get("grant_id")?,
        host: row.try_get("host")?,
        client: row.try_get("client")?,
        recorder_addr: row.try_get("recorder_addr")?,
        kind: row.try_get("kind")?,
        command: row.try_get("command")?,
        cols: size("cols")?,
        rows: size("rows")?,
        mode: row.try_get("mode")?,
        started_at: ts(row, "started_at")?,
        ended_at: opt_ts(row, "ended_at")?,
        end_reason: row.try_get("end_reason")?,
        exit_status: row
            .try_get::<Option<i64>, _>("exit_status")?
            .map(|s| i32::try_from(s).unwrap_or(-1)),
        bytes: count(row, "bytes")?,
        chunks: count(row, "chunks")?,
        capped: flag(row, "capped")?,
        purged: flag(row, "purged")?,
        secret_hash: row.try_get("secret_hash")?,
    })
}

fn chunk_from_row(row: &DbRow) -> Result<Chunk> {
    Ok(Chunk {
        session_id: row.try_get("session_id")?,
        seq: count(row, "seq")?,
        at: ts(row, "at")?,
        size: count(row, "size")?,
        digest: row.try_get("digest")?,
        payload: row.try_get("payload")?,
    })
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Recordings for Backend {
    async fn recording_session(&self, id: &str) -> Result<Option<RecordingSession>> {
        row(
            &self.pool,
            sqlx::query(sql::BY_ID).bind(id),
            session_from_row,
        )
        .await
    }

    async fn recording_sessions(&self, grant_id: &str) -> Result<Vec<RecordingSession>> {
        let q = sqlx::query(sql::BY_GRANT).bind(grant_id);
        rows(&self.pool, q, session_from_row).await
    }

    async fn all_recording_sessions(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RecordingSession>> {
        let q = sqlx::query(sql::ALL_AFTER)
            .bind(after)
            .bind(i64::from(limit));
        rows(&self.pool, q, session_from_row).await
    }

    async fn open_recording_sessions(&self) -> Result<Vec<RecordingSession>> {
        rows(&self.pool, sqlx::query(sql::OPEN), session_from_row).await
    }

    async fn purgeable_sessions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<RecordingSession>> {
        let q = sqlx::query(sql::PURGEABLE)
            .bind(before.0)
            .bind(i64::from(limit));
        rows(&self.pool, q, session_from_row).await
    }

    async fn recording_chunks(
        &self,
        session_id: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<Chunk>> {
        let q = sqlx::query(sql::CHUNKS)
            .bind(session_id)
            .bind(int(from_seq))
            .bind(i64::from(limit));
        rows(&self.pool, q, chunk_from_row).await
    }
}

/// Applies `change` if it belongs to this aggregate; hands any other change back.
pub(super) async fn apply(conn: &mut Conn, change: Change) -> Result<Option<Change>> {
    match change {
        Change::StartRecording(s) => {
            let q = sqlx::query(sql::START)
                .bind(s.id)
                .bind(s.grant_id)
                .bind(s.host)
                .bind(s.client)
                .bind(s.recorder_addr)
                .bind(s.kind)
                .bind(s.command)
                .bind(i64::from(s.cols))
                .bind(i64::from(s.rows))
                .bind(s.mode)
                .bind(s.started_at.0)
                .bind(s.secret_hash);
            write(conn, q).await?;
        }
        Change::AppendChunk(c) => {
            // The session counts the bytes recorded (`size`: a compressed payload's expanded
            // length); the chunk row keeps the bytes stored.
            let size = c.payload.as_ref().map_or(0, |p| p.len() as u64);
            let q = sqlx::query(sql::COUNT_CHUNK)
                .bind(int(c.size))
                .bind(c.session_id.clone())
                .bind(int(c.seq));
            let (id, seq) = (c.session_id.clone(), c.seq);
            write_one(conn, q, || {
                StoreError::Conflict(format!(
                    "session {id} does not take chunk {seq} (not its next chunk, or it has ended)"
                ))
            })
            .await?;
            let q = sqlx::query(sql::INSERT_CHUNK)
                .bind(c.session_id)
                .bind(int(c.seq))
                .bind(c.at.0)
                .bind(int(size))
                .bind(c.digest)
                .bind(c.payload);
            write(conn, q).await?;
        }
        Change::CapRecording { session_id } => {
            write(conn, sqlx::query(sql::CAP).bind(session_id)).await?;
        }
        Change::EndRecording {
            session_id,
            at,
            reason,
            exit_status,
        } => {
            let q = sqlx::query(sql::END)
                .bind(at.0)
                .bind(reason)
                .bind(exit_status.map(i64::from))
                .bind(session_id.clone());
            write_one(conn, q, || {
                StoreError::Conflict(format!("session {session_id} has already ended"))
            })
            .await?;
        }
        Change::PurgeRecording { session_id } => {
            write(conn, sqlx::query(sql::PURGE).bind(session_id.clone())).await?;
            write(conn, sqlx::query(sql::MARK_PURGED).bind(session_id)).await?;
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
