-- Practice grants: 0 real use, 1 a scheduled drill (the drill identity), 2 a people drill (a
-- real responder inside a training window). Anomaly counts leave out everything but 0.
ALTER TABLE grants ADD COLUMN practice BIGINT NOT NULL DEFAULT 0;
UPDATE grants SET practice = 1 WHERE doc LIKE '%"drill":true%';
CREATE INDEX grants_practice_user ON grants (practice, user_name, created_at) WHERE practice <> 0;
-- People-drill windows: which resources (a JSON list; empty = every resource), why, and who
-- closed it early (until then moves back to when it was closed).
ALTER TABLE drill_windows ADD COLUMN resources_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE drill_windows ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE drill_windows ADD COLUMN closed_by TEXT;
CREATE INDEX drill_windows_until ON drill_windows (until);
