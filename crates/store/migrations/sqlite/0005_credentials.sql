-- Credentials issued at a target for a grant, and their revocation (retried until confirmed).
CREATE TABLE credentials (
    grant_id        TEXT PRIMARY KEY,
    resource        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    handle          TEXT NOT NULL,              -- connector data needed to revoke (never a secret)
    issued_at       INTEGER NOT NULL,
    state           TEXT NOT NULL,              -- issued | revoking | revoked
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    revoked_at      INTEGER
);
CREATE INDEX credentials_due ON credentials(next_attempt_at) WHERE state = 'revoking';
