-- A message that waited for its turn (queued_messages, migration 11) leaves the queue in the
-- statement that stores it: the trigger deletes its row, where a second statement, one more
-- trip to the database, did. Users who send a few messages in a row wait like this often.
CREATE TRIGGER messages_leave_queue AFTER INSERT ON messages
    WHEN new.role = 'user' AND new.discord_id IS NOT NULL
BEGIN
    DELETE FROM queued_messages WHERE discord_id = new.discord_id;
END;
