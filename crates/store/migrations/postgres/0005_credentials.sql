-- Credentials issued at a target for a grant, and their revocation (retried until confirmed).
CREATE TABLE credentials (
    grant_id        TEXT PRIMARY KEY,
    resource        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    handle          TEXT NOT NULL,              -- connector data needed to revoke (never a secret)
    issued_at       BIGINT NOT NULL,
    state           TEXT NOT NULL,              -- issued | revoking | revoked
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    revoked_at      BIGINT
);
CREATE INDEX credentials_due ON credentials(next_attempt_at) WHERE state = 'revoking';
