-- A credential issued when approvers (or the approval timeout) activated a grant, sealed under
-- the KEK until its holder picks it up once (`breakglass credential GRANT_ID`); then NULL.
ALTER TABLE credentials ADD COLUMN pickup BYTEA;
