-- breakglass schema v1 (SQLite). Audit rows are append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_name);

CREATE TABLE mfa (
    user_name     TEXT PRIMARY KEY REFERENCES users(name),
    totp_sealed   BLOB,
    totp_confirmed INTEGER NOT NULL DEFAULT 0,
    state_json    TEXT NOT NULL
);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    state      TEXT NOT NULL,
    deadline   INTEGER,            -- next time-driven transition (expiry / approval timeout); NULL when ended
    created_at INTEGER NOT NULL,
    doc        TEXT NOT NULL       -- the full grant (breakglass_core::grant::AnyGrant as JSON)
);
CREATE INDEX grants_deadline ON grants(deadline) WHERE deadline IS NOT NULL;
CREATE INDEX grants_user ON grants(user_name, created_at);

CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY,
    body     BLOB NOT NULL,
    leaf     BLOB NOT NULL,
    chain    BLOB NOT NULL,
    ts       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    grant_id TEXT
);
CREATE INDEX audit_grant ON audit(grant_id) WHERE grant_id IS NOT NULL;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
