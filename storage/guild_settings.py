"""What each server's admins chose (access, answer mode, persona, model, memory) and each
user's memory pause.

Written in portable SQL (`INSERT … ON CONFLICT … DO UPDATE`, `?` parameters, 0/1 integers for
booleans) so the same statements run on SQLite and PostgreSQL. Column names in the few
f-strings below come only from the fixed sets here, never from user input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from storage.database import Database, Row

Access = Literal["allow", "deny"]
AnswerMode = Literal["mention", "always"]

# Settings a server has, and what each one is when never set.
SERVER_COLUMNS = frozenset(
    {"persona", "chat_model", "memory", "notice", "threads", "channel_context"}
)
# Settings a channel (or a category, or a thread) may override; NULL means "inherit".
CHANNEL_COLUMNS = frozenset(
    {"access", "answer_mode", "threads", "persona", "chat_model", "channel_context"}
)


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """One channel's (or category's, or thread's) own settings; None: inherited."""

    channel_id: int
    access: Access | None = None
    answer_mode: AnswerMode | None = None
    threads: bool | None = None
    persona: str | None = None
    chat_model: str | None = None
    channel_context: bool | None = None


@dataclass(frozen=True, slots=True)
class ServerRules:
    """Everything one server's admins set. The defaults are a server that set nothing."""

    guild_id: int
    persona: str | None = None
    chat_model: str | None = None
    memory: bool = True
    notice: bool = False
    threads: bool = False
    channel_context: bool | None = None  # None: the operator's CHANNEL_CONTEXT
    channels: Mapping[int, ChannelRule] = field(default_factory=dict)
    roles: Mapping[int, Access] = field(default_factory=dict)
    blocked: frozenset[int] = frozenset()


class GuildSettingsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load(self, guild_id: int) -> ServerRules:
        """One server's rules (four small indexed reads; the engine caches the result)."""
        server = await self._db.fetch_one(
            "SELECT persona, chat_model, memory, notice, threads, channel_context"
            " FROM server_settings"
            " WHERE guild_id = ?",
            (guild_id,),
        )
        channels = await self._db.fetch_all(
            "SELECT channel_id, access, answer_mode, threads, persona, chat_model,"
            " channel_context FROM channel_settings WHERE guild_id = ?",
            (guild_id,),
        )
        roles = await self._db.fetch_all(
            "SELECT role_id, access FROM role_rules WHERE guild_id = ?", (guild_id,)
        )
        blocked = await self._db.fetch_all(
            "SELECT user_id FROM blocked_members WHERE guild_id = ?", (guild_id,)
        )
        base = ServerRules(guild_id)
        if server is not None:
            base = ServerRules(
                guild_id,
                persona=server["persona"],
                chat_model=server["chat_model"],
                memory=bool(server["memory"]),
                notice=bool(server["notice"]),
                threads=bool(server["threads"]),
                channel_context=_maybe_bool(server["channel_context"]),
            )
        return ServerRules(
            guild_id,
            base.persona,
            base.chat_model,
            base.memory,
            base.notice,
            base.threads,
            base.channel_context,
            channels={row["channel_id"]: _channel_rule(row) for row in channels},
            roles={row["role_id"]: row["access"] for row in roles},
            blocked=frozenset(row["user_id"] for row in blocked),
        )

    async def set_server(
        self, guild_id: int, column: str, value: str | int | None, *, now: float
    ) -> None:
        """Set (or with None, reset) one server setting."""
        if column not in SERVER_COLUMNS:
            raise ValueError(f"unknown server setting {column!r}")
        if value is None and column in ("memory", "notice", "threads"):
            value = {"memory": 1, "notice": 0, "threads": 0}[column]
        await self._db.write_one(
            f"INSERT INTO server_settings (guild_id, {column}, updated_at) VALUES (?, ?, ?)"
            f" ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column},"
            " updated_at = excluded.updated_at",
            (guild_id, value, now),
        )

    async def set_channel(
        self, guild_id: int, channel_id: int, column: str, value: str | int | None, *, now: float
    ) -> None:
        """Set (or with None, reset to inherited) one setting of a channel or category."""
        if column not in CHANNEL_COLUMNS:
            raise ValueError(f"unknown channel setting {column!r}")
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO channel_settings (guild_id, channel_id, {column}, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, channel_id)"
                f" DO UPDATE SET {column} = excluded.{column}, updated_at = excluded.updated_at",
                (guild_id, channel_id, value, now),
            )
            # A channel with nothing of its own left has no row.
            await tx.execute(
                "DELETE FROM channel_settings WHERE guild_id = ? AND channel_id = ?"
                " AND access IS NULL AND answer_mode IS NULL AND threads IS NULL"
                " AND persona IS NULL AND chat_model IS NULL AND channel_context IS NULL",
                (guild_id, channel_id),
            )

    async def set_role(self, guild_id: int, role_id: int, access: Access | None) -> None:
        if access is None:
            await self._db.write_one(
                "DELETE FROM role_rules WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
            )
            return
        await self._db.write_one(
            "INSERT INTO role_rules (guild_id, role_id, access) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, role_id) DO UPDATE SET access = excluded.access",
            (guild_id, role_id, access),
        )

    async def set_blocked(
        self, guild_id: int, user_id: int, blocked: bool, *, by: int, now: float
    ) -> None:
        if not blocked:
            await self._db.write_one(
                "DELETE FROM blocked_members WHERE guild_id = ? AND user_id = ?",
                (guild_id, user_id),
            )
            return
        await self._db.write_one(
            "INSERT INTO blocked_members (guild_id, user_id, blocked_by, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, user_id) DO NOTHING",
            (guild_id, user_id, by, now),
        )

    # -- a user's memory pause --------------------------------------------------------------

    async def is_paused(self, user_id: int) -> bool:
        row = await self._db.fetch_one("SELECT 1 FROM memory_pauses WHERE user_id = ?", (user_id,))
        return row is not None

    async def paused_among(self, user_ids: Sequence[int]) -> set[int]:
        """Which of these users paused their memory (one statement)."""
        if not user_ids:
            return set()
        ids = sorted(set(user_ids))
        marks = ", ".join("?" * len(ids))
        rows = await self._db.fetch_all(
            f"SELECT user_id FROM memory_pauses WHERE user_id IN ({marks})", tuple(ids)
        )
        return {int(row[0]) for row in rows}

    async def set_paused(self, user_id: int, paused: bool, *, now: float) -> bool:
        """Pause or resume; returns whether anything changed."""
        if paused:
            row = await self._db.write_one(
                "INSERT INTO memory_pauses (user_id, paused_at) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                (user_id, now),
            )
        else:
            row = await self._db.write_one(
                "DELETE FROM memory_pauses WHERE user_id = ? RETURNING user_id", (user_id,)
            )
        return row is not None


def _maybe_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _channel_rule(row: Row) -> ChannelRule:
    threads = row["threads"]
    return ChannelRule(
        row["channel_id"],
        access=row["access"],
        answer_mode=row["answer_mode"],
        threads=None if threads is None else bool(threads),
        persona=row["persona"],
        chat_model=row["chat_model"],
        channel_context=_maybe_bool(row["channel_context"]),
    )
