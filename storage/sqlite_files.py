"""What only a SQLite *file* needs before it is opened: one process at a time, a refusal of a
database from a newer Mnemo, and a copy of an existing database before migrations change it.

`prepare()` runs before the connection of `storage.database` is opened, on a thread (file
system calls and the backup block). Each failure raises `DatabaseUnusable`, whose message is
one line for the operator: what is wrong and what to do.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from storage.database import Database
from storage.sqlite import SQLiteDatabase

log = logging.getLogger(__name__)

BACKUP_SUFFIX = ".bak"
# Backups hold members' messages, erased ones included: owner only.
BACKUP_FILE_MODE = 0o600


class DatabaseUnusable(Exception):
    """The database cannot be used; the message says why and what to do, in one line."""


@dataclass(eq=False)
class _HeldLock:
    fd: int
    users: int = 1


@dataclass(eq=False)
class FileGuard:
    """The single-instance lock on one database file, held until `release()`."""

    key: str
    released: bool = field(default=False)

    def release(self) -> None:
        if not self.released:
            self.released = True
            _release(self.key)


# The locks this process holds, by database file. A lock is per process, not per connection:
# tests (and tools) may open one file twice in one process, but a second *process* is refused.
# flock() locks belong to an open file description, so a second open() in this process would
# conflict with the first; hence one descriptor per file, shared and counted.
_held: dict[str, _HeldLock] = {}
_held_guard = threading.Lock()


async def prepare(
    path: Path, *, newest_schema: int, backups: int, backup_max_age: float | None = None
) -> FileGuard:
    """Make sure `path` can be opened by this process alone, refuse a newer schema, and back
    the database up when migrations are about to change it (keeping the last `backups`);
    backups older than `backup_max_age` seconds are deleted."""
    guard = await asyncio.to_thread(_prepare, path, newest_schema, backups)
    if backup_max_age is not None:
        await asyncio.to_thread(expire_backups, path, backup_max_age)
    return guard


def expire_backups(path: Path, max_age: float, now: float | None = None) -> int:
    """Delete the backups of `path` made more than `max_age` seconds ago: a backup holds what
    users erased since it was made, so it must not outlive the time the docs promise."""
    now = time.time() if now is None else now
    expired = 0
    for copy in backups_of(path):
        try:
            if now - copy.stat().st_mtime > max_age:
                copy.unlink()
                expired += 1
        except FileNotFoundError:
            continue
    if expired:
        log.info("Deleted %d database backups older than %.0f days", expired, max_age / 86400)
    return expired


def _prepare(path: Path, newest_schema: int, backups: int) -> FileGuard:
    # Everything that only reads comes first: a path that is not Mnemo's database must be
    # refused before anything (the lock file, a folder) is created beside it.
    if path.is_dir():
        raise DatabaseUnusable(
            f"DATABASE_URL points to {path}, which is a folder: give the path of a file"
            " inside it, e.g. sqlite:///data/mnemo.db"
        )
    _check_writable(path)
    refuse_newer_schema(path, _schema_version(path), newest_schema)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnusable(
            f"cannot create the folder {path.parent} for the database ({error.strerror}):"
            " create it, or point DATABASE_URL somewhere writable"
        ) from None
    guard = _acquire(path)
    try:
        version = _schema_version(path)  # again: another process may have migrated it
        refuse_newer_schema(path, version, newest_schema)
        if backups > 0 and 0 < version < newest_schema:
            backup(path, version, keep=backups)
    except BaseException:
        guard.release()
        raise
    return guard


def lock_path(path: Path) -> Path:
    """The lock file beside the database: `mnemo.db` → `mnemo.db.lock`."""
    return path.with_name(path.name + ".lock")


def _acquire(path: Path) -> FileGuard:
    key = os.path.realpath(path)
    with _held_guard:
        held = _held.get(key)
        if held is not None:
            held.users += 1
            return FileGuard(key)
        lock_file = lock_path(path)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise _not_writable(path.parent, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise DatabaseUnusable(
                    f"another Mnemo process{holder} is already using {path}: stop it first;"
                    " two bots on one database would answer every message twice"
                ) from None
            raise DatabaseUnusable(f"cannot lock {lock_file} ({error.strerror})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = _HeldLock(fd)
    return FileGuard(key)


def _release(key: str) -> None:
    with _held_guard:
        held = _held.get(key)
        if held is None:
            return
        held.users -= 1
        if held.users == 0:
            del _held[key]
            os.close(held.fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _check_writable(path: Path) -> None:
    if not path.exists():
        return
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError as error:
        raise _not_writable(path, error) from None


def _not_writable(where: Path, error: OSError) -> DatabaseUnusable:
    if error.errno == errno.EROFS:
        reason = "is on a read-only file system"
    elif error.errno in (errno.EACCES, errno.EPERM):
        reason = f"is not writable by this user (uid {os.getuid()})"
    else:
        reason = f"cannot be written ({error.strerror})"
    return DatabaseUnusable(
        f"{where} {reason}: Mnemo writes the database and its -wal, -shm and .lock files"
        " there; fix the permissions or point DATABASE_URL somewhere writable"
    )


def _schema_version(path: Path) -> int:
    """PRAGMA user_version of an existing file, read-only; 0 for a new or empty one."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error):
            raise DatabaseUnusable(
                f"{path} is not a SQLite database: point DATABASE_URL at Mnemo's database,"
                " or move that file away to start with a new one"
            ) from None
        raise describe(path, error) from None


def refuse_newer_schema(path: Path, found: int, newest: int) -> None:
    """A database migrated by a newer Mnemo may hold what this one cannot read or keep."""
    if found > newest:
        raise DatabaseUnusable(
            f"{path} was written by a newer Mnemo (schema {found}; this one knows up to"
            f" {newest}): upgrade Mnemo, or restore a backup made before the upgrade"
        )


def backup(path: Path, version: int, *, keep: int) -> Path:
    """Copy the database (through SQLite's backup API: a consistent copy even of a WAL
    database) to `<name>.v<version>-<UTC time>.bak` beside it; keep the newest `keep`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.v{version}-{stamp}{BACKUP_SUFFIX}")
    partial = target.with_name(target.name + ".partial")
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            os.close(os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, BACKUP_FILE_MODE))
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
        partial.chmod(BACKUP_FILE_MODE)
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DatabaseUnusable(
            f"could not back up {path} before upgrading it ({error}): free some disk space,"
            " or set DB_BACKUPS=0 to upgrade without a backup"
        ) from None
    log.info("Backed up %s (schema %d) to %s before upgrading it", path, version, target.name)
    for old in backups_of(path)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def backups_of(path: Path) -> list[Path]:
    """The backups of `path`, oldest first (their names sort by time)."""
    found = path.parent.glob(f"{path.name}.v*{BACKUP_SUFFIX}")
    return sorted(found, key=lambda p: p.name.rsplit("-", 1)[-1])


def describe(path: Path, error: BaseException) -> DatabaseUnusable:
    """One line for an error SQLite raised while opening or migrating the database."""
    text = str(error)
    if "readonly" in text:
        return DatabaseUnusable(
            f"{path} is read-only for this user (uid {os.getuid()}): fix the permissions of"
            " the file and its folder, or point DATABASE_URL somewhere writable"
        )
    if "locked" in text:
        return DatabaseUnusable(
            f"{path} is locked by another program (a sqlite3 shell, a backup tool?): close it"
            " and start Mnemo again"
        )
    if "not a database" in text or "malformed" in text:
        return DatabaseUnusable(
            f"{path} is damaged or not a SQLite database ({text}): restore a backup, or move"
            " it away to start with a new one"
        )
    if "full" in text:
        return DatabaseUnusable(f"the disk holding {path} is full: free some space")
    return DatabaseUnusable(f"cannot open the database {path} ({text})")


def _readonly_uri(path: Path) -> str:
    if not path.is_file():
        raise DatabaseUnusable(f"{path} does not exist yet: Mnemo creates it when it starts")
    _schema_version(path)  # a clear line for a file that is no database
    return f"{path.resolve().as_uri()}?mode=ro"


async def open_readonly(path: Path) -> Database:
    """A read-only connection for checks (`mnemo health`) while the bot may be running: no
    lock (the bot holds it), no migration, nothing created. Raises DatabaseUnusable."""
    uri = await asyncio.to_thread(_readonly_uri, path)
    try:
        conn = await aiosqlite.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise describe(path, error) from None
    conn.row_factory = aiosqlite.Row
    return SQLiteDatabase(conn, path)
