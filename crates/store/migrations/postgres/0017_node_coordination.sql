-- The login throttle's counters (per account and source, per account, per source), shared by
-- every node so failures spread over nodes count as one guesser's. Idle counters are dropped.
CREATE TABLE login_failures (
    key      TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    last_at  BIGINT NOT NULL
);
CREATE INDEX login_failures_by_last ON login_failures (last_at);

-- Leases of singleton jobs (checkpointer, sweeper): one holder at a time, until a deadline on
-- the database's clock; the term rises each time the lease changes hands, and the holder's
-- writes are checked against it in the same transaction.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    term   BIGINT NOT NULL,
    until  BIGINT NOT NULL
);
