-- One model call's tokens, charged in one statement (storage/usage.py): a row inserted here
-- adds them to the user's and the server's day (usage_daily) and to the member's
-- (usage_members), as one atomic statement and one trip to the database thread, where a
-- transaction of three statements took four. The view holds nothing; only its trigger acts.
-- per_user / per_member: 0 leaves that counter alone (a user who paused their memory).
CREATE VIEW usage_charges (day, user_id, guild_id, tokens, per_user, per_member) AS
    SELECT NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER usage_charges_add INSTEAD OF INSERT ON usage_charges
BEGIN
    INSERT INTO usage_daily (day, scope, scope_id, tokens)
        SELECT NEW.day, 'user', NEW.user_id, NEW.tokens WHERE NEW.per_user
        ON CONFLICT (day, scope, scope_id)
        DO UPDATE SET tokens = usage_daily.tokens + excluded.tokens;
    INSERT INTO usage_daily (day, scope, scope_id, tokens)
        SELECT NEW.day, 'guild', NEW.guild_id, NEW.tokens WHERE NEW.guild_id IS NOT NULL
        ON CONFLICT (day, scope, scope_id)
        DO UPDATE SET tokens = usage_daily.tokens + excluded.tokens;
    INSERT INTO usage_members (day, guild_id, user_id, tokens)
        SELECT NEW.day, NEW.guild_id, NEW.user_id, NEW.tokens
        WHERE NEW.guild_id IS NOT NULL AND NEW.per_member
        ON CONFLICT (guild_id, day, user_id)
        DO UPDATE SET tokens = usage_members.tokens + excluded.tokens;
END;
