-- What several bot processes sharing one database coordinate through (one process uses it too).

-- A lease: who runs a named piece of work (a session's summary, the retention pass, the command
-- sync) until when. A process that dies stops renewing; after expires_at another may take it.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    expires_at  REAL    NOT NULL
);

-- Discord allows max_concurrency IDENTIFYs per 5 s, one bucket per shard_id % max_concurrency.
CREATE TABLE identify_buckets (
    bucket   INTEGER PRIMARY KEY,
    last_at  REAL    NOT NULL
);

-- Messages per user in the current one-minute window, shared by every process.
CREATE TABLE rate_windows (
    user_id       INTEGER PRIMARY KEY,
    window_start  REAL    NOT NULL,
    count         INTEGER NOT NULL
);
