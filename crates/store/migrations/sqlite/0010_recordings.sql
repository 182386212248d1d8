-- Session recordings: one row per recorded session, one per chunk. A chunk's digest is also in
-- the `recording.chunk` audit event committed with it; retention may clear `payload` but never
-- the digest, so the audit chain still verifies.
CREATE TABLE recording_sessions (
    id TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    host TEXT NOT NULL,
    client TEXT NOT NULL,
    recorder_addr TEXT NOT NULL,
    kind TEXT NOT NULL,
    command TEXT,
    cols INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    mode TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    exit_status INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    chunks INTEGER NOT NULL DEFAULT 0,
    capped INTEGER NOT NULL DEFAULT 0,
    purged INTEGER NOT NULL DEFAULT 0,
    secret_hash BLOB NOT NULL
);
CREATE INDEX recording_sessions_by_grant ON recording_sessions (grant_id, started_at);
CREATE INDEX recording_sessions_open ON recording_sessions (ended_at) WHERE ended_at IS NULL;
CREATE TABLE recording_chunks (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    size INTEGER NOT NULL,
    digest BLOB NOT NULL,
    payload BLOB,
    PRIMARY KEY (session_id, seq)
);
