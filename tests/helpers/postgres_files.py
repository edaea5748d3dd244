"""Reading a PostgreSQL database's relation files from outside, as anyone with the server's disk
could: which relations (tables, toast tables, indexes, catalogs) hold a string in their files.

The server must run on this machine with its data directory readable by the tests (a local
server, the tests run as root or as the server's user); otherwise the tests that read files
are skipped with the reason. WAL (pg_wal) is not read: it is outside what erasure promises
(see storage.compaction).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from storage import Storage


async def database_directory(storage: Storage) -> Path:
    """The directory of the database's relation files, `<data_directory>/base/<oid>`."""
    row = await storage.db.fetch_one(
        "SELECT current_setting('data_directory'),"
        " (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert row is not None
    folder = Path(row[0]) / "base" / str(row[1])
    if not await asyncio.to_thread(os.access, folder, os.R_OK | os.X_OK):
        pytest.skip(f"PostgreSQL's data directory is not readable here ({folder})")
    return folder


async def relation_names(storage: Storage) -> dict[str, str]:
    """Each relation file node of the database, by the relation's name (schema-qualified
    outside public: pg_toast.pg_toast_123, pg_catalog.pg_statistic)."""
    rows = await storage.db.fetch_all(
        "SELECT pg_relation_filenode(c.oid)::text,"
        " CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE pg_relation_filenode(c.oid) IS NOT NULL"
    )
    return {str(row[0]): str(row[1]) for row in rows}


async def files_holding(storage: Storage, *needles: str) -> dict[str, set[str]]:
    """After a CHECKPOINT (every dirty page written, files of dropped relations unlinked):
    for each needle found, the relations whose files hold it. Every file of the database is
    read: every segment (`node`, `node.1`, ...) and fork (`_fsm`, `_vm`) of every relation,
    and any file no relation owns (named as such)."""
    await storage.db.write_one("CHECKPOINT")
    folder = await database_directory(storage)
    names = await relation_names(storage)
    found: dict[str, set[str]] = {}
    for path, data in await asyncio.to_thread(_read_all, folder):
        node = path.name.split("_")[0].split(".")[0]
        for needle in needles:
            if needle.encode() in data:
                found.setdefault(needle, set()).add(names.get(node, f"file {path.name}"))
    return found


def _read_all(folder: Path) -> list[tuple[Path, bytes]]:
    read = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            try:
                read.append((path, path.read_bytes()))
            except FileNotFoundError:  # unlinked meanwhile
                continue
    return read


async def compact(storage: Storage, period: float = 3600.0) -> str:
    """A compaction pass, tried again while transactions that began before the deletions are
    still open: on a server shared with other work (this one runs other test workers), some
    were in flight when the deletions committed, and end a moment later."""
    for _ in range(300):
        outcome = await storage.db.compact_erased(period)
        if outcome != "blocked":
            return outcome
        await asyncio.sleep(0.1)
    raise AssertionError("older transactions held the compaction for 30 s")


async def relations_of(storage: Storage, *tables: str) -> set[str]:
    """The tables, their toast tables and every index of both, by the names `files_holding`
    gives them."""
    rows = await storage.db.fetch_all(
        "WITH t AS (SELECT c.oid, c.reltoastrelid FROM pg_class c"
        "  WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(?::text[]))"
        " SELECT oid FROM t"
        " UNION SELECT reltoastrelid FROM t WHERE reltoastrelid <> 0"
        " UNION SELECT i.indexrelid FROM pg_index i"
        "  JOIN t ON i.indrelid IN (t.oid, t.reltoastrelid)",
        (list(tables),),
    )
    names = await relation_names(storage)
    nodes = await storage.db.fetch_all(
        "SELECT pg_relation_filenode(oid)::text FROM unnest(?::oid[]) AS oid",
        ([int(row[0]) for row in rows],),
    )
    return {names[str(row[0])] for row in nodes}


async def toast_of(storage: Storage, table: str) -> str:
    row = await storage.db.fetch_one(
        "SELECT 'pg_toast.' || t.relname FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ?",
        (table,),
    )
    assert row is not None
    return str(row[0])
