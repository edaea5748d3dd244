-- An answer knows the message it answers and the Discord messages that show it, so that when
-- the user deletes their message, the answer that may repeat it ("your PIN is 1234") is deleted
-- too, here and in Discord. Ids only. Answers stored before this migration have neither.
-- reply_to: messages.id of the user message answered; shown_as: the bot's Discord message ids,
-- space-separated.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN shown_as TEXT;
CREATE INDEX messages_by_reply_to ON messages (reply_to) WHERE reply_to IS NOT NULL;
