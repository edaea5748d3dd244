"""The storage seam: backends by URL, migrations and their versions, errors of our own,
fact uniqueness under concurrent writers, and the layering above storage."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from storage import Storage
from storage.database import migrations
from storage.errors import (
    IntegrityViolation,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
)
from storage.models import NewFact, SessionKey, StoredMessage
from storage.postgres import pg_sql
from storage.sqlite import split_sql
from storage.url import DatabaseURL, redact, scrub
from tests.helpers import ROOT

pytestmark = pytest.mark.both_backends

MIGRATIONS = ROOT / "storage" / "migrations"


# -- placeholders, migrations, layering (no database needed) ---------------------------------


def test_placeholders_follow_sqlite_numbering() -> None:
    assert pg_sql("SELECT ? , ?") == "SELECT $1 , $2"
    assert pg_sql("WHERE a = ?1 AND b = ?2 OR c = ?1") == "WHERE a = $1 AND b = $2 OR c = $1"
    assert pg_sql("VALUES (?2, ?)") == "VALUES ($2, $3)"  # bare ? follows the highest so far
    # Not inside strings, quoted identifiers or comments.
    assert pg_sql("SELECT '?', \"a?\", x -- why?\n FROM t WHERE y = ?") == (
        "SELECT '?', \"a?\", x -- why?\n FROM t WHERE y = $1"
    )
    assert pg_sql("SELECT 'it''s ?' WHERE z = ?") == "SELECT 'it''s ?' WHERE z = $1"


def test_urls_print_no_password() -> None:
    url = DatabaseURL.parse("postgres://bot:pa55-word@db:5432/mnemo?password=pa55-word&x=1")
    for shown in (str(url), repr(url), f"{url}", url.redacted()):
        assert "pa55-word" not in shown and "bot:***@db:5432/mnemo" in shown
    driver_message = f"could not connect with {url.dsn}: bad password pa55-word"
    assert "pa55-word" not in scrub(driver_message, url)
    assert redact("sqlite:///data/mnemo.db") == "sqlite:///data/mnemo.db"


def test_both_backends_have_the_same_migrations() -> None:
    sqlite = [(number, name) for number, name, _ in migrations("sqlite")]
    postgres = [(number, name) for number, name, _ in migrations("postgres")]
    assert sqlite == postgres
    assert [number for number, _ in sqlite][:3] == [1, 2, 3]


def test_migrations_are_packaged() -> None:
    # A migration left in the old flat folder would never be applied: they live per backend.
    assert not list(MIGRATIONS.glob("*.sql")), "move it to storage/migrations/<backend>/"
    pyproject = (ROOT / "pyproject.toml").read_text()
    for backend in ("sqlite", "postgres"):
        assert f'"storage.migrations.{backend}" = ["*.sql"]' in pyproject
        assert list((MIGRATIONS / backend).glob("*.sql"))


def test_nothing_above_storage_touches_a_driver_or_the_repositories_from_a_cog() -> None:
    for folder in ("bot", "cogs"):
        for source in (ROOT / folder).rglob("*.py"):
            text = source.read_text()
            assert not re.search(
                r"^\s*(import|from)\s+(aiosqlite|asyncpg|sqlite3)\b", text, re.M
            ), source
            if folder == "cogs":
                assert "bot.storage" not in text, f"{source}: use the engine"


async def test_unreachable_postgres_is_unavailable_and_hides_the_password() -> None:
    with pytest.raises(StorageUnavailable) as error:
        await Storage.open("postgresql://mnemo:hunter2-secret@127.0.0.1:1/mnemo")
    assert "hunter2" not in str(error.value) and "***" in str(error.value)
    assert error.value.__cause__ is None  # the driver's own text is not chained


# -- on each backend ---------------------------------------------------------------------------


async def test_a_newer_database_is_refused_with_one_line(database_url: str) -> None:
    store = await Storage.open(database_url)
    async with store.db.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (9999, 'future', 0)"
        )
    await store.close()
    with pytest.raises(SchemaTooNew) as error:
        await Storage.open(database_url)
    message = str(error.value)
    assert "\n" not in message and "9999" in message and "newer Mnemo" in message
    assert isinstance(error.value, StorageError)


async def test_processes_starting_together_migrate_once(database_url: str) -> None:
    stores = await asyncio.gather(*(Storage.open(database_url) for _ in range(3)))
    try:
        rows = await stores[0].db.fetch_all("SELECT version FROM schema_version")
        assert sorted(row[0] for row in rows) == [n for n, _, _ in migrations(stores[0].db.backend)]
    finally:
        for store in stores:
            await store.close()


async def test_one_current_fact_per_attribute_under_concurrent_writers(storage: Storage) -> None:
    """Ten sessions of one user in one place (ten public threads of one channel) extract a
    city at once (on PostgreSQL, on ten pooled connections): exactly one stays current, the
    others become its history."""
    sources = []
    for channel in range(10):
        stored = await storage.messages.add(
            SessionKey(100, 500 + channel, 1),
            role="user",
            content=f"I live in City{channel}",
            tokens=4,
            discord_id=9000 + channel,
            now=1.0,
            place_id=500,
        )
        assert stored is not None
        sources.append(stored)

    async def extract(source: StoredMessage) -> bool:
        return await storage.facts.save_extraction(
            source.session_id,
            user_id=1,
            space_id=100,
            expected_through=0,
            new_through=source.id,
            facts=[NewFact("city", f"City{source.channel_id - 500}", 3, (source,))],
            now=2.0,
        )

    assert all(await asyncio.gather(*(extract(source) for source in sources)))
    current = await storage.facts.current(1, 100)
    assert len(current) == 1
    history = await storage.facts.history(1)
    assert len(history) == 10 and sum(f.valid_until is None for f in history) == 1
    # The database itself refuses a second current value.
    with pytest.raises(IntegrityViolation):
        async with storage.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO facts (user_id, space_id, place_id, attribute, value, tokens,"
                " created_at) VALUES (1, 100, 500, 'city', 'Elsewhere', 1, 3.0)"
            )


async def test_discord_ids_and_times_keep_64_bits(storage: Storage) -> None:
    big = SessionKey(guild_id=2**62 + 1, channel_id=2**63 - 2, user_id=2**62 + 3)
    stored = await storage.messages.add(
        big, role="user", content="hi", tokens=1, discord_id=2**63 - 5, now=1_767_225_600.123456
    )
    assert stored is not None
    [back] = await storage.messages.by_ids([stored.id])
    assert (back.guild_id, back.channel_id, back.user_id) == (2**62 + 1, 2**63 - 2, 2**62 + 3)
    assert back.discord_id == 2**63 - 5 and back.created_at == 1_767_225_600.123456


async def test_usage_upsert_adds_up(storage: Storage) -> None:
    for _ in range(3):
        await storage.usage.add("2026-01-01", user_id=7, guild_id=70, tokens=5)
    assert await storage.usage.used("2026-01-01", "user", 7) == 15
    assert await storage.usage.used("2026-01-01", "guild", 70) == 15


async def test_errors_are_the_storage_layers_own(storage: Storage) -> None:
    with pytest.raises(StorageError) as error:
        await storage.db.fetch_all("SELECT * FROM no_such_table")
    assert type(error.value).__module__ == "storage.errors"
    with pytest.raises(IntegrityViolation):
        async with storage.db.transaction() as tx:
            await tx.execute("INSERT INTO bot_state (key, value) VALUES ('k', NULL)")


# -- PostgreSQL only ------------------------------------------------------------------------------


@pytest.mark.postgres_only
async def test_erasures_are_followed_by_one_vacuum(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without waiting for it, an erasure is followed by a VACUUM; erasures in quick
    succession share one."""
    import storage.postgres as postgres

    monkeypatch.setattr(postgres, "VACUUM_DELAY_SECONDS", 0.2)
    for user in (1, 2, 3):
        await storage.messages.add(
            SessionKey(100, 10, user), role="user", content="x", tokens=1, discord_id=user, now=1.0
        )
    for user in (1, 2, 3):
        await storage.users.delete_user_data(user)

    async def vacuums() -> int:
        row = await storage.db.fetch_one(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'messages'"
        )
        return int(row[0]) if row else 0

    for _ in range(100):
        if await vacuums():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # statistics of any second VACUUM would have arrived by now
    assert await vacuums() == 1


@pytest.mark.postgres_only
async def test_lock_row_holds_writers_not_inserts(storage: Storage) -> None:
    """A read-then-write transaction holding its session keeps other lockers out until it
    ends, while messages still go into that session."""
    first = await storage.messages.add(
        SessionKey(100, 10, 1), role="user", content="a", tokens=1, discord_id=1, now=1.0
    )
    assert first is not None
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with storage.db.transaction() as tx:
            await tx.lock_row("sessions", first.session_id)
            holding.set()
            await release.wait()

    async def second_locker() -> None:
        async with storage.db.transaction() as tx:
            await tx.lock_row("sessions", first.session_id)

    held = asyncio.create_task(holder())
    await holding.wait()
    waiting = asyncio.create_task(second_locker())
    inserted = await asyncio.wait_for(
        storage.messages.add(
            SessionKey(100, 10, 1), role="user", content="b", tokens=1, discord_id=2, now=1.0
        ),
        5,
    )
    assert inserted is not None
    await asyncio.sleep(0.3)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(held, waiting), 5)


# -- SQLite only --------------------------------------------------------------------------------


@pytest.mark.sqlite_only
async def test_a_schema_3_database_keeps_working_unchanged(db_path: Path) -> None:
    """A database from before the version table (PRAGMA user_version = 3) opens, gains the
    table and the later migrations, and keeps every row as it was."""
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path)
    for number, _, sql in migrations("sqlite")[:3]:
        assert number <= 3
        for statement in split_sql(sql):
            raw.execute(statement)
    raw.execute("PRAGMA user_version=3")
    raw.execute(
        "INSERT INTO sessions (guild_id, channel_id, user_id, created_at) VALUES (1, 2, 3, 4)"
    )
    raw.execute(
        "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id, role,"
        " content, tokens, created_at) VALUES (1, 10, 1, 2, 3, 'user', 'old text', 2, 4.5)"
    )
    raw.execute(
        "INSERT INTO facts (user_id, space_id, attribute, value, tokens, created_at)"
        " VALUES (3, 1, 'city', 'Oslo', 1, 5)"
    )
    raw.commit()
    before = {
        t: raw.execute(f"SELECT * FROM {t}").fetchall() for t in ("sessions", "messages", "facts")
    }
    raw.close()

    store = await Storage.open(db_path)
    try:
        versions = [
            row[0]
            for row in await store.db.fetch_all(
                "SELECT version FROM schema_version ORDER BY version"
            )
        ]
        assert versions == [number for number, _, _ in migrations("sqlite")]
        assert (await store.db.fetch_one("PRAGMA user_version"))[0] == versions[-1]
        for table, rows in before.items():
            after = [tuple(r) for r in await store.db.fetch_all(f"SELECT * FROM {table}")]
            # Later migrations may add columns (with defaults) after the old ones.
            assert [row[: len(rows[0])] for row in after] == rows
        session = await store.sessions.find(2, 3)
        assert session is not None
        assert [m.content for m in await store.messages.newest(session.id, after_id=0)] == [
            "old text"
        ]
    finally:
        await store.close()


@pytest.mark.sqlite_only
async def test_a_locked_database_is_unavailable(storage: Storage, db_path: Path) -> None:
    await storage.db.fetch_all("PRAGMA busy_timeout=50")
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StorageUnavailable):
            async with storage.db.transaction() as tx:
                await tx.execute("INSERT INTO bot_state (key, value) VALUES ('a', 'b')")
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with storage.db.transaction() as tx:  # usable again once the lock is gone
        await tx.execute("INSERT INTO bot_state (key, value) VALUES ('a', 'b')")
