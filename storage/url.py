"""DATABASE_URL: which backend, where, and a form that is safe to print.

    sqlite:///relative/path.db     a file, relative to the working directory (the default)
    sqlite:////absolute/path.db    an absolute path
    postgresql://user:password@host:5432/dbname   (postgres:// too, as hosts set it)

PostgreSQL URLs take three options of Mnemo's own in the query string, removed before the URL
reaches asyncpg: `pool_size` (connections per process, default 10), `statement_cache_size`
(prepared statements cached per connection, default 100; 0 behind PgBouncer in transaction
mode) and `command_timeout` (seconds a statement may take before it fails as "database
unavailable", default 30; VACUUM, migrations, erasures and retention passes are not bounded
by it).
Any other query parameter (`sslmode=require`, …) goes to asyncpg as it is.

A password is never shown: `str()`, `repr()` and `redacted()` print `***` in its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from storage.errors import DatabaseURLError

Backend = Literal["sqlite", "postgres"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_SIZE = 10
DEFAULT_STATEMENT_CACHE_SIZE = 100
DEFAULT_COMMAND_TIMEOUT = 30
SECRET = "***"
# Query-string keys whose values are hidden: a password, and what model servers and proxies
# take as credentials (`?api-key=`, `?key=`, `?token=`, `?access_token=`, `?sig=`, ...).
SECRET_KEY_PARTS = ("pass", "key", "token", "secret", "sig", "auth", "credential")


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed DATABASE_URL. `dsn` holds the secret; nothing else shows it."""

    backend: Backend
    dsn: str = field(repr=False)
    path: Path | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    statement_cache_size: int = DEFAULT_STATEMENT_CACHE_SIZE
    command_timeout: int = DEFAULT_COMMAND_TIMEOUT

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        url = url.strip()
        if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
            # sqlite:///data/x.db -> "data/x.db" (relative); sqlite:////srv/x.db -> "/srv/x.db".
            return cls.sqlite(Path(url[len(SQLITE_PREFIX) :]))
        scheme = url.partition(":")[0].lower()
        if scheme in POSTGRES_SCHEMES and url[len(scheme) :].startswith("://"):
            return cls._postgres(url)
        raise DatabaseURLError(
            "DATABASE_URL must look like sqlite:///relative/path.db, sqlite:////absolute/path.db"
            f" or postgresql://user:password@host:5432/dbname, got {redact(url)!r}"
        )

    @classmethod
    def sqlite(cls, path: Path) -> DatabaseURL:
        return cls("sqlite", f"{SQLITE_PREFIX}{path}", path=path)

    @classmethod
    def _postgres(cls, url: str) -> DatabaseURL:
        parts = urlsplit(url)
        options = {
            "pool_size": DEFAULT_POOL_SIZE,
            "statement_cache_size": DEFAULT_STATEMENT_CACHE_SIZE,
            "command_timeout": DEFAULT_COMMAND_TIMEOUT,
        }
        kept = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in options:
                kept.append((name, value))
                continue
            minimum = 0 if name == "statement_cache_size" else 1
            if not value.isdigit() or int(value) < minimum:
                raise DatabaseURLError(
                    f"DATABASE_URL option {name} must be a whole number of at least {minimum},"
                    f" got {value!r}"
                )
            options[name] = int(value)
        dsn = urlunsplit(parts._replace(query=urlencode(kept)))
        return cls(
            "postgres",
            dsn,
            None,
            options["pool_size"],
            options["statement_cache_size"],
            options["command_timeout"],
        )

    def redacted(self) -> str:
        return redact(self.dsn)

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted()!r})"


def redact(url: str) -> str:
    """The URL with any password (in the authority) and any credential in the query string
    (see `SECRET_KEY_PARTS`) replaced by `***`."""
    if url.startswith("sqlite:"):
        return url  # a file path holds no secret (and urlunsplit would mangle its slashes)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}{':' + SECRET if colon else ''}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, SECRET if is_secret_key(k) else v) for k, v in pairs],
            safe="*",
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, url: DatabaseURL) -> str:
    """`text` (a driver's error message) with the URL's password removed, if it appears."""
    password = urlsplit(url.dsn).password
    if password:
        text = text.replace(password, SECRET)
    return text.replace(url.dsn, url.redacted())
