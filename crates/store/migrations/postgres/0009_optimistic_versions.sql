-- Compare-and-swap versions: every write of a user's MFA state and of a grant names the version
-- it read, so two concurrent requests (or nodes) can never both apply a change computed from the
-- same state (one TOTP code accepted twice, a lost approval).
ALTER TABLE mfa ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
