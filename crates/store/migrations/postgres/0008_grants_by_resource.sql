-- Anomaly facts count recent grants per resource on every request: index them (without it each
-- request scanned the whole grants table).
CREATE INDEX grants_resource ON grants(resource, created_at);
