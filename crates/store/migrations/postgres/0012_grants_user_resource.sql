-- "Has this user ever had this resource?" (an anomaly fact of every request) used the
-- grants_resource index and read every grant of the resource from the table to compare its user:
-- ~2 ms of SQLite per request once a resource had 8,000 grants. This answers it from the index.
CREATE INDEX grants_user_resource ON grants(user_name, resource);
