-- Every message insert updates every index of the table. Per-user and per-server reads
-- (export, deletion, admin stats) go through sessions instead, on messages_by_session.
DROP INDEX messages_by_user;
-- Admin stats find a server's sessions by guild.
CREATE INDEX sessions_by_guild ON sessions (guild_id);
