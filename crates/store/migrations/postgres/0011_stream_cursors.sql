-- Where each audit stream (last delivered seq) and checkpoint witness (last copied checkpoint
-- size) stands. The audit log is their outbox: nothing is queued per stream.
CREATE TABLE stream_cursors (
    name            TEXT PRIMARY KEY,
    position        BIGINT NOT NULL,
    failures        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    last_attempt_at BIGINT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL
);
