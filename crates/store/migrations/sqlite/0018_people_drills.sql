-- Practice grants: 0 real use, 1 a scheduled drill (the drill identity), 2 a people drill (a
-- real responder inside a training window). Anomaly counts leave out everything but 0.
ALTER TABLE grants ADD COLUMN practice INTEGER NOT NULL DEFAULT 0;
UPDATE grants SET practice = 1 WHERE doc LIKE '%"drill":true%';
CREATE INDEX grants_practice_user ON grants (practice, user_name, created_at) WHERE practice <> 0;
-- The anomaly counts filter on practice: with it in the indexes they stay index-only (no table
-- read per counted grant); same number of indexes as before, each a column wider.
DROP INDEX grants_user;
DROP INDEX grants_resource;
DROP INDEX grants_user_resource;
CREATE INDEX grants_user ON grants (user_name, created_at, practice);
CREATE INDEX grants_resource ON grants (resource, created_at, practice);
CREATE INDEX grants_user_resource ON grants (user_name, resource, practice);
-- People-drill windows: which resources (a JSON list; empty = every resource), why, and who
-- closed it early (until then moves back to when it was closed).
ALTER TABLE drill_windows ADD COLUMN resources_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE drill_windows ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE drill_windows ADD COLUMN closed_by TEXT;
CREATE INDEX drill_windows_until ON drill_windows (until);
