-- Recall on PostgreSQL (the twin of sqlite/0005_recall.sql): one GIN index over each message's
-- words ('simple' configuration: no language's stemming or stopwords, so any language is
-- matched word for word) together with its user and space, so a search is one indexed
-- statement that only ever reads that person's rows in that space. An expression index needs
-- no triggers: every insert, edit and deletion keeps it in step, cascades included.
-- btree_gin lets the GIN index hold the two id columns beside the words.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX messages_recall ON messages USING GIN (
    user_id, (COALESCE(guild_id, 0)), (to_tsvector('simple', content))
);
