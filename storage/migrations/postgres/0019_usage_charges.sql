-- (PostgreSQL twin of sqlite/0019_usage_charges.sql.) One model call's tokens, charged in one
-- statement (storage/usage.py): a row inserted here adds them to the user's and the server's
-- day (usage_daily) and to the member's (usage_members), atomically, in one round trip where
-- a transaction of three statements took four. The view holds nothing; only its trigger acts.
-- per_user / per_member: 0 leaves that counter alone (a user who paused their memory).
CREATE VIEW usage_charges (day, user_id, guild_id, tokens, per_user, per_member) AS
    SELECT NULL::text, NULL::bigint, NULL::bigint, NULL::bigint, NULL::integer, NULL::integer
    WHERE false;
CREATE FUNCTION usage_charges_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.per_user <> 0 THEN
        INSERT INTO usage_daily (day, scope, scope_id, tokens)
            VALUES (NEW.day, 'user', NEW.user_id, NEW.tokens)
            ON CONFLICT (day, scope, scope_id)
            DO UPDATE SET tokens = usage_daily.tokens + excluded.tokens;
    END IF;
    IF NEW.guild_id IS NOT NULL THEN
        INSERT INTO usage_daily (day, scope, scope_id, tokens)
            VALUES (NEW.day, 'guild', NEW.guild_id, NEW.tokens)
            ON CONFLICT (day, scope, scope_id)
            DO UPDATE SET tokens = usage_daily.tokens + excluded.tokens;
        IF NEW.per_member <> 0 THEN
            INSERT INTO usage_members (day, guild_id, user_id, tokens)
                VALUES (NEW.day, NEW.guild_id, NEW.user_id, NEW.tokens)
                ON CONFLICT (guild_id, day, user_id)
                DO UPDATE SET tokens = usage_members.tokens + excluded.tokens;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER usage_charges_add INSTEAD OF INSERT ON usage_charges
    FOR EACH ROW EXECUTE FUNCTION usage_charges_add();
