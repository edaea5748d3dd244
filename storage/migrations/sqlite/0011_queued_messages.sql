-- A user's message that arrives while an earlier message of the same conversation is being
-- answered waits for its turn before it is stored. So that a process killed meanwhile does
-- not lose it, its arrival is written here (ids only, never its text) until its turn ends;
-- after a restart the process owning its shard fetches it from Discord and answers it.
CREATE TABLE queued_messages (
    discord_id INTEGER PRIMARY KEY,
    guild_id INTEGER,
    channel_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    fence INTEGER NOT NULL,  -- the erasure fence read on arrival: changed since, not answered
    arrived_at REAL NOT NULL
);
CREATE INDEX queued_messages_user ON queued_messages (user_id);
