-- A user's message waits for its answer until the answer is stored (or the user is told why
-- there is none). A process killed in between leaves reply_pending = 1, and the process that
-- owns the message's shard answers it after its restart.
--
-- New rows start pending (the column's default); storing an assistant row settles every
-- message of its session, itself included, in the same statement (the trigger). Rows stored
-- before this migration were answered or given up on long ago: none of them is pending.
ALTER TABLE messages ADD COLUMN reply_pending INTEGER NOT NULL DEFAULT 1;
UPDATE messages SET reply_pending = 0;
CREATE INDEX messages_reply_pending ON messages (id) WHERE reply_pending = 1;
CREATE TRIGGER messages_reply_settled AFTER INSERT ON messages WHEN new.role = 'assistant'
BEGIN
    UPDATE messages SET reply_pending = 0 WHERE session_id = new.session_id AND reply_pending = 1;
END;
