-- Tokens used per day (UTC), per user and per server, from the API's usage figures.
-- scope is 'user' or 'guild'; day is 'YYYY-MM-DD'.
CREATE TABLE usage_daily (
    day       TEXT    NOT NULL,
    scope     TEXT    NOT NULL CHECK (scope IN ('user', 'guild')),
    scope_id  BIGINT  NOT NULL,
    tokens    BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope, scope_id)
);
