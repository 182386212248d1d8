-- The emergency PostgreSQL logins of a glass case (resources with `glass_case: true`): the role
-- names only (the passwords exist only in the bundle). While the case is sealed and a role's day
-- has not ended, the sweep counts it as owned; once the case is reconciled (or its day is over)
-- the role is dropped — by reconcile at once, by the sweep when the target was unreachable then.
CREATE TABLE glass_case_roles (
    case_id      TEXT NOT NULL REFERENCES glass_cases(id),
    resource     TEXT NOT NULL,
    role         TEXT NOT NULL,
    valid_after  INTEGER NOT NULL,
    valid_before INTEGER NOT NULL,
    PRIMARY KEY (case_id, role)
);
CREATE INDEX glass_case_roles_until ON glass_case_roles(valid_before);
