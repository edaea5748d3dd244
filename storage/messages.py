"""Messages and the sessions they belong to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database, Row, Transaction
from storage.erasures import (
    FENCE_SQL,
    SESSION_FENCE_SQL,
    ErasedMeanwhile,
    erasure_lock,
    fence_in,
    fence_params,
)
from storage.errors import IntegrityViolation
from storage.models import Role, Session, SessionKey, SessionStats, StoredMessage

_MESSAGE_COLUMNS = (
    "id, session_id, discord_id, guild_id, channel_id, user_id, role, content, tokens, created_at,"
    " place_id"
)
_SESSION_COLUMNS = (
    "id, guild_id, channel_id, user_id, summary, summary_tokens, summary_updated_at,"
    " summarized_through, facts_through, " + SESSION_FENCE_SQL + " AS fence"
)

# A message into its (channel, user) session; ignored when its Discord id is already stored.
_INSERT_INTO_SESSION = (
    "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id,"
    " role, content, tokens, created_at, place_id, reply_to, shown_as)"
    " SELECT id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM sessions"
    " WHERE channel_id = ? AND user_id = ?{}"
    " ON CONFLICT (discord_id) DO NOTHING RETURNING id, session_id"
)
INSERT_INTO_SESSION = _INSERT_INTO_SESSION.format("")
# The same, only while the session's erasure fence is the one the caller read.
INSERT_INTO_FENCED_SESSION = _INSERT_INTO_SESSION.format(f" AND {FENCE_SQL} = ?")


class MessageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        key: SessionKey,
        *,
        role: Role,
        content: str,
        tokens: int,
        discord_id: int | None,
        now: float,
        fence: int | None = None,
        reply_to: int | None = None,
        shown_as: Sequence[int] = (),
        place_id: int | None = None,
    ) -> StoredMessage | None:
        """Store a message, creating its session on first use.

        `fence` is the session's erasure fence read when the turn began (None: the current
        one, for callers with nothing in flight). Raises ErasedMeanwhile, storing nothing and
        creating no session, when the user's memory was erased since. Returns None when a
        message with this Discord id is already stored (a redelivered gateway event), so the
        caller answers each message once.

        An answer records the stored message it answers (`reply_to`, its id) and the Discord
        messages that show it (`shown_as`): deleting the message deletes the answer too.

        `place_id` is the place whose audience heard it (`bot.policy.audience`); None: the
        channel itself.
        """
        place = place_id if place_id is not None else key.channel_id
        values = (
            discord_id,
            key.guild_id,
            key.channel_id,
            key.user_id,
            role,
            content,
            tokens,
            now,
            place,
        )
        links = (reply_to, " ".join(str(i) for i in shown_as) or None)
        # Fast path, one statement: the session usually exists already.
        if fence is None:
            row = await self._db.write_one(
                INSERT_INTO_SESSION, (*values, *links, key.channel_id, key.user_id)
            )
        else:
            try:
                row = await self._db.write_one(
                    INSERT_INTO_FENCED_SESSION,
                    (*values, *links, key.channel_id, key.user_id, *fence_params(key), fence),
                )
            except IntegrityViolation as error:
                # PostgreSQL, READ COMMITTED: the session was deleted by an erasure that
                # committed after this statement's snapshot; its foreign key refused the row.
                raise ErasedMeanwhile(f"session of user {key.user_id} erased meanwhile") from error
        if row is not None:
            return StoredMessage(row["id"], row["session_id"], *values)
        # No row: a new session, a redelivered message, or (fenced) an erasure since.
        row = await self._add_with_new_session(key, (*values, *links), now, fence)
        if row is None:
            return None
        return StoredMessage(row["id"], row["session_id"], *values)

    async def _add_with_new_session(
        self, key: SessionKey, values: tuple[object, ...], now: float, fence: int | None
    ) -> Row | None:
        async with self._db.transaction() as tx:
            if fence is not None:
                await tx.lock_key(erasure_lock(key.user_id), shared=True)
            current = await fence_in(tx, key)
            if fence is not None and current != fence:
                raise ErasedMeanwhile(f"session of user {key.user_id} erased meanwhile")
            await tx.execute(
                "INSERT INTO sessions (guild_id, channel_id, user_id, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (channel_id, user_id) DO NOTHING",
                (key.guild_id, key.channel_id, key.user_id, now),
            )
            return await tx.fetch_one(INSERT_INTO_SESSION, (*values, key.channel_id, key.user_id))

    async def newest(
        self, session_id: int, *, after_id: int, before_id: int | None = None, limit: int = 64
    ) -> list[StoredMessage]:
        """Up to `limit` messages with after_id < id < before_id, newest first (on the index)."""
        upper = before_id if before_id is not None else 2**63 - 1
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND id > ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (session_id, after_id, upper, limit),
        )
        return [_message(row) for row in rows]

    async def oldest(
        self, session_id: int, *, after_id: int, limit: int, role: Role | None = None
    ) -> list[StoredMessage]:
        """Up to `limit` messages after `after_id`, oldest first (optionally of one role)."""
        role_clause = "AND role = ?" if role else ""
        params: tuple[object, ...] = (session_id, after_id, *((role,) if role else ()), limit)
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND id > ?"
            f" {role_clause} ORDER BY id LIMIT ?",
            params,
        )
        return [_message(row) for row in rows]

    async def by_ids(self, ids: Sequence[int]) -> list[StoredMessage]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks}) ORDER BY id", ids
        )
        return [_message(row) for row in rows]

    async def stats(self, session: Session) -> SessionStats:
        row = await self._db.fetch_one(
            "SELECT COUNT(*) AS total,"
            " COALESCE(SUM(CASE WHEN id > ?1 THEN 1 ELSE 0 END), 0) AS unsummarized,"
            " COALESCE(SUM(CASE WHEN id > ?1 THEN tokens ELSE 0 END), 0) AS tokens,"
            " COALESCE(SUM(CASE WHEN id > ?2 AND role = 'user' THEN 1 ELSE 0 END), 0) AS unread"
            " FROM messages WHERE session_id = ?3",
            (session.summarized_through, session.facts_through, session.id),
        )
        assert row is not None
        return SessionStats(row["total"], row["unsummarized"], row["tokens"], row["unread"])

    async def pending(self, session: Session) -> tuple[int, int]:
        """(unsummarized tokens, user messages not yet read for facts), scanning only the
        range past the older watermark, on the (session_id, id) index."""
        older = min(session.summarized_through, session.facts_through)
        row = await self._db.fetch_one(
            "SELECT COALESCE(SUM(CASE WHEN id > ?1 THEN tokens ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN id > ?2 AND role = 'user' THEN 1 ELSE 0 END), 0)"
            " FROM messages WHERE session_id = ?3 AND id > ?4",
            (session.summarized_through, session.facts_through, session.id, older),
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def awaiting_reply(self, *, since: float) -> list[StoredMessage]:
        """User messages stored since `since` whose answer never was (a process died between
        storing and answering), oldest first, on the partial index of waiting rows."""
        rows = await self._db.fetch_all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE reply_pending = 1 AND role = 'user' AND created_at >= ? ORDER BY id",
            (since,),
        )
        return [_message(row) for row in rows]

    async def settle(self, message_id: int) -> None:
        """The message needs no answer any more (the user was told why there is none)."""
        await self._db.write_one(
            "UPDATE messages SET reply_pending = 0 WHERE id = ? AND reply_pending = 1",
            (message_id,),
        )

    async def exists(self, discord_id: int) -> bool:
        """Whether a message with this Discord id is stored (one indexed read)."""
        row = await self._db.fetch_one("SELECT 1 FROM messages WHERE discord_id = ?", (discord_id,))
        return row is not None

    async def edit(self, discord_id: int, content: str, tokens: int) -> MessageEdit | None:
        """Replace a stored user message's text after the user edited it in Discord, and undo
        what was learned from the old text. None when no such message is stored.

        In one transaction: the new text; every fact citing the message withdrawn and the
        session's facts watermark moved back before it (so the new text is read again); the
        summary reset if it covered the message (to be rebuilt, as after a deletion).
        """
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT m.id, m.session_id, m.content, m.id <= s.summarized_through AS summarized,"
                " m.id <= s.facts_through AS read_for_facts"
                " FROM messages m JOIN sessions s ON s.id = m.session_id"
                " WHERE m.discord_id = ? AND m.role = 'user'",
                (discord_id,),
            )
            if row is None:
                return None
            if row["content"] == content:
                return MessageEdit(row["session_id"], changed=False)
            await tx.execute(
                "UPDATE messages SET content = ?, tokens = ? WHERE id = ?",
                (content, tokens, row["id"]),
            )
            withdrawn = await tx.execute(
                "DELETE FROM facts WHERE id IN"
                " (SELECT fact_id FROM fact_sources WHERE message_id = ?)",
                (row["id"],),
            )
            if row["read_for_facts"]:
                await tx.execute(
                    "UPDATE sessions SET facts_through = ? WHERE id = ? AND facts_through >= ?",
                    (row["id"] - 1, row["session_id"], row["id"]),
                )
            if row["summarized"]:
                await _reset_summary(tx, row["session_id"])
            await _revise(tx, row["session_id"])
        await self._db.checkpoint()  # the old text must leave the file
        return MessageEdit(
            row["session_id"],
            changed=True,
            summary_reset=bool(row["summarized"]),
            facts_reread=bool(row["read_for_facts"]),
            facts_withdrawn=withdrawn,
        )

    async def user_text(self, discord_id: int) -> str | None:
        """The stored text of a user's message, by its Discord id (None when not stored)."""
        row = await self._db.fetch_one(
            "SELECT content FROM messages WHERE discord_id = ? AND role = 'user'", (discord_id,)
        )
        return None if row is None else str(row["content"])

    async def replace_text(
        self, key: SessionKey, message_id: int, old: str, new: str, tokens: int, *, fence: int
    ) -> bool:
        """Put `new` in place of a message's text `old` (an image's description joining its
        record), only while the text is still `old` and the user's erasure fence is `fence`."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE messages SET content = ?, tokens = ? WHERE id = ? AND content = ?"
                f" AND {FENCE_SQL} = ?",
                (new, tokens, message_id, old, *fence_params(key), fence),
            )
        return bool(changed)

    async def delete_by_discord_id(self, discord_id: int) -> MessageDeletion | None:
        """Delete a message the user deleted in Discord, with what was derived from it alone.

        In one transaction: the row, every fact whose only source it was, and the session's
        summary if it covered the message (reset, to be rebuilt from what remains).
        """
        # Most deletions in a server are of messages never stored: answer those with a read.
        if (
            await self._db.fetch_one("SELECT 1 FROM messages WHERE discord_id = ?", (discord_id,))
            is None
        ):
            return None
        async with self._db.transaction() as tx:
            found = await tx.fetch_one(
                "SELECT session_id FROM messages WHERE discord_id = ?", (discord_id,)
            )
            if found is None:
                return None
            # A summary or extraction of this session landing between our read and our
            # writes would keep the text: hold the session (see save_summary).
            await tx.lock_row("sessions", found["session_id"])
            row = await tx.fetch_one(
                "SELECT m.id, m.session_id, m.id <= s.summarized_through AS summarized"
                " FROM messages m JOIN sessions s ON s.id = m.session_id WHERE m.discord_id = ?",
                (discord_id,),
            )
            if row is None:
                return None
            facts = await tx.execute(
                "DELETE FROM facts WHERE id IN"
                " (SELECT fact_id FROM fact_sources WHERE message_id = ?1)"
                " AND NOT EXISTS (SELECT 1 FROM fact_sources other WHERE other.fact_id = facts.id"
                " AND other.message_id != ?1)",
                (row["id"],),
            )
            # The answers to it go too: they may repeat it ("your PIN is 1234").
            answers = await tx.fetch_all(
                "SELECT channel_id, shown_as FROM messages WHERE reply_to = ?", (row["id"],)
            )
            await tx.execute("DELETE FROM messages WHERE id = ?1 OR reply_to = ?1", (row["id"],))
            if row["summarized"]:
                await _reset_summary(tx, row["session_id"])
            await _revise(tx, row["session_id"])
        await self._db.checkpoint()
        shown = tuple(
            (int(answer["channel_id"]), int(part))
            for answer in answers
            for part in (answer["shown_as"] or "").split()
        )
        return MessageDeletion(row["session_id"], bool(row["summarized"]), facts, shown)

    async def delete_answer(self, message_id: int) -> None:
        """Withdraw an answer just stored to a message deleted meanwhile (it may repeat it)."""
        await self._db.write_one(
            "DELETE FROM messages WHERE id = ? AND role = 'assistant'", (message_id,)
        )
        await self._db.checkpoint()

    async def delete_expired(self, older_than: float) -> int:
        """Retention: delete raw messages older than the cutoff that a summary already holds;
        never one that is not yet summarized."""
        async with self._db.transaction(maintenance=True) as tx:
            deleted = await tx.execute(
                "DELETE FROM messages WHERE created_at < ? AND id <= (SELECT summarized_through"
                " FROM sessions WHERE sessions.id = messages.session_id)",
                (older_than,),
            )
        if deleted:
            await self._db.checkpoint()
        return deleted

    async def delete_beyond_recent(
        self, session_id: int, *, keep_tokens: int, message_cap: int
    ) -> int:
        """Keep only the newest messages of a session that fit in `keep_tokens` (each counted
        at most `message_cap`, as a prompt would); delete the older ones. For servers with
        memory off, whose messages are kept only as long as a window can use them."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM messages WHERE session_id = ? AND id < (SELECT MIN(id) FROM"
                " (SELECT id, SUM(CASE WHEN tokens > ? THEN ? ELSE tokens END)"
                " OVER (ORDER BY id DESC) AS running FROM messages WHERE session_id = ?) recent"
                " WHERE running <= ?)",
                (session_id, message_cap, message_cap, session_id, keep_tokens),
            )


@dataclass(frozen=True, slots=True)
class MessageEdit:
    session_id: int
    changed: bool
    summary_reset: bool = False
    facts_reread: bool = False
    facts_withdrawn: int = 0


@dataclass(frozen=True, slots=True)
class MessageDeletion:
    session_id: int
    summary_reset: bool
    facts_deleted: int
    # The bot's Discord messages (channel id, message id) that showed the deleted answers.
    answers_shown_as: tuple[tuple[int, int], ...] = ()


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, session_id: int) -> Session | None:
        row = await self._db.fetch_one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        )
        return _session(row) if row else None

    async def find(self, channel_id: int, user_id: int) -> Session | None:
        row = await self._db.fetch_one(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE channel_id = ? AND user_id = ?",
            (channel_id, user_id),
        )
        return _session(row) if row else None

    async def lagging(self, summary_trigger_tokens: int) -> list[tuple[int, bool, bool]]:
        """Sessions whose background work lags: (id, summary due, facts unread)."""
        unsummarized = "SUM(CASE WHEN m.id > s.summarized_through THEN m.tokens ELSE 0 END)"
        unread = "SUM(CASE WHEN m.id > s.facts_through AND m.role = 'user' THEN 1 ELSE 0 END)"
        rows = await self._db.fetch_all(
            f"SELECT s.id, {unsummarized} AS unsummarized, {unread} AS unread"
            " FROM sessions s JOIN messages m ON m.session_id = s.id"
            " AND m.id > CASE WHEN s.summarized_through < s.facts_through"
            " THEN s.summarized_through ELSE s.facts_through END"
            # PostgreSQL allows no select alias in HAVING: the expressions again.
            f" GROUP BY s.id HAVING {unsummarized} > ? OR {unread} > 0",
            (summary_trigger_tokens,),
        )
        return [
            (row["id"], row["unsummarized"] > summary_trigger_tokens, row["unread"] > 0)
            for row in rows
        ]

    async def save_summary(
        self,
        session_id: int,
        *,
        expected_through: int,
        new_through: int,
        summary: str,
        tokens: int,
        now: float,
        fence: int | None = None,
    ) -> bool:
        """Replace the summary and move its watermark in one transaction.

        Only lands if the watermark is still where the job read it (compare-and-set), only
        while the folded messages still exist, and only while the session's erasure fence is
        `fence` (the one read with the session): a session erased meanwhile gets nothing.
        """
        async with self._db.transaction() as tx:
            # Held until commit, so a deletion of a folded message (which holds it too)
            # runs wholly before this check or wholly after this write.
            await tx.lock_row("sessions", session_id)
            still_there = await tx.fetch_one(
                "SELECT 1 FROM messages WHERE session_id = ? AND id = ?", (session_id, new_through)
            )
            if still_there is None:
                return False
            fenced = f" AND {SESSION_FENCE_SQL} = ?" if fence is not None else ""
            changed = await tx.execute(
                "UPDATE sessions SET summary = ?, summary_tokens = ?, summary_updated_at = ?,"
                f" summarized_through = ? WHERE id = ? AND summarized_through = ?{fenced}",
                (summary, tokens, now, new_through, session_id, expected_through)
                + ((fence,) if fence is not None else ()),
            )
        return changed == 1


async def _reset_summary(tx: Transaction, session_id: int) -> None:
    """Forget a summary that holds text no longer true; the summarizer rebuilds it."""
    await tx.execute(
        "UPDATE sessions SET summary = '', summary_tokens = 0,"
        " summary_updated_at = NULL, summarized_through = 0 WHERE id = ?",
        (session_id,),
    )


async def _revise(tx: Transaction, session_id: int) -> None:
    """A message of the session changed: background work that read it before lands nothing."""
    await tx.execute("UPDATE sessions SET revision = revision + 1 WHERE id = ?", (session_id,))


def _message(row: Row) -> StoredMessage:
    # Positional: _MESSAGE_COLUMNS lists the fields in StoredMessage's order, and building
    # 64 records by column name is measurable on the reply path.
    return StoredMessage(*row)


def _session(row: Row) -> Session:
    return Session(
        row["id"],
        row["guild_id"],
        row["channel_id"],
        row["user_id"],
        row["summary"],
        row["summary_tokens"],
        row["summary_updated_at"],
        row["summarized_through"],
        row["facts_through"],
        row["fence"],
    )
