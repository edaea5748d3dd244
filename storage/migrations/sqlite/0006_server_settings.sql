-- What each server's admins chose, and each user's memory pause. Ids are Discord snowflakes
-- (BIGINT); booleans are 0/1 integers and times epoch seconds, the same on SQLite and PostgreSQL.

-- One row per server that changed anything; a missing row means the operator's defaults.
CREATE TABLE server_settings (
    guild_id    BIGINT PRIMARY KEY,
    persona     TEXT,                           -- NULL: the operator's SYSTEM_PROMPT
    chat_model  TEXT,                           -- NULL: CHAT_MODEL
    memory      INTEGER NOT NULL DEFAULT 1,     -- 0: answer from the recent window, learn nothing
    notice      INTEGER NOT NULL DEFAULT 0,     -- 1: a short notice to messages not allowed
    threads     INTEGER NOT NULL DEFAULT 0,     -- 1: a mention in a channel opens a thread
    updated_at  DOUBLE PRECISION NOT NULL
);

-- A channel's, category's or thread's own settings; NULL inherits (thread → channel →
-- category → server). A category covers its channels, a channel its threads.
CREATE TABLE channel_settings (
    guild_id     BIGINT NOT NULL,
    channel_id   BIGINT NOT NULL,
    access       TEXT CHECK (access IN ('allow', 'deny')),
    answer_mode  TEXT CHECK (answer_mode IN ('mention', 'always')),
    threads      INTEGER,
    persona      TEXT,
    chat_model   TEXT,
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);

CREATE TABLE role_rules (
    guild_id  BIGINT NOT NULL,
    role_id   BIGINT NOT NULL,
    access    TEXT NOT NULL CHECK (access IN ('allow', 'deny')),
    PRIMARY KEY (guild_id, role_id)
);

-- Members a server's admins blocked: the server's moderation record, not the member's data.
CREATE TABLE blocked_members (
    guild_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    blocked_by  BIGINT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- Users who paused their memory: nothing they say is stored while their row exists.
CREATE TABLE memory_pauses (
    user_id    BIGINT PRIMARY KEY,
    paused_at  DOUBLE PRECISION NOT NULL
);

-- Model tokens per UTC day per member of a server, for /mnemo-admin stats (ids and counts only).
CREATE TABLE usage_members (
    day       TEXT   NOT NULL,
    guild_id  BIGINT NOT NULL,
    user_id   BIGINT NOT NULL,
    tokens    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, day, user_id)
);
CREATE INDEX usage_members_by_user ON usage_members (user_id);
