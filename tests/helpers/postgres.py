"""The PostgreSQL server of a test run, from TEST_DATABASE_URL.

The run creates its own database, `mnemo_test_<pid>_<random>`, on first use and drops it at
the end, also when tests failed; databases left by runs that were killed are dropped at the
next run's start. Each test gets an empty `public` schema in it. Under pytest-xdist each
worker is a process of its own: each has its own database, created and dropped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from storage.url import redact

_OURS = re.compile(r"mnemo_test_(\d+)_[0-9a-f]+")


@dataclass
class PostgresForTests:
    admin_url: str | None
    database_name: str = field(
        default_factory=lambda: f"mnemo_test_{os.getpid()}_{secrets.token_hex(4)}"
    )
    created: bool = False

    @classmethod
    def from_env(cls) -> PostgresForTests:
        return cls(os.environ.get("TEST_DATABASE_URL", "").strip() or None)

    @property
    def redacted(self) -> str:
        return redact(self.admin_url or "")

    @property
    def url(self) -> str:
        assert self.admin_url is not None
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{self.database_name}"))

    async def fresh_database(self) -> str:
        """The run's database with an empty public schema: a test's clean start."""
        import asyncpg

        if not self.created:
            await self._create()
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await connection.close()
        return self.url

    async def _create(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.admin_url)
        try:
            for row in await connection.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'mnemo_test_%'"
            ):
                match = _OURS.fullmatch(row["datname"])
                if match and not _alive(int(match.group(1))):
                    # Another worker of this run may be dropping the same leftover just now.
                    with contextlib.suppress(asyncpg.PostgresError):
                        await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}"')
            await connection.execute(f'CREATE DATABASE "{self.database_name}"')
        finally:
            await connection.close()
        self.created = True

    def drop(self) -> None:
        if self.created:
            asyncio.run(self._drop())

    async def _drop(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        finally:
            await connection.close()
        self.created = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
