"""Erasure on PostgreSQL: what a deletion leaves in the database's files, and the maintenance
that takes it out within ERASURE_COMPACT_SECONDS.

Measured by reading the relation files (tests/storage/test_erasure_files.py), on PostgreSQL 15:

- A deleted or rewritten row stays in its table's pages as a dead tuple until VACUUM removes
  it, and no VACUUM can while a transaction older than the deletion is still open anywhere it
  counts: a snapshot in this database (a REPEATABLE READ transaction, a long query), a
  transaction that has written in any database of the server, a prepared transaction, a
  replication slot's xmin (a replica with hot_standby_feedback). They may still see the row.
- Once VACUUM removed a tuple, its bytes can stay in the page's free space until new rows
  overwrite them; the GIN recall index never removes a word from its entry tree at all (the
  posting lists lose the rows, the key stays), and btree pages keep freed bytes the same way.
- A rewrite (VACUUM FULL) writes the live rows, the toast table and every index into new files
  and truncates the old ones at commit (they are unlinked at the next checkpoint). It keeps
  the dead rows an older transaction can still see, though: it must wait until none is left.
- ANALYZE's samples of column values (pg_statistic) are not gathered on text columns
  (migration 0013), so that catalog never holds users' text. The samples an older version
  gathered leave its file when the first compaction after the upgrade rewrites it, which
  only a superuser or the database's owner may do (otherwise a warning says so, once).

So every deletion a user asked for (`checkpoint()`: an erasure, a deleted or edited message, a
forgotten fact, and the retention pass) records in `bot_state` that erased text may be left,
with the transaction id every older transaction precedes. Every process checks every
CHECK_SECONDS. A pass is due while something is recorded; it waits until no transaction older
than the deletions is left (logging who holds them once the promise is overdue), then claims
the fleet's lease for ERASURE_COMPACT_SECONDS (at most one rewrite per period for the whole
fleet) and rewrites the tables that hold users' text, each with VACUUM FULL on a connection of
its own. VACUUM FULL holds an ACCESS EXCLUSIVE lock on its table while it runs: reads and writes
of it wait (about 0.2 s at 10,000 messages, 3 s at 100,000, mostly rebuilding the GIN index).
It waits at most LOCK_TIMEOUT_SECONDS for that lock, so that it never queues the bot's
statements behind a long reader; a table it could not lock is tried again at the next check.

What stays: the write-ahead log (pg_wal) holds every row as written until the server recycles
its segment after a checkpoint and overwrites it with new WAL; WAL archives, base backups and
dumps keep what they copied for as long as the operator keeps them; a physical replica replays
the rewrite too, a logical replica applies the deletions but needs its own compaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from storage.database import Row
from storage.errors import StorageError

log = logging.getLogger(__name__)

PENDING_KEY = "postgres:erased"
"""The `bot_state` row of deletions not yet compacted: "<xid> <since>", the transaction id
that every transaction older than the newest of them precedes, and when the oldest was made."""
STATISTICS_KEY = "postgres:statistics"
"""Set by migration 0013 when it deleted statistics that sampled text: pg_statistic's file
still holds their bytes until it is rewritten (once, by a superuser or the database's owner)."""
STATISTICS = "pg_catalog.pg_statistic"
LEASE = "once:erasure-compaction"
TEXT_TABLES = ("messages", "sessions", "facts", "message_vectors")
"""The tables that hold users' text, or what is derived from it (a message's vector); toast and
indexes follow their table. The others hold ids and numbers."""
CHECK_SECONDS = 60.0
LOCK_TIMEOUT_SECONDS = 5.0

Outcome = Literal["nothing", "blocked", "not due", "busy", "done"]

_RECORD = (
    "INSERT INTO bot_state (key, value)"
    " VALUES (?1, pg_snapshot_xmax(pg_current_snapshot())::text || ' ' || ?2)"
    " ON CONFLICT (key) DO UPDATE SET value ="
    " GREATEST(split_part(bot_state.value, ' ', 1)::numeric,"
    "          split_part(excluded.value, ' ', 1)::numeric)::text"
    " || ' ' || split_part(bot_state.value, ' ', 2)"
)

# Who holds back the removal of dead rows: xid, that of a transaction that wrote (in any
# database: every snapshot taken meanwhile includes it); xmin, that of a snapshot (counting only
# in this database, or from a replica's feedback: datid NULL).
_HOLDERS = (
    "SELECT 'backend ' || pid || COALESCE(' (' || NULLIF(application_name, '') || ')', '')"
    " || COALESCE(', ' || state, '') || COALESCE(', in a transaction since '"
    " || date_trunc('second', xact_start)::text, '') AS who,"
    " backend_xid::text AS xid,"
    " CASE WHEN datid IS NULL OR datid = (SELECT oid FROM pg_database"
    "  WHERE datname = current_database()) THEN backend_xmin::text END AS xmin"
    " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    " AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)"
    " UNION ALL SELECT 'prepared transaction ' || gid, transaction::text, NULL"
    " FROM pg_prepared_xacts"
    " UNION ALL SELECT 'replication slot ' || slot_name, NULL, xmin::text"
    " FROM pg_replication_slots WHERE xmin IS NOT NULL"
)
# The oldest transaction still running, anywhere on the server (64-bit, exact), and how far
# behind it VACUUM is told to stay (a setting PostgreSQL 16 removed: then 0).
_HORIZON = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text,"
    " COALESCE(current_setting('vacuum_defer_cleanup_age', true), '0')"
)
_CLAIM = (
    "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE leases.expires_at <= ?4 RETURNING owner"
)


class RewritingDatabase(Protocol):
    """What the compaction needs of its database: PostgreSQL's (`storage.postgres`), which
    can rewrite tables into new files."""

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

    async def write_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

    async def rewrite(self, tables: Iterable[str], *, lock_timeout: float) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class CompactionPass:
    outcome: Outcome
    blockers: tuple[str, ...] = ()
    """Blocked: what still sees the erased rows."""
    seconds: float = 0.0
    """Done: how long the rewrites took (their tables were locked for that long in all)."""


def _precedes(xid: int, horizon: int) -> bool:
    """32-bit transaction ids compare modulo 2^32, as PostgreSQL compares them."""
    return (xid - horizon) % 2**32 >= 2**31


class ErasureCompaction:
    """The pending record and the compaction pass of one PostgreSQL database (one per process)."""

    def __init__(self, db: RewritingDatabase) -> None:
        self._db = db
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._unrecorded = False  # a deletion whose record failed: written at the next check
        self._task: asyncio.Task[None] | None = None
        self._warned_at = float("-inf")

    async def record(self, now: float | None = None) -> None:
        """After a deletion committed: erased text may be left in the files. A failure to
        record it (the server went away) is retried by the periodic check."""
        now = time.time() if now is None else now
        try:
            await self._db.write_one(_RECORD, (PENDING_KEY, f"{now:.3f}"))
            self._unrecorded = False
        except StorageError as error:
            self._unrecorded = True
            log.warning("Could not record an erasure for compaction (tried again): %s", error)

    async def pending(self) -> tuple[int, float, str] | None:
        """(the transaction id every older transaction precedes, since when, the record as
        stored) or None."""
        row = await self._db.fetch_one("SELECT value FROM bot_state WHERE key = ?", (PENDING_KEY,))
        if row is None:
            return None
        xid, _, since = str(row[0]).partition(" ")
        return int(xid), float(since or 0), str(row[0])

    async def blockers(self, xid: int) -> list[str]:
        """What still sees rows deleted before transaction `xid`: none, and VACUUM removes them."""
        horizon = await self._db.fetch_one(_HORIZON)
        assert horizon is not None
        needed = xid + int(horizon[1])
        oldest_running = int(horizon[0])
        found = []
        for who, holder_xid, holder_xmin in await self._db.fetch_all(_HOLDERS):
            held = [int(value) for value in (holder_xid, holder_xmin) if value is not None]
            if any(_precedes(value, needed % 2**32) for value in held):
                found.append(str(who))
        if oldest_running < needed and not found:
            found.append(f"a transaction older than {needed} (oldest running: {oldest_running})")
        return found

    async def run(self, period: float, *, now: float | None = None) -> CompactionPass:
        """One pass: rewrite the text tables if deletions are pending, nothing still sees their
        rows, and no process of the fleet rewrote them in the last `period` seconds."""
        if self._unrecorded:
            await self.record(now)
        pending = await self.pending()
        if pending is None:
            return CompactionPass("nothing")
        xid, since, recorded = pending
        started = time.time() if now is None else now
        overdue = started - since >= period
        blockers = await self.blockers(xid)
        if blockers:
            if overdue and started - self._warned_at >= period:
                self._warned_at = started
                log.warning(
                    "Erased text is still in the database's files, %.0f s after the erasure:"
                    " VACUUM cannot remove it while older transactions are open (%s); it is"
                    " rewritten once they end",
                    started - since,
                    "; ".join(blockers[:5]),
                )
            return CompactionPass("blocked", tuple(blockers))
        claimed = await self._db.write_one(_CLAIM, (LEASE, self.owner, started + period, started))
        if claimed is None:
            return CompactionPass("not due")
        try:
            seconds = await self._rewrite(TEXT_TABLES)
        except StorageError as error:
            await self._release()
            level = logging.WARNING if overdue else logging.INFO
            log.log(level, "Erasure compaction not done (tried again): %s", error)
            return CompactionPass("busy")
        except BaseException:
            with suppress(Exception):
                await asyncio.shield(self._release())
            raise
        # Deletions recorded meanwhile may have come after the rewrite began: they stay pending.
        cleared = await self._db.write_one(
            "DELETE FROM bot_state WHERE key = ? AND value = ? RETURNING key",
            (PENDING_KEY, recorded),
        )
        if cleared is None:
            await self._db.write_one(
                "UPDATE bot_state SET value = split_part(value, ' ', 1) || ' ' || ? WHERE key = ?",
                (f"{started:.3f}", PENDING_KEY),
            )
        log.info(
            "Erased text compacted: rewrote %s in %.1f s, %.0f s after the first erasure",
            ", ".join(TEXT_TABLES),
            seconds,
            started - since,
        )
        return CompactionPass("done", seconds=seconds)

    async def _rewrite(self, tables: Sequence[str]) -> float:
        begun = time.monotonic()
        skipped = await self._db.rewrite(tables, lock_timeout=LOCK_TIMEOUT_SECONDS)
        if skipped:
            raise StorageError(f"VACUUM FULL skipped {', '.join(skipped)} (not their owner?)")
        if await self._db.fetch_one("SELECT 1 FROM bot_state WHERE key = ?", (STATISTICS_KEY,)):
            if await self._db.rewrite([STATISTICS], lock_timeout=LOCK_TIMEOUT_SECONDS):
                log.warning(
                    "%s may still hold, as freed space in its file, samples of users' text"
                    " that ANALYZE gathered before this version; only a superuser or the"
                    " database's owner can rewrite it: VACUUM FULL %s",
                    STATISTICS,
                    STATISTICS,
                )
            await self._db.write_one("DELETE FROM bot_state WHERE key = ?", (STATISTICS_KEY,))
        return time.monotonic() - begun

    async def _release(self) -> None:
        await self._db.write_one(
            "DELETE FROM leases WHERE name = ? AND owner = ?", (LEASE, self.owner)
        )

    def start(self, period: float) -> None:
        """Check every CHECK_SECONDS, in the background until `close()`."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(period), name="mnemo-erasure-compaction")

    async def _loop(self, period: float) -> None:
        while True:
            try:
                await self.run(period)
            except StorageError as error:
                log.warning("Erasure compaction check failed (tried again): %s", error)
            await asyncio.sleep(CHECK_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
