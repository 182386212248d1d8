-- Passkeys (WebAuthn credentials), their ceremonies in flight, and recovery codes.
CREATE TABLE passkeys (
    id           TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES users(name),
    cred_id      TEXT NOT NULL UNIQUE,   -- base64url credential id: one credential, one user
    name         TEXT NOT NULL,
    passkey_json TEXT NOT NULL,          -- webauthn-rs Passkey (public key, counter)
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX passkeys_user ON passkeys(user_name);

-- A registration or authentication started and not yet finished: single use (deleted when
-- finished), bound to a user, an action and (when signed in) a session; expires.
CREATE TABLE webauthn_ceremonies (
    id           TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL,
    kind         TEXT NOT NULL,          -- register | authenticate
    purpose      TEXT NOT NULL,
    subject      TEXT NOT NULL,
    session_hash BLOB,
    state_json   TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_user ON webauthn_ceremonies(user_name, created_at);

-- Recovery codes: SHA-256 of 120-bit random codes; single use.
CREATE TABLE recovery_codes (
    user_name  TEXT NOT NULL REFERENCES users(name),
    hash       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_name, hash)
);
