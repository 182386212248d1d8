-- Alert outbox: written in the same transaction as the audit event it reports.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    created_at      INTEGER NOT NULL,
    sink            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    doc             TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER
);
CREATE INDEX alerts_due ON alerts(next_attempt_at) WHERE state = 'pending';
CREATE INDEX alerts_state ON alerts(state, id);
