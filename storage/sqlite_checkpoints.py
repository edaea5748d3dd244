"""SQLite's WAL checkpoints, off the reply path.

SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages: the
caller of that statement waits while the pages are copied back into the database file and the
file is synced. On the reply path that caller is the INSERT of a user's message, and the wait
(12–18 ms measured at 10,000 messages) was the p99 of benchmark 1's event → request interval.

So the bot's connection turns the automatic checkpoint off, and `WalCheckpointer` checkpoints on a
connection of its own, so on aiosqlite's thread of its own: once a second when the WAL file has
changed since the last look. It is PASSIVE, which neither waits for nor blocks the writer or any
reader; what a running reader still needs is folded back next time. Checkpoints after deletions
a user asked for are not this one's: `SQLiteDatabase.checkpoint` truncates the WAL there and
then, so that the deleted text leaves the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from contextlib import suppress
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


class WalCheckpointer:
    """Folds the WAL of the database at `path` back into it, in the background."""

    def __init__(self, path: Path, *, every: float = CHECK_SECONDS) -> None:
        self._path = path
        self._wal = path.with_name(path.name + "-wal")
        self._every = every
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[int, int] | None = None
        self.checkpoints = 0

    async def start(self) -> None:
        self._conn = await aiosqlite.connect(self._path, isolation_level=None)
        self._task = asyncio.create_task(self._run(), name="sqlite-wal-checkpoints")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            if self._changed():
                await self.checkpoint()

    def _changed(self) -> bool:
        """Whether the WAL was written since the last look (a look costs one `stat`)."""
        try:
            status = os.stat(self._wal)
        except FileNotFoundError:
            return False
        seen, self._seen = self._seen, (status.st_size, status.st_mtime_ns)
        return seen != self._seen

    async def checkpoint(self) -> None:
        """One PASSIVE checkpoint; an error is logged and the next look tries again."""
        assert self._conn is not None
        try:
            await self._conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        except sqlite3.Error as error:
            log.warning("A background WAL checkpoint failed: %s", error)
