-- Post-incident reviews: one per grant that had access; entries are append-only.
CREATE TABLE reviews (
    grant_id     TEXT PRIMARY KEY REFERENCES grants(id),
    opened_at    INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    by_json      TEXT NOT NULL,
    requester    TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'open',   -- open | done
    escalated_at INTEGER
);
CREATE INDEX reviews_due ON reviews(due_at) WHERE state = 'open' AND escalated_at IS NULL;

CREATE TABLE review_entries (
    id       INTEGER PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES reviews(grant_id),
    reviewer TEXT NOT NULL,
    verdict  TEXT NOT NULL,
    notes    TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE TRIGGER review_entries_no_update BEFORE UPDATE ON review_entries BEGIN SELECT RAISE(ABORT, 'review entries are immutable'); END;
CREATE TRIGGER review_entries_no_delete BEFORE DELETE ON review_entries BEGIN SELECT RAISE(ABORT, 'review entries are immutable'); END;
