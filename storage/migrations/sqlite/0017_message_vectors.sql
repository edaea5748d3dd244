-- Hybrid recall (EMBEDDING_MODEL): one vector per message, little-endian float32, unit length,
-- computed in the background; written only with EMBEDDING_MODEL set. Scoped like the words:
-- by user and space (a server id, or 0 for DMs). `model` names the model that made it: recall
-- searches only the current model's vectors, and a message whose vector is another model's is
-- embedded again. A vector is derived from its message's text: it goes with the message
-- (ON DELETE CASCADE: deletions, erasures, retention) and with the old text of an edit (the
-- trigger; the message is embedded again). `id` only grows: a new vector (a message embedded
-- again too) gets a new one, so (COUNT, MAX(id)) of a scope tells a cache it is stale.
CREATE TABLE message_vectors (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL,
    space_id    INTEGER NOT NULL,
    model       TEXT    NOT NULL,
    vector      BLOB    NOT NULL
);
CREATE INDEX message_vectors_by_scope ON message_vectors (user_id, space_id, model, id);

CREATE TRIGGER message_vectors_on_edit AFTER UPDATE OF content ON messages
WHEN old.content IS NOT new.content
BEGIN
    DELETE FROM message_vectors WHERE message_id = new.id;
END;
