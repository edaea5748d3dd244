from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from storage import Storage
from storage.database import migrations
from storage.models import NewFact, SessionKey

pytestmark = pytest.mark.both_backends

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)
ALICE_DM = SessionKey(guild_id=None, channel_id=11, user_id=1)
BOB = SessionKey(guild_id=100, channel_id=10, user_id=2)


async def add(storage: Storage, key: SessionKey, text: str, discord_id: int | None, role="user"):
    return await storage.messages.add(
        key, role=role, content=text, tokens=len(text.split()), discord_id=discord_id, now=1.0
    )


@pytest.mark.sqlite_only
async def test_creates_directory_and_applies_pragmas(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path / "deep" / "dir" / "m.db")
    try:
        assert (tmp_path / "deep" / "dir" / "m.db").exists()
        assert (await store.db.fetch_one("PRAGMA journal_mode"))[0] == "wal"
        assert (await store.db.fetch_one("PRAGMA foreign_keys"))[0] == 1
        assert (await store.db.fetch_one("PRAGMA synchronous"))[0] == 1  # NORMAL
        assert (await store.db.fetch_one("PRAGMA secure_delete"))[0] == 1
        assert await store.db.schema_version() >= 1
        assert await store.db.integrity_ok()
    finally:
        await store.close()


@pytest.mark.sqlite_only
async def test_database_files_are_owner_only(tmp_path: Path) -> None:
    """The file and its -wal/-shm hold members' messages: mode 0600 whatever the umask."""
    path = tmp_path / "m.db"
    old_umask = os.umask(0o022)
    try:
        store = await Storage.open(path)
        try:
            await add(store, SessionKey(1, 2, 3), "hello", discord_id=1)
            for file in (path, path.with_name("m.db-wal"), path.with_name("m.db-shm")):
                assert file.stat().st_mode & 0o777 == 0o600, file
        finally:
            await store.close()
        path.chmod(0o644)  # an existing file from an older version is made private too
        await (await Storage.open(path)).close()
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)


@pytest.mark.sqlite_only
async def test_a_checkpoint_blocked_by_a_reader_is_retried_until_the_text_is_gone(
    tmp_path: Path,
) -> None:
    """Another connection's read keeps `wal_checkpoint(TRUNCATE)` from completing (SQLite
    reports it busy): the deleted text would stay in -wal. It is tried again until done."""
    path = tmp_path / "m.db"
    wal = path.with_name("m.db-wal")
    store = await Storage.open(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        stored = await add(store, SessionKey(1, 2, 3), "WAL-MARKER-7731", discord_id=77)
        assert stored is not None
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchall()  # holds a snapshot
        assert await store.messages.delete_by_discord_id(77) is not None
        assert store.db.checkpoint_pending  # type: ignore[attr-defined]
        reader.execute("COMMIT")
        for _ in range(200):  # the retry's first delay is half a second
            if not store.db.checkpoint_pending:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert not store.db.checkpoint_pending  # type: ignore[attr-defined]
        assert wal.stat().st_size == 0
    finally:
        reader.close()
        await store.close()


async def test_redelivered_message_is_stored_once(storage: Storage) -> None:
    first = await add(storage, ALICE, "hello", 555)
    again = await add(storage, ALICE, "hello", 555)
    assert first is not None and again is None
    rows = await storage.db.fetch_all("SELECT COUNT(*) FROM messages")
    assert rows[0][0] == 1


async def test_concurrent_duplicates_store_one(storage: Storage) -> None:
    results = await asyncio.gather(*(add(storage, ALICE, "race", 777) for _ in range(20)))
    assert sum(r is not None for r in results) == 1


async def test_survives_restart(database_url: str) -> None:
    store = await Storage.open(database_url)
    await add(store, ALICE, "remember the blue door", 1)
    await store.close()
    reopened = await Storage.open(database_url)
    try:
        session = await reopened.sessions.find(ALICE.channel_id, ALICE.user_id)
        assert session is not None
        newest = await reopened.messages.newest(session.id, after_id=0)
        assert [m.content for m in newest] == ["remember the blue door"]
        latest = migrations(reopened.db.backend)[-1][0]
        assert await reopened.db.schema_version() == latest
        rows = await reopened.db.fetch_all("SELECT version FROM schema_version")
        assert len(rows) == len(migrations(reopened.db.backend))  # none applied twice
    finally:
        await reopened.close()


async def test_sessions_are_per_channel_and_user(storage: Storage) -> None:
    a = await add(storage, ALICE, "a", 1)
    b = await add(storage, BOB, "b", 2)
    c = await add(storage, ALICE_DM, "c", 3)
    assert a and b and c
    assert len({a.session_id, b.session_id, c.session_id}) == 3
    assert [m.content for m in await storage.messages.newest(a.session_id, after_id=0)] == ["a"]


async def test_text_round_trips_exactly(storage: Storage) -> None:
    tricky = "NUL\x00 '; DROP TABLE messages; -- <|endoftext|> \u200b\u202e e\u0301 😀"
    stored = await add(storage, ALICE, tricky, 9)
    assert stored is not None
    [back] = await storage.messages.by_ids([stored.id])
    if storage.db.backend == "postgres":  # its text type cannot hold U+0000
        tricky = tricky.replace("\x00", "\ufffd")
    assert back.content == tricky


async def test_failed_transaction_rolls_back(storage: Storage) -> None:
    with pytest.raises(RuntimeError):
        async with storage.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO bot_state (key, value) VALUES ('k', 'v')",
            )
            raise RuntimeError("boom")
    assert await storage.db.fetch_one("SELECT * FROM bot_state") is None


async def test_summary_compare_and_set(storage: Storage) -> None:
    first = await add(storage, ALICE, "one two", 1)
    second = await add(storage, ALICE, "three", 2)
    assert first and second
    ok = await storage.sessions.save_summary(
        first.session_id, expected_through=0, new_through=first.id, summary="S1", tokens=1, now=2.0
    )
    stale = await storage.sessions.save_summary(
        first.session_id, expected_through=0, new_through=second.id, summary="S2", tokens=1, now=3.0
    )
    assert ok and not stale
    session = await storage.sessions.get(first.session_id)
    assert session and session.summary == "S1" and session.summarized_through == first.id
    unsummarized, unread = await storage.messages.pending(session)
    assert unsummarized == 1 and unread == 2


async def test_facts_supersede_and_deduplicate(storage: Storage) -> None:
    m1 = await add(storage, ALICE, "I live in Paris", 1)
    m2 = await add(storage, ALICE, "I moved to Berlin", 2)
    assert m1 and m2

    def city(value, source):
        return NewFact("city", value, 5, (source,))

    assert await storage.facts.save_extraction(
        m1.session_id,
        user_id=1,
        space_id=100,
        expected_through=0,
        new_through=m1.id,
        facts=[city("Paris", m1)],
        now=10.0,
    )
    assert await storage.facts.save_extraction(
        m1.session_id,
        user_id=1,
        space_id=100,
        expected_through=m1.id,
        new_through=m2.id,
        facts=[city("Berlin", m2), city("berlin", m2)],
        now=20.0,
    )
    current = await storage.facts.current(1, 100)
    assert [(f.attribute, f.value) for f in current] == [("city", "Berlin")]
    history = await storage.facts.history(1)
    assert [(f.value, f.valid_until) for f in history] == [("Paris", 20.0), ("Berlin", None)]
    sources = await storage.facts.sources([current[0].id])
    assert [s.discord_message_id for s in sources[current[0].id]] == [2]
    assert await storage.facts.current(1, 0) == []  # nothing leaks to the DM space


async def test_stale_extraction_writes_nothing(storage: Storage) -> None:
    m1 = await add(storage, ALICE, "I am Ada", 1)
    assert m1
    saved = await storage.facts.save_extraction(
        m1.session_id,
        user_id=1,
        space_id=100,
        expected_through=999,
        new_through=m1.id,
        facts=[NewFact("name", "Ada", 3, (m1,))],
        now=1.0,
    )
    assert not saved
    assert await storage.facts.current(1, 100) == []


async def test_lagging_sessions_found(storage: Storage) -> None:
    m = await add(storage, ALICE, "word " * 50, 1)
    assert m
    lagging = await storage.sessions.lagging(summary_trigger_tokens=10)
    assert lagging == [(m.session_id, True, True)]
