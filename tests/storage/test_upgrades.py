"""Upgrading a database: a copy before migrations (the newest DB_BACKUPS kept), a newer
schema refused, and one process per SQLite file. Real files, real SQLite, real processes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from storage import DatabaseUnusable, Storage
from storage.database import migrations, newest_schema_version
from storage.sqlite import split_sql
from storage.sqlite_files import backups_of, lock_path
from tests.helpers import ROOT

NEWEST = newest_schema_version()
PREVIOUS = migrations("sqlite")[-2][0]
"""The schema before the newest (numbers may skip: migrations of parallel branches)."""


def old_database(path: Path, version: int, marker: str = "an old message") -> None:
    """A database as the Mnemo of schema `version` left it, with one message in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        for number, _, sql in migrations("sqlite"):
            if number <= version:
                for statement in split_sql(sql):
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO sessions (id, guild_id, channel_id, user_id, created_at)"
            " VALUES (1, 1, 2, 3, 0)"
        )
        conn.execute(
            "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id, role,"
            " content, tokens, created_at) VALUES (1, 9, 1, 2, 3, 'user', ?, 3, 0)",
            (marker,),
        )
        conn.execute(f"PRAGMA user_version={version}")
        conn.commit()
    finally:
        conn.close()


def remove(path: Path) -> None:
    path.unlink()


def contents(path: Path) -> bytes:
    return path.read_bytes()


def read(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_an_older_database_is_copied_before_it_is_migrated(db_path: Path) -> None:
    old_database(db_path, PREVIOUS)
    store = await Storage.open(db_path, backups=3)
    try:
        assert await store.db.schema_version() == NEWEST
    finally:
        await store.close()
    [copy] = backups_of(db_path)
    assert copy.name.startswith(f"mnemo.db.v{PREVIOUS}-") and copy.name.endswith(".bak")
    assert read(copy, "PRAGMA user_version") == [(PREVIOUS,)]  # as it was before
    assert read(copy, "SELECT content FROM messages") == [("an old message",)]
    assert read(copy, "PRAGMA integrity_check") == [("ok",)]


async def test_only_the_newest_backups_are_kept(db_path: Path) -> None:
    for n in range(4):
        old_database(db_path, PREVIOUS, marker=f"run {n}")
        await (await Storage.open(db_path, backups=2)).close()
        remove(db_path)
    kept = backups_of(db_path)
    assert len(kept) == 2
    assert [read(p, "SELECT content FROM messages")[0][0] for p in kept] == ["run 2", "run 3"]


@pytest.mark.parametrize("case", ["backups off", "new database", "already current"])
async def test_no_backup_when_off_new_or_current(db_path: Path, case: str) -> None:
    if case == "backups off":
        old_database(db_path, PREVIOUS)
        await (await Storage.open(db_path, backups=0)).close()
    elif case == "new database":
        await (await Storage.open(db_path, backups=3)).close()
    else:
        await (await Storage.open(db_path)).close()
        await (await Storage.open(db_path, backups=3)).close()
    assert backups_of(db_path) == []


async def test_a_newer_database_is_refused_untouched(db_path: Path) -> None:
    old_database(db_path, NEWEST)
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version={NEWEST + 1}")
    conn.close()
    before = contents(db_path)
    with pytest.raises(DatabaseUnusable, match=f"newer Mnemo \\(schema {NEWEST + 1};"):
        await Storage.open(db_path, backups=3)
    assert contents(db_path) == before
    assert backups_of(db_path) == []


HOLD_LOCK = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from storage import Storage

    async def main():
        store = await Storage.open(Path(sys.argv[1]))
        print("locked", flush=True)
        sys.stdin.readline()
        await store.close()

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_one_process_per_database_file(db_path: Path) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_LOCK,
        str(db_path),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"locked\n"
        with pytest.raises(DatabaseUnusable, match=f"another Mnemo process \\(pid {holder.pid}\\)"):
            await Storage.open(db_path)
        holder.stdin.write(b"\n")
        await holder.stdin.drain()
        assert await asyncio.wait_for(holder.wait(), 30) == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    # Released with the other process: this one may open it now, twice even (one process).
    first = await Storage.open(db_path)
    second = await Storage.open(db_path)
    await first.close()
    await second.close()
    assert lock_path(db_path).exists()  # kept: removing a lock file races with its next user


async def test_backups_are_private_and_expire_after_db_backup_days(db_path: Path) -> None:
    """A backup holds what users erased after it was made: owner-only, and deleted once
    older than DB_BACKUP_DAYS, at start-up and by the retention pass."""
    old_database(db_path, PREVIOUS, marker="ERASED-LATER")
    store = await Storage.open(db_path, backups=3, backup_days=7)
    try:
        [copy] = backups_of(db_path)
        assert copy.stat().st_mode & 0o777 == 0o600
        assert await store.expire_backups() == 0  # a fresh copy stays
        eight_days_ago = copy.stat().st_mtime - 8 * 86400
        os.utime(copy, (eight_days_ago, eight_days_ago))
        assert await store.expire_backups() == 1  # the retention pass
        assert backups_of(db_path) == []
    finally:
        await store.close()
    # And at start-up: an old copy left from an earlier upgrade is deleted when the bot opens.
    remove(db_path)
    old_database(db_path, PREVIOUS)
    await (await Storage.open(db_path, backups=3, backup_days=7)).close()
    [older] = backups_of(db_path)
    os.utime(older, (0, 0))
    await (await Storage.open(db_path, backups=3, backup_days=7)).close()
    assert backups_of(db_path) == []
