-- "Forget this" (cogs/pointed.py) forgets a message that stays on Discord: the author's own,
-- which the bot cannot delete there. The channel context (bot/client/channel_log.py) reads a
-- channel's history again after a restart, and would find the line again: so its id is kept
-- here, ids and a time only, and the line stays out of every prompt, on every process. A mark
-- lives as long as a line can stay in the channel context (24 hours).
CREATE TABLE forgotten_messages (
    discord_id BIGINT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    forgotten_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX forgotten_messages_by_time ON forgotten_messages (forgotten_at);
