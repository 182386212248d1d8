//! Session recordings: sessions and their chunks.

use crate::error::Result;
use async_trait::async_trait;
use breakglass_core::time::Timestamp;

/// A recorded session (an SSH login under a grant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSession {
    pub id: String,
    pub grant_id: String,
    /// The host as the recorder names it, and the SSH client's address there.
    pub host: String,
    pub client: String,
    /// Where the recorder's requests came from (as the server saw it).
    pub recorder_addr: String,
    /// `pty` (interactive) or `exec` (a command without a terminal, scp, sftp).
    pub kind: String,
    pub command: Option<String>,
    pub cols: u16,
    pub rows: u16,
    /// `required` or `best_effort`.
    pub mode: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<String>,
    pub exit_status: Option<i32>,
    pub bytes: u64,
    pub chunks: u64,
    pub capped: bool,
    /// Chunk payloads deleted by retention (their digests remain).
    pub purged: bool,
    /// SHA-256 of the secret the recorder holds for this session.
    pub secret_hash: Vec<u8>,
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub session_id: String,
    pub seq: u64,
    pub at: Timestamp,
    pub size: u64,
    pub digest: Vec<u8>,
    /// None once retention deleted it.
    pub payload: Option<Vec<u8>>,
}

#[async_trait]
pub trait Recordings: Send + Sync {
    async fn recording_session(&self, id: &str) -> Result<Option<RecordingSession>>;
    /// The sessions of a grant, oldest first.
    async fn recording_sessions(&self, grant_id: &str) -> Result<Vec<RecordingSession>>;
    /// Every session (for verification), by id, after `after`, at most `limit`.
    async fn all_recording_sessions(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RecordingSession>>;
    /// Sessions still open.
    async fn open_recording_sessions(&self) -> Result<Vec<RecordingSession>>;
    /// Ended sessions that still hold payloads, ended before `before`.
    async fn purgeable_sessions(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<RecordingSession>>;
    /// Chunks of a session from `from_seq` on, at most `limit`.
    async fn recording_chunks(
        &self,
        session_id: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<Chunk>>;
}

/// This aggregate's SQL, shared by the backends (see "SQL" in the [crate docs](crate)).
pub(crate) mod sql {
    pub const START: &str = "INSERT INTO recording_sessions (id, grant_id, host, client, recorder_addr, \
         kind, command, cols, rows, mode, started_at, secret_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
    /// Gapless and in order: chunk `seq` is accepted only as the session's next one.
    pub const COUNT_CHUNK: &str = "UPDATE recording_sessions SET chunks = chunks + 1, bytes = bytes + $1 \
         WHERE id = $2 AND chunks = $3 AND ended_at IS NULL";
    pub const INSERT_CHUNK: &str = "INSERT INTO recording_chunks (session_id, seq, at, size, digest, payload) \
         VALUES ($1, $2, $3, $4, $5, $6)";
    pub const CAP: &str = "UPDATE recording_sessions SET capped = 1 WHERE id = $1";
    pub const END: &str = "UPDATE recording_sessions SET ended_at = $1, end_reason = $2, exit_status = $3 \
         WHERE id = $4 AND ended_at IS NULL";
    pub const PURGE: &str = "UPDATE recording_chunks SET payload = NULL WHERE session_id = $1";
    pub const MARK_PURGED: &str = "UPDATE recording_sessions SET purged = 1 WHERE id = $1";
    pub const BY_ID: &str = "SELECT * FROM recording_sessions WHERE id = $1";
    pub const BY_GRANT: &str =
        "SELECT * FROM recording_sessions WHERE grant_id = $1 ORDER BY started_at, id";
    pub const ALL_AFTER: &str =
        "SELECT * FROM recording_sessions WHERE id > $1 ORDER BY id LIMIT $2";
    pub const OPEN: &str = "SELECT * FROM recording_sessions WHERE ended_at IS NULL";
    pub const PURGEABLE: &str = "SELECT * FROM recording_sessions \
         WHERE ended_at IS NOT NULL AND ended_at < $1 AND purged = 0 ORDER BY ended_at LIMIT $2";
    pub const CHUNKS: &str = "SELECT * FROM recording_chunks WHERE session_id = $1 AND seq >= $2 \
         ORDER BY seq LIMIT $3";
}
