-- Sealed static credentials (resource kind: secret), encrypted by the caller under the KEK.
CREATE TABLE secrets (
    resource    TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    version     INTEGER NOT NULL,
    must_rotate INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
);
