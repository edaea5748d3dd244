-- (PostgreSQL twin of sqlite/0020_queued_leave_when_stored.sql.) A message that waited for its
-- turn leaves the queue in the statement that stores it: the trigger deletes its row, where a
-- second statement, one more round trip, did.
CREATE FUNCTION messages_leave_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM queued_messages WHERE discord_id = NEW.discord_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_leave_queue AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.role = 'user' AND NEW.discord_id IS NOT NULL)
    EXECUTE FUNCTION messages_leave_queue();
