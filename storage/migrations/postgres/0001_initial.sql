-- Mnemo's first schema, for PostgreSQL: the same tables as sqlite/0001_initial.sql.
-- Discord ids are 64-bit (BIGINT; INTEGER is 32-bit here), times are seconds since the epoch
-- as DOUBLE PRECISION (REAL is 4-byte here), and ids come from identity columns: a sequence
-- never hands out an id twice, as AUTOINCREMENT on SQLite (background jobs compare
-- watermarks and session ids, and a reused id would let stale work land).

-- One conversation: a user in a channel (a thread is its own channel, a DM is a channel).
CREATE TABLE sessions (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id            BIGINT,                       -- NULL in DMs
    channel_id          BIGINT  NOT NULL,
    user_id             BIGINT  NOT NULL,
    summary             TEXT    NOT NULL DEFAULT '',
    summary_tokens      INTEGER NOT NULL DEFAULT 0,
    summary_updated_at  DOUBLE PRECISION,
    summarized_through  BIGINT  NOT NULL DEFAULT 0,   -- last message id folded into the summary
    facts_through       BIGINT  NOT NULL DEFAULT 0,   -- last message id read for facts
    created_at          DOUBLE PRECISION NOT NULL,
    UNIQUE (channel_id, user_id)
);
CREATE INDEX sessions_by_user ON sessions (user_id, guild_id);

-- Every stored message, verbatim, with its token count computed once.
CREATE TABLE messages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  BIGINT  NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    discord_id  BIGINT  UNIQUE,                       -- a redelivered event is stored once
    guild_id    BIGINT,
    channel_id  BIGINT  NOT NULL,
    user_id     BIGINT  NOT NULL,                     -- the session's user, also for replies
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT    NOT NULL,
    tokens      INTEGER NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX messages_by_session ON messages (session_id, id);
CREATE INDEX messages_by_user ON messages (user_id, guild_id);

-- Facts a user stated about themself, per space (a server id, or 0 for DMs).
-- A superseded fact keeps its row with valid_until set, so history can be shown.
CREATE TABLE facts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT  NOT NULL,
    space_id     BIGINT  NOT NULL,
    attribute    TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    tokens       INTEGER NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    valid_until  DOUBLE PRECISION
);
CREATE INDEX facts_current ON facts (user_id, space_id, valid_until);

-- Where each fact was learned. Keeps ids only, never text.
CREATE TABLE fact_sources (
    fact_id             BIGINT NOT NULL REFERENCES facts (id) ON DELETE CASCADE,
    message_id          BIGINT NOT NULL,
    discord_message_id  BIGINT,
    channel_id          BIGINT NOT NULL,
    guild_id            BIGINT,
    PRIMARY KEY (fact_id, message_id)
);
CREATE INDEX fact_sources_by_message ON fact_sources (message_id);

-- Small key/value state of the bot itself (e.g. the slash command sync fingerprint).
CREATE TABLE bot_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
