-- One current value per (user, space, attribute), enforced by the database and not only by
-- the single writer: several processes on PostgreSQL write facts at once, and the SQLite
-- schema keeps the same rule. (0004-0006 are taken by work on other branches.)
-- Should an old database hold two current values of one attribute, the older ones are
-- closed first (a no-op on any database written by Mnemo, which never made such pairs).
UPDATE facts SET valid_until = created_at
WHERE valid_until IS NULL AND EXISTS (
    SELECT 1 FROM facts newer
    WHERE newer.user_id = facts.user_id AND newer.space_id = facts.space_id
      AND newer.attribute = facts.attribute AND newer.valid_until IS NULL
      AND newer.id > facts.id
);
CREATE UNIQUE INDEX facts_one_current ON facts (user_id, space_id, attribute)
    WHERE valid_until IS NULL;
