"""PostgreSQL for the benchmarks: BENCH_DATABASE_URL (or TEST_DATABASE_URL) names a server;
each benchmark fills a database of its own there, `mnemo_bench_<pid>_<random>`, dropped after.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from storage.url import redact

__all__ = ["NOT_SET", "redact", "server_url", "temporary_database"]

NOT_SET = (
    "PostgreSQL not measured: set BENCH_DATABASE_URL (or TEST_DATABASE_URL), e.g."
    " postgresql://postgres@127.0.0.1:5432/test, to measure it beside SQLite in the same run."
)


def server_url() -> str | None:
    for name in ("BENCH_DATABASE_URL", "TEST_DATABASE_URL"):
        if value := os.environ.get(name, "").strip():
            return value
    return None


@asynccontextmanager
async def temporary_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of `admin_url`; dropped on exit, whatever happens."""
    import asyncpg

    name = f"mnemo_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
