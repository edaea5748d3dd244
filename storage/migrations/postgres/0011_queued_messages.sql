-- (PostgreSQL twin of sqlite/0011_queued_messages.sql.) A user's message waiting for its
-- turn behind an earlier message of the same conversation: ids only, never its text, kept
-- until its turn ends, so that a process killed meanwhile does not lose it.
CREATE TABLE queued_messages (
    discord_id BIGINT PRIMARY KEY,
    guild_id BIGINT,
    channel_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    fence BIGINT NOT NULL,  -- the erasure fence read on arrival: changed since, not answered
    arrived_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX queued_messages_user ON queued_messages (user_id);
