"""Erasure on PostgreSQL, measured from outside: after the compaction, no file of the database
holds the erased user's text (tables, toast tables, every index, catalogs), also when an older
transaction saw the rows while they were erased; the compaction is one rewrite per period for
the whole fleet, and a restart does what a stop left pending (see storage.compaction)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

import storage.compaction as compaction
from storage import Storage
from storage.database import migrations
from storage.errors import StorageError
from storage.models import SessionKey
from tests.helpers.engines import Engines
from tests.helpers.postgres_files import compact, files_holding, relations_of, toast_of
from tests.helpers.storage import bury_in_index, index_word
from tests.helpers.user_data import ALICE, BOB, GUILD_A, fill_user

pytestmark = pytest.mark.both_backends

PERIOD = 3600.0


def marker(name: str) -> str:
    """A string no other test writes (the database of a test worker is shared by its tests)."""
    return f"{name}-{secrets.token_hex(4).upper()}"


def strings(mark: str) -> tuple[str, str]:
    """The marker as stored (messages, summaries, facts) and as one word of the recall index."""
    return mark, index_word(mark)


async def add_long_message(storage: Storage, user_id: int, mark: str) -> None:
    """A message long and random enough to be stored out of line, uncompressed, in the toast
    table of `messages` (pglz gives up on random text), the marker in its middle."""
    noise = [base64.b32encode(os.urandom(10)).decode() for _ in range(600)]
    text = " ".join([*noise[:300], f"{mark} said long", index_word(mark), *noise[300:]])
    await storage.messages.add(
        SessionKey(GUILD_A, 12, user_id),
        role="user",
        content=text,
        tokens=5,
        discord_id=None,
        now=1.0,
    )


async def fill(storage: Storage, alice: str, bob: str) -> None:
    await fill_user(storage, ALICE, alice)
    await add_long_message(storage, ALICE, alice)
    await fill_user(storage, BOB, bob)
    await bury_in_index(storage)  # Alice's rows are not the last of their pages or files
    # What autovacuum does on its own: statistics with samples of the columns' values.
    await storage.db.write_one("ANALYZE")


async def erase_alice(storage: Storage) -> None:
    """`/memory clear everywhere` as the engine runs it, and the VACUUM that follows."""
    await storage.users.delete_user_data(ALICE)
    await storage.recall.purge_deleted()
    await storage.db.flush()


@pytest.mark.postgres_only
async def test_erased_text_leaves_every_file_of_the_database(storage: Storage) -> None:
    alice, bob = marker("ALICE"), marker("BOB")
    await fill(storage, alice, bob)
    text_relations = await relations_of(storage, *compaction.TEXT_TABLES)
    toast = await toast_of(storage, "messages")
    before = await files_holding(storage, *strings(alice))
    # Where the text is: in the table, its toast table and the recall index, summaries, facts.
    assert {"messages", toast, "sessions", "facts", "message_vectors"} <= before[alice]
    assert {"messages", toast, "messages_recall"} <= before[index_word(alice)]
    assert before[alice] | before[index_word(alice)] <= text_relations  # not in statistics

    await erase_alice(storage)
    assert await compact(storage) == "done"

    assert await files_holding(storage, *strings(alice)) == {}
    kept = await files_holding(storage, *strings(bob))
    assert {"messages", "sessions", "facts", "message_vectors"} <= kept[bob]
    assert "messages_recall" in kept[index_word(bob)]
    assert await compact(storage) == "nothing"  # nothing left pending


async def hold_snapshot(url: str) -> asyncpg.Connection:
    """A reader that took its snapshot before the erasure: a REPEATABLE READ transaction that
    read the messages (it holds their table's lock, too)."""
    connection = await asyncpg.connect(url)
    await connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    await connection.fetchval("SELECT count(*) FROM messages")
    return connection


async def hold_writer(url: str) -> asyncpg.Connection:
    """A transaction with a transaction id, open in another database of the same server:
    every snapshot taken meanwhile, VACUUM's own too, counts it as running."""
    del url
    connection = await asyncpg.connect(os.environ["TEST_DATABASE_URL"])
    await connection.execute("BEGIN")
    await connection.fetchval("SELECT pg_current_xact_id()")
    return connection


@pytest.mark.postgres_only
@pytest.mark.parametrize("hold", [hold_snapshot, hold_writer], ids=["snapshot", "writer"])
async def test_an_older_transaction_delays_the_compaction_until_it_ends(
    storage: Storage, database_url: str, hold: Callable[[str], Awaitable[asyncpg.Connection]]
) -> None:
    alice, bob = marker("ALICE"), marker("BOB")
    await fill(storage, alice, bob)
    holder = await hold(database_url)
    try:
        await storage.users.delete_user_data(ALICE)
        await storage.recall.purge_deleted()
        result = await storage.db.compaction.run(PERIOD)
        assert result.outcome == "blocked"
        held_by = rf"backend {holder.get_server_pid()}\b"
        assert any(re.match(held_by, who) for who in result.blockers), result.blockers
        if hold is hold_snapshot:
            # The VACUUM after the erasure runs over Alice's rows and cannot remove them,
            # and a rewrite waits for the reader's lock only so long, then gives up.
            await storage.db.flush()
            assert "messages" in (await files_holding(storage, alice))[alice]
            with pytest.raises(StorageError):
                await storage.db.rewrite(["messages"], lock_timeout=0.2)
        else:
            # A rewrite now copies Alice's rows into the new files: its own snapshot counts
            # the writer as running, and the rows as still visible to it.
            assert await storage.db.rewrite(["messages"], lock_timeout=1.0) == []
            assert "messages" in (await files_holding(storage, alice))[alice]
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
    assert await compact(storage) == "done"
    assert await files_holding(storage, *strings(alice)) == {}
    assert bob in await files_holding(storage, bob)


@pytest.mark.postgres_only
async def test_one_rewrite_per_period_for_the_fleet(database_url: str) -> None:
    """Two processes share the database: one rewrite per period in all; a deletion made after
    it waits for the next period, and then whichever process checks first rewrites."""
    period = 5.0
    first, second = await Storage.open(database_url), await Storage.open(database_url)
    try:
        for user, mark in ((ALICE, marker("ALICE")), (BOB, marker("BOB"))):
            await fill_user(first, user, mark)
        await first.users.delete_user_data(ALICE)
        assert await compact(first, period) == "done"
        await second.users.delete_user_data(BOB)
        assert await compact(second, period) == "not due"
        assert await compact(first, period) == "not due"
        lease = await first.db.fetch_one(
            "SELECT expires_at FROM leases WHERE name = ?", (compaction.LEASE,)
        )
        assert lease is not None and lease[0] - time.time() > period - 3
        await asyncio.sleep(lease[0] - time.time() + 0.1)
        assert await compact(second, period) == "done"
        assert await compact(first, period) == "nothing"
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres_only
async def test_the_engine_compacts_what_a_stopped_process_left(
    database_url: str, engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process erased and stopped before its compaction: the next process to start (any
    process of the fleet) rewrites within a check, and erasures it makes itself the same."""
    monkeypatch.setattr(compaction, "CHECK_SECONDS", 0.2)
    alice, bob = marker("ALICE"), marker("BOB")
    stopped = await Storage.open(database_url)
    await fill_user(stopped, ALICE, alice)
    await fill_user(stopped, BOB, bob)
    await bury_in_index(stopped, batches=8)
    await erase_alice(stopped)
    await stopped.close()

    # (Retention would delete the test's old messages: a deletion of its own to compact.)
    engine = await engines.start(erasure_compact_seconds=60, retention_days=0)
    await until_compacted(engine.storage)
    assert await files_holding(engine.storage, *strings(alice)) == {}

    await engine.storage.db.write_one("DELETE FROM leases")  # as if the period were over
    await engine.forget_user(BOB)
    await until_compacted(engine.storage)
    assert await files_holding(engine.storage, *strings(bob)) == {}


async def until_compacted(storage: Storage) -> None:
    for _ in range(100):
        if (
            await storage.db.fetch_one(
                "SELECT 1 FROM bot_state WHERE key = ?", (compaction.PENDING_KEY,)
            )
            is None
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the erasure was not compacted")


@pytest.mark.postgres_only
async def test_an_upgrade_takes_out_what_an_older_version_left(database_url: str) -> None:
    """A database of the version before: ANALYZE sampled its text into pg_statistic, and an
    erasure left text in the files. The upgrade deletes the samples, and the compaction it
    makes due at once rewrites the tables and pg_statistic's file."""
    alice, bob = marker("ALICE"), marker("BOB")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION)"
        )
        for number, name, sql in migrations("postgres"):
            if number < 13:
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_version VALUES ($1, $2, 0)", number, name
                )
        await connection.execute(
            "INSERT INTO sessions (guild_id, channel_id, user_id, summary, created_at)"
            " VALUES (1, 10, 1, $1, 0), (1, 20, 2, $2, 0)",
            f"summary of {alice}",
            f"summary of {bob}",
        )
        await connection.execute(
            "INSERT INTO messages (session_id, guild_id, channel_id, user_id, role, content,"
            " tokens, created_at) SELECT s.id, 1, s.channel_id, s.user_id, 'user',"
            " CASE s.user_id WHEN 1 THEN $1 ELSE $2 END || ' said ' || n, 1, 0"
            " FROM sessions s, generate_series(1, 50) AS n",
            alice,
            bob,
        )
        await connection.execute("ANALYZE")
        await connection.execute("DELETE FROM sessions WHERE user_id = 1")  # an erasure
        await connection.execute("VACUUM")
    finally:
        await connection.close()

    upgraded = await Storage.open(database_url)
    try:
        held = await files_holding(upgraded, alice, bob)
        assert "pg_catalog.pg_statistic" in held[alice] and "pg_catalog.pg_statistic" in held[bob]
        assert await compact(upgraded) == "done"
        held = await files_holding(upgraded, alice, bob)
        assert alice not in held
        assert held[bob] == {"messages", "sessions"}
        await upgraded.db.write_one("ANALYZE")
        assert (await files_holding(upgraded, bob))[bob] == {"messages", "sessions"}
    finally:
        await upgraded.close()


@pytest.mark.sqlite_only
async def test_sqlite_has_nothing_to_compact(storage: Storage) -> None:
    await fill_user(storage, ALICE, "ALICE-MARKER")
    await storage.users.delete_user_data(ALICE)
    assert await storage.db.compact_erased(PERIOD) == "nothing"
    storage.keep_erasures_compacted(PERIOD)  # a no-op
