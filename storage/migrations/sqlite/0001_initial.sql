-- Mnemo's first schema. Ids are AUTOINCREMENT so a deleted row's id is never reused: background
-- jobs compare watermarks and session ids, and a reused id would let stale work land.

-- One conversation: a user in a channel (a thread is its own channel, a DM is a channel).
CREATE TABLE sessions (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id            INTEGER,                      -- NULL in DMs
    channel_id          INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    summary             TEXT    NOT NULL DEFAULT '',
    summary_tokens      INTEGER NOT NULL DEFAULT 0,
    summary_updated_at  REAL,
    summarized_through  INTEGER NOT NULL DEFAULT 0,   -- last message id folded into the summary
    facts_through       INTEGER NOT NULL DEFAULT 0,   -- last message id read for facts
    created_at          REAL    NOT NULL,
    UNIQUE (channel_id, user_id)
);
CREATE INDEX sessions_by_user ON sessions (user_id, guild_id);

-- Every stored message, verbatim, with its token count computed once.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    discord_id  INTEGER UNIQUE,                       -- a redelivered event is stored once
    guild_id    INTEGER,
    channel_id  INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,                     -- the session's user, also for replies
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT    NOT NULL,
    tokens      INTEGER NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX messages_by_session ON messages (session_id, id);
CREATE INDEX messages_by_user ON messages (user_id, guild_id);

-- Facts a user stated about themself, per space (a server id, or 0 for DMs).
-- A superseded fact keeps its row with valid_until set, so history can be shown.
CREATE TABLE facts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL,
    space_id     INTEGER NOT NULL,
    attribute    TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    tokens       INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    valid_until  REAL
);
CREATE INDEX facts_current ON facts (user_id, space_id, valid_until);

-- Where each fact was learned. Keeps ids only, never text.
CREATE TABLE fact_sources (
    fact_id             INTEGER NOT NULL REFERENCES facts (id) ON DELETE CASCADE,
    message_id          INTEGER NOT NULL,
    discord_message_id  INTEGER,
    channel_id          INTEGER NOT NULL,
    guild_id            INTEGER,
    PRIMARY KEY (fact_id, message_id)
);
CREATE INDEX fact_sources_by_message ON fact_sources (message_id);

-- Small key/value state of the bot itself (e.g. the slash command sync fingerprint).
CREATE TABLE bot_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
