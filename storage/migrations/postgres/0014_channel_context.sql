-- Channel context (bot/client/channel_log.py): whether a prompt holds the channel's recent
-- messages from everyone. NULL inherits (thread → channel → category → server → the operator's
-- CHANNEL_CONTEXT); 0/1 otherwise.
ALTER TABLE server_settings ADD COLUMN channel_context INTEGER;
ALTER TABLE channel_settings ADD COLUMN channel_context INTEGER;

-- When each erasure generation last advanced (epoch seconds).
-- The channel context is kept in memory, outside the database's fence: a line said before
-- its author's erasure (in the buffer, or read again from Discord's history after a restart)
-- is left out of every prompt from then on, on every process.
ALTER TABLE user_erasures ADD COLUMN erased_at DOUBLE PRECISION NOT NULL DEFAULT 0;
-- An erasure from before this migration counts as made now: nothing said before it comes back.
UPDATE user_erasures SET erased_at = EXTRACT(EPOCH FROM now());
