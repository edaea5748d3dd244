-- Recall: a full-text index over every stored message (both the user's and the bot's), scoped
-- by user and space inside the index itself, so a search never even reads another person's rows.
--
-- External content: the text lives only in `messages`; the index holds terms. Its content
-- "table" is a view that adds the scope token 'u<user_id>s<space_id>' (space = guild id, 0 in
-- DMs, as facts use). The triggers keep the index in step with every write to messages, so
-- every path that inserts, edits or deletes a message (cascades from sessions included) is
-- covered. The view lists exactly the indexed values, so 'rebuild' and 'delete' agree.
CREATE VIEW recall_source AS
    SELECT id, 'u' || user_id || 's' || COALESCE(guild_id, 0) AS scope, content FROM messages;

-- detail=column: no token positions (recall needs no phrase queries), a smaller index, so
-- cheaper inserts and cheaper merges after erasure. remove_diacritics 2: 'café' finds 'cafe'.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    scope, content,
    content = 'recall_source', content_rowid = 'id',
    detail = column, tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, scope, content)
    VALUES (new.id, 'u' || new.user_id || 's' || COALESCE(new.guild_id, 0), new.content);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, scope, content)
    VALUES ('delete', old.id, 'u' || old.user_id || 's' || COALESCE(old.guild_id, 0), old.content);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, user_id, guild_id ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, scope, content)
    VALUES ('delete', old.id, 'u' || old.user_id || 's' || COALESCE(old.guild_id, 0), old.content);
    INSERT INTO messages_fts (rowid, scope, content)
    VALUES (new.id, 'u' || new.user_id || 's' || COALESCE(new.guild_id, 0), new.content);
END;

-- Rank by bm25 of the text column only: the scope token is in every row of a search.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('rank', 'bm25(0.0, 1.0)');

-- Index the messages stored before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
