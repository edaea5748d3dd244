-- (PostgreSQL twin of sqlite/0013_no_text_statistics.sql.) ANALYZE, which autovacuum runs on
-- its own, keeps samples of every column's values in the catalog pg_statistic: the most
-- common values and a histogram, for a text column whole messages, summaries and facts. No
-- erasure can reach them there (only a superuser may change that catalog), and a sample stays
-- until the next ANALYZE, its bytes after that. So no statistics are gathered on the columns
-- that hold users' text (their queries go by ids; recall by its GIN index): see
-- storage/compaction.py for what an erasure leaves on PostgreSQL and how long.
--
-- Changing a column's type to its own type drops the statistics already gathered on it,
-- without rewriting the table. `content` cannot change type while `content_words` is computed
-- from it, so `content_words` and its index are dropped and added again: on an existing
-- database this rewrites the messages table once (an exclusive lock for as long as that
-- takes, about 3 s per 100,000 messages: a maintenance window on a large database).
--
-- The statistics deleted here leave their bytes in pg_statistic's file until it is rewritten,
-- which only a superuser or the database's owner may do: the first compaction tries, once
-- (`postgres:statistics`). An existing database may also hold what was erased before this
-- version in its files: a compaction is due at once (`postgres:erased`, storage/compaction.py).
INSERT INTO bot_state (key, value)
SELECT 'postgres:statistics', 'rewrite'
WHERE EXISTS (
    SELECT 1 FROM pg_stats WHERE schemaname = current_schema()
    AND (tablename, attname) IN (('messages', 'content'), ('messages', 'content_words'),
        ('sessions', 'summary'), ('facts', 'attribute'), ('facts', 'value'))
);
INSERT INTO bot_state (key, value)
SELECT 'postgres:erased', pg_snapshot_xmax(pg_current_snapshot())::text || ' '
    || extract(epoch FROM clock_timestamp())::text
WHERE EXISTS (SELECT 1 FROM messages) OR EXISTS (SELECT 1 FROM sessions)
    OR EXISTS (SELECT 1 FROM bot_state WHERE key = 'postgres:statistics')
ON CONFLICT (key) DO NOTHING;
ALTER TABLE sessions
    ALTER COLUMN summary TYPE TEXT,
    ALTER COLUMN summary SET STATISTICS 0;
ALTER TABLE facts
    ALTER COLUMN attribute TYPE TEXT,
    ALTER COLUMN attribute SET STATISTICS 0,
    ALTER COLUMN value TYPE TEXT,
    ALTER COLUMN value SET STATISTICS 0;
DROP INDEX messages_recall;
ALTER TABLE messages DROP COLUMN content_words;
ALTER TABLE messages
    ALTER COLUMN content TYPE TEXT,
    ALTER COLUMN content SET STATISTICS 0;
ALTER TABLE messages ADD COLUMN content_words tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
ALTER TABLE messages ALTER COLUMN content_words SET STATISTICS 0;
CREATE INDEX messages_recall ON messages USING GIN (
    user_id, (COALESCE(guild_id, 0)), content_words
);
