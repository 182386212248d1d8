-- PostgreSQL dialect of sqlite/0001_init.sql (BIGINT for INTEGER, BYTEA for BLOB, trigger
-- functions for SQLite's RAISE triggers), plus the audit head row that serialises appends.
-- breakglass schema v1. Audit rows are append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users(name),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_name);

CREATE TABLE mfa (
    user_name     TEXT PRIMARY KEY REFERENCES users(name),
    totp_sealed   BYTEA,
    totp_confirmed BIGINT NOT NULL DEFAULT 0,
    state_json    TEXT NOT NULL
);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    state      TEXT NOT NULL,
    deadline   BIGINT,            -- next time-driven transition (expiry / approval timeout); NULL when ended
    created_at BIGINT NOT NULL,
    doc        TEXT NOT NULL       -- the full grant (breakglass_core::grant::AnyGrant as JSON)
);
CREATE INDEX grants_deadline ON grants(deadline) WHERE deadline IS NOT NULL;
CREATE INDEX grants_user ON grants(user_name, created_at);

CREATE TABLE audit (
    seq      BIGINT PRIMARY KEY,
    body     BYTEA NOT NULL,
    leaf     BYTEA NOT NULL,
    chain    BYTEA NOT NULL,
    ts       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    grant_id TEXT
);
CREATE INDEX audit_grant ON audit(grant_id) WHERE grant_id IS NOT NULL;
CREATE FUNCTION audit_no_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION audit_no_update();
CREATE FUNCTION audit_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_no_delete();

CREATE TABLE checkpoints (
    size       BIGINT PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- One row: the audit chain's head. Every unit of work that appends events locks it (FOR UPDATE)
-- before reading it and moves it in the same transaction, so nodes append one after another;
-- the audit `seq` primary key is the backstop.
CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT,
    chain BYTEA
);
INSERT INTO audit_head (id, seq, chain) VALUES (1, NULL, NULL);
CREATE FUNCTION audit_head_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit head row stays'; END $$;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head FOR EACH ROW EXECUTE FUNCTION audit_head_no_delete();
-- TRUNCATE skips row triggers: refuse it on the append-only tables too.
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_no_delete();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head FOR EACH STATEMENT EXECUTE FUNCTION audit_head_no_delete();
