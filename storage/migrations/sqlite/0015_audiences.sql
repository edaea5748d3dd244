-- Audiences (#21): each message and fact knows the place it was said in, so that memory only
-- moves toward the same or a narrower audience (docs/privacy.md, "Who hears what").
--
-- `place_id` is the place whose audience heard it: the channel; for a public thread its
-- parent channel (whoever reads the channel reads its public threads); for a private thread
-- the thread itself. Whether a place is public is not stored: it is read from Discord's
-- permissions each time memory is used, so a channel made private later stops sharing its
-- past.
--
-- Messages stored before this migration keep NULL, read as their own channel (the session's
-- channel, which they were said in): a thread's old messages count as the thread's own place,
-- the narrowest reading. No row is rewritten and the recall index is unchanged.
ALTER TABLE messages ADD COLUMN place_id INTEGER;

-- A fact's place is its sources' (one conversation, one channel). Each place keeps its own
-- current value of an attribute: a value said in private does not close the public one, and
-- where both may be used the newer wins.
ALTER TABLE facts ADD COLUMN place_id INTEGER NOT NULL DEFAULT 0;
UPDATE facts SET place_id = COALESCE(
    (SELECT MIN(s.channel_id) FROM fact_sources s WHERE s.fact_id = facts.id), 0);
DROP INDEX facts_one_current;
CREATE UNIQUE INDEX facts_one_current ON facts (user_id, space_id, place_id, attribute)
    WHERE valid_until IS NULL;
