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
    cols BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    mode TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    exit_status BIGINT,
    bytes BIGINT NOT NULL DEFAULT 0,
    chunks BIGINT NOT NULL DEFAULT 0,
    capped BIGINT NOT NULL DEFAULT 0,
    purged BIGINT NOT NULL DEFAULT 0,
    secret_hash BYTEA NOT NULL
);
CREATE INDEX recording_sessions_by_grant ON recording_sessions (grant_id, started_at);
CREATE INDEX recording_sessions_open ON recording_sessions (ended_at) WHERE ended_at IS NULL;
CREATE TABLE recording_chunks (
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    size BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    payload BYTEA,
    PRIMARY KEY (session_id, seq)
);
