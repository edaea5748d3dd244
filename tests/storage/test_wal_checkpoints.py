"""SQLite's WAL is folded back in the background, never inside a reply's commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage import Storage
from storage.sqlite_checkpoints import WalCheckpointer
from tests.helpers.e2e import eventually

ROW = "x" * 4000  # about a page of WAL per row


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_the_bots_commits_never_checkpoint(tmp_path: Path) -> None:
    """The automatic checkpoint is off on the bot's connection, and the background one runs."""
    store = await Storage.open(tmp_path / "mnemo.db")
    try:
        [(autocheckpoint,)] = await store.db.fetch_all("PRAGMA wal_autocheckpoint")
        assert autocheckpoint == 0
        async with store.db.transaction() as tx:
            await tx.execute("CREATE TABLE filler (text TEXT)")
        for _ in range(20):
            async with store.db.transaction() as tx:
                await tx.executemany("INSERT INTO filler VALUES (?)", [(ROW,)] * 100)
        # 2,000 pages written: SQLite would have checkpointed in one of those commits.
        checkpoints = store.db._checkpoints  # type: ignore[attr-defined]

        async def checkpointed() -> bool:
            return checkpoints.checkpoints >= 1

        await eventually(checkpointed, "a background checkpoint")
    finally:
        await store.close()


async def test_the_wal_stays_small_while_a_writer_goes_on(tmp_path: Path) -> None:
    """A writer without automatic checkpoints, and the checkpointer beside it: each pass
    folds what was written, so the writer starts the WAL again instead of growing it."""
    path = tmp_path / "w.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE filler (text TEXT)")
    checkpointer = WalCheckpointer(path, every=0.05)
    await checkpointer.start()
    try:
        for _ in range(20):  # 20 × 100 pages: 8 MB of WAL without checkpoints
            writer.executemany("INSERT INTO filler VALUES (?)", [(ROW,)] * 100)
            await asyncio.sleep(0.08)
        assert checkpointer.checkpoints >= 5
        assert wal_bytes(path) < 4 * 1024 * 1024
        assert writer.execute("SELECT COUNT(*) FROM filler").fetchone() == (2000,)
    finally:
        await checkpointer.close()
        writer.close()


async def test_no_checkpoint_without_writes(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x)")
    checkpointer = WalCheckpointer(path, every=0.02)
    await checkpointer.start()
    try:
        await asyncio.sleep(0.2)
        first = checkpointer.checkpoints
        assert first <= 1  # the table's creation, once
        await asyncio.sleep(0.2)
        assert checkpointer.checkpoints == first
    finally:
        await checkpointer.close()
        writer.close()
