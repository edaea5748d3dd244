-- Erasure generations: the durable fence of a user's memory. Every erasure bumps one row in
-- the same transaction as its deletions; every write of that user's memory carries the fence
-- it read when its work began and lands only while the fence is unchanged. So an answer still
-- being generated, a queued message or a background job can never recreate erased memory,
-- after a restart too, and in any process sharing this database.
--
-- scope is 'user' (scope_id 0: everything of the user), 'guild' (scope_id: a server, for an
-- admin's forget) or 'channel' (scope_id: a channel, i.e. the user's session there).
CREATE TABLE user_erasures (
    user_id     BIGINT  NOT NULL,
    scope       TEXT    NOT NULL CHECK (scope IN ('user', 'guild', 'channel')),
    scope_id    BIGINT  NOT NULL,
    generation  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, scope, scope_id)
);

-- A session's revision grows with every edit or deletion of one of its messages. Background work
-- that read the session before compares it (with the erasure fence) when it writes, so a summary
-- or facts drawn from text that changed meanwhile never land.
ALTER TABLE sessions ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
