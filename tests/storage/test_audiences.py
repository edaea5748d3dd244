"""Where memory was said (migration 0015): recall and facts read only the allowed places, the
filter applies before recall's candidates are cut, each place keeps its own current facts, and
rows from before the migration count as said in their own channel."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import Storage
from storage.database import migrations
from storage.models import NewFact, SessionKey, StoredMessage
from storage.sqlite import split_sql

pytestmark = pytest.mark.both_backends

GUILD = 100
ALICE = 1
PUBLIC, PRIVATE, PRIVATE_THREAD, PUBLIC_THREAD = 10, 11, 12, 13
_ids = iter(range(70_000, 80_000))


async def say(
    storage: Storage, channel: int, text: str, *, place: int | None = None
) -> StoredMessage:
    stored = await storage.messages.add(
        SessionKey(GUILD, channel, ALICE),
        role="user",
        content=text,
        tokens=len(text.split()),
        discord_id=next(_ids),
        now=1000.0,
        place_id=place,
    )
    assert stored is not None
    return stored


async def search(storage: Storage, places: set[int] | None, *, limit: int = 10) -> list[str]:
    hits = await storage.recall.search(
        ALICE, GUILD, ["heron"], exclude_session_id=0, exclude_from_id=0, excluded_count=0,
        now=2000.0, limit=limit, places=places,
    )  # fmt: skip
    return sorted(hit.message.content for hit in hits)


async def test_recall_reads_only_the_allowed_places(storage: Storage) -> None:
    await say(storage, PUBLIC, "heron in public")
    await say(storage, PRIVATE, "heron in private")
    await say(storage, PRIVATE_THREAD, "heron in the private thread")
    # A public thread of PUBLIC is PUBLIC's place (its audience is the channel's).
    stored = await say(storage, PUBLIC_THREAD, "heron in the public thread", place=PUBLIC)
    assert stored.place == PUBLIC

    assert await search(storage, {PUBLIC}) == ["heron in public", "heron in the public thread"]
    assert await search(storage, {PUBLIC, PRIVATE}) == [
        "heron in private",
        "heron in public",
        "heron in the public thread",
    ]
    assert await search(storage, {PUBLIC, PRIVATE_THREAD}) == [
        "heron in public",
        "heron in the private thread",
        "heron in the public thread",
    ]
    assert await search(storage, set()) == []
    assert len(await search(storage, None)) == 4  # DMs: no place filter


async def test_private_matches_never_crowd_out_a_public_one(storage: Storage) -> None:
    """The places are filtered before the best candidates are cut: twenty better private
    matches leave the one public match found."""
    for n in range(20):
        await say(storage, PRIVATE, f"heron heron heron {n}")
    await say(storage, PUBLIC, "a single heron among many other words said in public once")
    assert await search(storage, {PUBLIC}, limit=1) == [
        "a single heron among many other words said in public once"
    ]


async def extract(storage: Storage, source: StoredMessage, attribute: str, value: str) -> None:
    session = await storage.sessions.get(source.session_id)
    assert session is not None
    assert await storage.facts.save_extraction(
        source.session_id,
        user_id=ALICE,
        space_id=GUILD,
        expected_through=session.facts_through,
        new_through=source.id,
        facts=[NewFact(attribute, value, 3, (source,))],
        now=float(source.id),
    )


async def test_each_place_keeps_its_facts(storage: Storage) -> None:
    await extract(storage, await say(storage, PUBLIC, "I live in Paris"), "city", "Paris")
    await extract(storage, await say(storage, PRIVATE, "I live in Rome"), "city", "Rome")
    await extract(storage, await say(storage, PRIVATE, "dog Rex"), "dog", "Rex")

    def values(facts: list) -> list[str]:  # type: ignore[type-arg]
        return [fact.value for fact in facts]

    assert values(await storage.facts.current(ALICE, GUILD, {PUBLIC})) == ["Paris"]
    # Where both places may be used, the newer value of an attribute wins.
    assert values(await storage.facts.current(ALICE, GUILD, {PUBLIC, PRIVATE})) == ["Rome", "Rex"]
    assert values(await storage.facts.current(ALICE, GUILD, {PRIVATE_THREAD})) == []
    # A new value said in public supersedes the public one only; the newest wins in private.
    await extract(storage, await say(storage, PUBLIC, "I live in Oslo"), "city", "Oslo")
    assert values(await storage.facts.current(ALICE, GUILD, {PUBLIC})) == ["Oslo"]
    assert values(await storage.facts.current(ALICE, GUILD, {PUBLIC, PRIVATE})) == ["Rex", "Oslo"]
    assert [f.place_id for f in await storage.facts.current(ALICE, GUILD)] == [PRIVATE] * 2 + [
        PUBLIC
    ]
    history = await storage.facts.history(ALICE)  # export: every value, every place
    assert sorted(f.value for f in history) == ["Oslo", "Paris", "Rex", "Rome"]


async def test_a_message_stored_without_a_place_is_its_channels(storage: Storage) -> None:
    """Rows from before migration 0015 have no place: they count as their own channel's."""
    await say(storage, PRIVATE, "heron said long ago")
    async with storage.db.transaction() as tx:
        await tx.execute("UPDATE messages SET place_id = NULL")
    assert await search(storage, {PUBLIC}) == []
    assert await search(storage, {PRIVATE}) == ["heron said long ago"]


@pytest.mark.sqlite_only
async def test_the_migration_places_existing_facts_where_they_were_learned(
    db_path: Path,
) -> None:
    """A database of schema 13: its fact's place is its source's channel; its message has
    none (read as its channel)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path)
    for number, _, sql in migrations("sqlite"):
        if number <= 13:
            for statement in split_sql(sql):
                conn.execute(statement)
    conn.executescript(
        f"""
        INSERT INTO sessions (id, guild_id, channel_id, user_id, created_at)
            VALUES (1, {GUILD}, {PRIVATE}, {ALICE}, 0);
        INSERT INTO messages (id, session_id, discord_id, guild_id, channel_id, user_id, role,
            content, tokens, created_at) VALUES (1, 1, 9, {GUILD}, {PRIVATE}, {ALICE}, 'user',
            'I live in Rome, heron', 3, 0);
        INSERT INTO facts (id, user_id, space_id, attribute, value, tokens, created_at)
            VALUES (1, {ALICE}, {GUILD}, 'city', 'Rome', 3, 0);
        INSERT INTO fact_sources (fact_id, message_id, discord_message_id, channel_id, guild_id)
            VALUES (1, 1, 9, {PRIVATE}, {GUILD});
        PRAGMA user_version=13;
        """
    )
    conn.commit()
    conn.close()
    storage = await Storage.open(db_path)
    try:
        [fact] = await storage.facts.current(ALICE, GUILD)
        assert fact.place_id == PRIVATE
        assert await storage.facts.current(ALICE, GUILD, {PUBLIC}) == []
        assert await search(storage, {PUBLIC}) == []
        assert await search(storage, {PRIVATE}) == ["I live in Rome, heron"]
    finally:
        await storage.close()
