-- Drill results: one row per drill run (scheduled or by hand), its steps and timings, and the
-- failing step with its error. A scheduled run claims its slot with the row: the unique index
-- means two server processes never run the same slot twice.
CREATE TABLE drills (
    id           TEXT PRIMARY KEY,
    resource     TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    slot         INTEGER,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    started_by   TEXT NOT NULL,
    grant_id     TEXT,
    verdict      TEXT NOT NULL,
    failed_step  TEXT,
    error        TEXT,
    steps_json   TEXT NOT NULL,
    timings_json TEXT NOT NULL
);
CREATE UNIQUE INDEX drills_slot ON drills (resource, slot) WHERE slot IS NOT NULL;
CREATE INDEX drills_resource_started ON drills (resource, started_at);
-- People drills (game days): windows in which real responders' grants are marked training.
CREATE TABLE drill_windows (
    id         TEXT PRIMARY KEY,
    opened_by  TEXT NOT NULL,
    opened_at  INTEGER NOT NULL,
    until      INTEGER NOT NULL
);
