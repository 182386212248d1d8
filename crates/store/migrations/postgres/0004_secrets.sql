-- Sealed static credentials (resource kind: secret), encrypted by the caller under the KEK.
CREATE TABLE secrets (
    resource    TEXT PRIMARY KEY,
    sealed      BYTEA NOT NULL,
    version     BIGINT NOT NULL,
    must_rotate BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
