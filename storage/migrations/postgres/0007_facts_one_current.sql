-- One current value per (user, space, attribute), enforced by the database: several
-- processes write facts at once, and the single-writer reasoning of SQLite does not hold.
-- Same number as sqlite/0007 (0004-0006 are taken by work on other branches).
CREATE UNIQUE INDEX facts_one_current ON facts (user_id, space_id, attribute)
    WHERE valid_until IS NULL;
