-- (PostgreSQL twin of sqlite/0012_answer_links.sql.) An answer knows the message it answers and
-- the Discord messages that show it, so that deleting the message deletes the answer too, here
-- and in Discord. Ids only. Answers stored before this migration have neither.
-- reply_to: messages.id of the user message answered; shown_as: the bot's Discord message ids,
-- space-separated.
ALTER TABLE messages ADD COLUMN reply_to BIGINT;
ALTER TABLE messages ADD COLUMN shown_as TEXT;
CREATE INDEX messages_by_reply_to ON messages (reply_to) WHERE reply_to IS NOT NULL;
