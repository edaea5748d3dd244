"""Facts users stated about themselves, with their history and sources."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from storage.database import Database, Row, Transaction
from storage.erasures import SESSION_FENCE_SQL
from storage.errors import RetryableStorageError
from storage.models import Fact, FactSource, NewFact

# Attempts at storing one fact against concurrent writers of the same attribute.
_STORE_ATTEMPTS = 3

_FACT_COLUMNS = "id, user_id, space_id, attribute, value, tokens, created_at, valid_until, place_id"


class FactRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def current(
        self, user_id: int, space_id: int, places: Collection[int] | None = None
    ) -> list[Fact]:
        """The facts in force for this user in this space, oldest first.

        With `places`, only the facts learned in those places (the audience rule of
        `bot.policy.audience`), and of an attribute known in several of them the newest value
        only. None: every place of the space (DMs; `/memory export` reads `history`).
        """
        rows = await self._db.fetch_all(
            f"SELECT {_FACT_COLUMNS} FROM facts"
            " WHERE user_id = ? AND space_id = ? AND valid_until IS NULL ORDER BY id",
            (user_id, space_id),
        )
        facts = [_fact(row) for row in rows]
        if places is None:
            return facts
        newest = {fact.attribute: fact.id for fact in facts if fact.place_id in places}
        return [fact for fact in facts if newest.get(fact.attribute) == fact.id]

    async def history(self, user_id: int) -> list[Fact]:
        """Every fact of the user in every space, superseded ones included."""
        rows = await self._db.fetch_all(
            f"SELECT {_FACT_COLUMNS} FROM facts WHERE user_id = ? ORDER BY id", (user_id,)
        )
        return [_fact(row) for row in rows]

    async def sources(self, fact_ids: Sequence[int]) -> dict[int, list[FactSource]]:
        if not fact_ids:
            return {}
        marks = ",".join("?" * len(fact_ids))
        rows = await self._db.fetch_all(
            "SELECT fact_id, message_id, discord_message_id, channel_id, guild_id"
            f" FROM fact_sources WHERE fact_id IN ({marks}) ORDER BY fact_id, message_id",
            fact_ids,
        )
        found: dict[int, list[FactSource]] = {}
        for row in rows:
            found.setdefault(row["fact_id"], []).append(
                FactSource(
                    row["message_id"],
                    row["discord_message_id"],
                    row["channel_id"],
                    row["guild_id"],
                )
            )
        return found

    async def save_extraction(
        self,
        session_id: int,
        *,
        user_id: int,
        space_id: int,
        expected_through: int,
        new_through: int,
        facts: Sequence[NewFact],
        now: float,
        fence: int | None = None,
    ) -> bool:
        """Store the facts of one extraction and move the session's facts watermark.

        All in one transaction, and only if the watermark is where the job read it: a job that
        lost a race, or whose session was erased since it read `fence` (the session's erasure
        fence, read with the session), writes nothing. A fact whose source messages were deleted
        meanwhile is dropped.
        """
        fenced = f" AND {SESSION_FENCE_SQL} = ?" if fence is not None else ""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE sessions SET facts_through = ? WHERE id = ? AND facts_through = ?{fenced}",
                (new_through, session_id, expected_through)
                + ((fence,) if fence is not None else ()),
            )
            if changed != 1:
                return False
            # In attribute order: concurrent extractions take the attribute locks in one order.
            for fact in sorted(facts, key=lambda fact: fact.attribute):
                if await _sources_exist(tx, fact):
                    await _store_fact(tx, user_id, space_id, fact, now)
        return True


async def _sources_exist(tx: Transaction, fact: NewFact) -> bool:
    ids = [source.id for source in fact.sources]
    marks = ",".join("?" * len(ids))
    row = await tx.fetch_one(f"SELECT COUNT(*) FROM messages WHERE id IN ({marks})", ids)
    return row is not None and row[0] == len(ids)


async def _store_fact(
    tx: Transaction, user_id: int, space_id: int, fact: NewFact, now: float
) -> None:
    """Insert a fact unless it is already known; supersede the attribute's old value in the
    place it was learned in (its sources' place: each place keeps its own current value).

    The unique index `facts_one_current` allows one current value per (user, space, place,
    attribute), whatever the writers do. Writers of one attribute take its lock first, so
    that under a connection pool they run one after the other (last writer wins), as on
    SQLite, whose writers always do; the guarded writes below would only miss if something
    wrote the attribute without the lock, and then we read again.
    """
    place = fact.sources[-1].place
    await tx.lock_key(f"fact:{user_id}:{space_id}:{place}:{fact.attribute}")
    for _ in range(_STORE_ATTEMPTS):
        current = await tx.fetch_one(
            "SELECT id, value FROM facts WHERE user_id = ? AND space_id = ? AND place_id = ?"
            " AND attribute = ? AND valid_until IS NULL",
            (user_id, space_id, place, fact.attribute),
        )
        if current is not None and current["value"].casefold() == fact.value.casefold():
            return  # an exact duplicate: keep the first, with its original sources
        if current is not None and not await tx.execute(
            "UPDATE facts SET valid_until = ? WHERE id = ? AND valid_until IS NULL",
            (now, current["id"]),
        ):
            continue  # superseded meanwhile by another writer
        fact_id = await tx.insert(
            "INSERT INTO facts (user_id, space_id, place_id, attribute, value, tokens,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, space_id, place_id, attribute) WHERE valid_until IS NULL"
            " DO NOTHING RETURNING id",
            (user_id, space_id, place, fact.attribute, fact.value, fact.tokens, now),
        )
        if fact_id is None:
            continue  # another writer's current value landed first
        await tx.executemany(
            "INSERT INTO fact_sources (fact_id, message_id, discord_message_id,"
            " channel_id, guild_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(fact_id, s.id, s.discord_id, s.channel_id, s.guild_id) for s in fact.sources],
        )
        return
    raise RetryableStorageError(f"fact {fact.attribute!r} kept changing under this write")


def _fact(row: Row) -> Fact:
    return Fact(
        row["id"],
        row["user_id"],
        row["space_id"],
        row["attribute"],
        row["value"],
        row["tokens"],
        row["created_at"],
        row["valid_until"],
        row["place_id"] if row["place_id"] is not None else 0,
    )
