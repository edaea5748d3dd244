-- Recall ranks every message matching a query's words with ts_rank, which needs each row's
-- tsvector. Computed from the text at query time (0005's expression index), a user with a
-- long history paid a to_tsvector call per matching row on every reply: 48 ms a turn at
-- 1,200 matching messages (bench 1p). The words are now kept in a stored generated column,
-- computed once when a message is written or edited, and the GIN index is over that column.
-- The ranking is unchanged: the same tsvector, positions included, only stored.
-- Deleting a message deletes its words with it; the erasure compaction (storage/compaction.py)
-- rewrites the table and this index, so neither keeps them in its files.
-- On an existing database this rewrites the messages table once (an exclusive lock for as
-- long as that takes: a maintenance window on a large database).
ALTER TABLE messages ADD COLUMN content_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
DROP INDEX messages_recall;
CREATE INDEX messages_recall ON messages USING GIN (
    user_id, (COALESCE(guild_id, 0)), content_words
);
