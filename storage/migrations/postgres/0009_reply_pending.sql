-- (PostgreSQL twin of sqlite/0009_reply_pending.sql.) A user's message waits for its answer
-- until the answer is stored (or the user is told why there is none); a process killed in
-- between leaves reply_pending = 1, and the process owning the message's shard answers it after
-- its restart. New rows start pending; storing an assistant row settles its session's rows.
ALTER TABLE messages ADD COLUMN reply_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ALTER COLUMN reply_pending SET DEFAULT 1;
CREATE INDEX messages_reply_pending ON messages (id) WHERE reply_pending = 1;
CREATE FUNCTION messages_reply_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET reply_pending = 0
    WHERE session_id = NEW.session_id AND reply_pending = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_reply_settled AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'assistant') EXECUTE FUNCTION messages_reply_settled();
