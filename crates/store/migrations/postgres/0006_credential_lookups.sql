-- Lookups for the sweep (open credentials per resource) and the SSH KRL (revoked by kind).
CREATE INDEX credentials_resource_state ON credentials(resource, state);
CREATE INDEX credentials_kind_state ON credentials(kind, state);
