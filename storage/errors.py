"""The storage layer's own exceptions. Nothing above `storage/` sees a driver's error type.

Each backend translates aiosqlite/sqlite3 or asyncpg errors into these:

    StorageError                  anything the database refused or failed to do
    ├── RetryableStorageError     worth trying again soon: a serialization failure, a deadlock
    │   └── StorageUnavailable    the database cannot be used right now: locked past the busy
    │                             timeout, disk full, read-only, connection lost or refused
    ├── IntegrityViolation        a constraint refused the write (a bug, not a condition)
    └── SchemaTooNew              the database was migrated by a newer Mnemo
"""

from __future__ import annotations


class StorageError(Exception):
    """The database refused or failed an operation. Messages never contain a password."""


class RetryableStorageError(StorageError):
    """A transient failure: the same operation may well succeed if tried again."""


class StorageUnavailable(RetryableStorageError):
    """The database cannot be reached or written right now (locked, full, connection lost)."""


class IntegrityViolation(StorageError):
    """A unique, foreign-key or check constraint refused a write."""


class SchemaTooNew(StorageError):
    """The database holds migrations this Mnemo does not know: a newer Mnemo wrote it."""


class DatabaseURLError(StorageError, ValueError):
    """DATABASE_URL is malformed or names an unknown backend."""
