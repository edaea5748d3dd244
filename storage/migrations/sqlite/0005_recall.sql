-- Recall: a full-text index over every stored message (both the user's and the bot's), scoped
-- by user and space inside the index itself, so a search never even reads another person's rows.
--
-- External content: the text lives only in `messages`; the index holds terms. Its content
-- "table" is the view below, and triggers keep the index in step with every write to
-- messages, so every path that inserts, edits or deletes a message (cascades from sessions
-- included) is covered. The triggers read the view, so 'rebuild', insert and 'delete' always
-- see the same values.
--
-- Two things make a scoped search cheap at a million rows:
-- * `scope` holds one token 'u<user_id>s<space_id>' (space = guild id, 0 in DMs, as facts use);
--   a search is `scope : <token> AND content : (…)`, so only that user's rows in that space
--   can match.
-- * every word of `content` carries a prefix derived from the scope ('z<n>q', n a number
--   computed from user and space ids), so each word's posting list holds one scope's rows
--   only. bm25() counts, for every query word, the rows that contain it: on plain words
--   that walk is over the whole table (tens of ms at 1 M rows); on prefixed words it is over
--   one person's rows. Two scopes may share a prefix number: that only mixes their word
--   counts, never their rows, which the scope token separates.
--   Words are found by turning the separators people type (spaces, ASCII and common Unicode
--   punctuation) into spaces and prefixing after each space; a word after a rarer separator
--   stays unprefixed, and is then simply not found by recall.
CREATE VIEW recall_source AS
    SELECT id, scope, replace(' ' || content, ' ', ' ' || prefix) AS content
    FROM (
        SELECT id, scope, prefix, replace(replace(replace(content, char(65281), ' '), char(65311), ' '), char(8203), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(8224), ' '), char(8225), ' '), char(8242), ' '), char(8243), ' '), char(12288), ' '), char(12289), ' '), char(12290), ' '), char(65292), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(8213), ' '), char(8230), ' '), char(183), ' '), char(8226), ' '), char(161), ' '), char(191), ' '), char(167), ' '), char(182), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(8221), ' '), char(8222), ' '), char(171), ' '), char(187), ' '), char(8249), ' '), char(8250), ' '), char(8211), ' '), char(8212), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(123), ' '), char(124), ' '), char(125), ' '), char(126), ' '), char(8216), ' '), char(8217), ' '), char(8218), ' '), char(8220), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(63), ' '), char(64), ' '), char(91), ' '), char(92), ' '), char(93), ' '), char(94), ' '), char(95), ' '), char(96), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(45), ' '), char(46), ' '), char(47), ' '), char(58), ' '), char(59), ' '), char(60), ' '), char(61), ' '), char(62), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(37), ' '), char(38), ' '), char(39), ' '), char(40), ' '), char(41), ' '), char(42), ' '), char(43), ' '), char(44), ' ')
        AS content FROM (
        SELECT id, scope, prefix, replace(replace(replace(replace(replace(replace(replace(replace(content, char(9), ' '), char(10), ' '), char(13), ' '), char(160), ' '), char(33), ' '), char(34), ' '), char(35), ' '), char(36), ' ')
        AS content FROM (
        SELECT id, content,
            'u' || user_id || 's' || COALESCE(guild_id, 0) AS scope,
            'z' || (((user_id % 2147483629) * 31 + COALESCE(guild_id, 0) % 2147483629)
                % 2147483629) || 'q' AS prefix
        FROM messages)))))))))
    );

-- detail=full (the default): with fewer details, bm25() re-reads and re-tokenizes each matching
-- row's text through the view (0.2 ms a row). remove_diacritics 2: 'café' finds 'cafe'.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    scope, content,
    content = 'recall_source', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, scope, content)
    SELECT id, scope, content FROM recall_source WHERE id = new.id;
END;

CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, scope, content)
    SELECT 'delete', id, scope, content FROM recall_source WHERE id = old.id;
END;

CREATE TRIGGER messages_fts_unindex BEFORE UPDATE OF content, user_id, guild_id ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, scope, content)
    SELECT 'delete', id, scope, content FROM recall_source WHERE id = old.id;
END;

CREATE TRIGGER messages_fts_reindex AFTER UPDATE OF content, user_id, guild_id ON messages
BEGIN
    INSERT INTO messages_fts (rowid, scope, content)
    SELECT id, scope, content FROM recall_source WHERE id = new.id;
END;

-- Rank by bm25 of the text column only: the scope token is in every row of a search.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('rank', 'bm25(0.0, 1.0)');

-- Index the messages stored before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
