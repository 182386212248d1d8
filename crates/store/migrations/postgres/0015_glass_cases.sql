-- Offline glass cases: what was sealed (never the secrets: those leave only in the bundle), and
-- every certificate serial in a case's ladder, so reconcile can put them all in the KRL.
CREATE TABLE glass_cases (
    id              TEXT PRIMARY KEY,
    sealed_by       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    custodians_json TEXT NOT NULL,
    chain_seq       BIGINT,
    chain_hash      TEXT,
    journal_key     BYTEA NOT NULL,          -- Ed25519 public key the case's journals verify with
    state           TEXT NOT NULL DEFAULT 'sealed',   -- sealed | reconciled
    warned_at       BIGINT,                -- the "runs out soon" alert was queued
    reconciled_at   BIGINT
);
CREATE INDEX glass_cases_sealed ON glass_cases(expires_at) WHERE state = 'sealed';

CREATE TABLE glass_case_serials (
    case_id      TEXT NOT NULL REFERENCES glass_cases(id),
    serial       BIGINT NOT NULL,          -- the u64 serial's bits
    resource     TEXT NOT NULL,
    valid_after  BIGINT NOT NULL,
    valid_before BIGINT NOT NULL,
    PRIMARY KEY (case_id, serial)
);
CREATE INDEX glass_case_serials_until ON glass_case_serials(valid_before);
