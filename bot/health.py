"""`mnemo health` (or `python -m bot --check`): is the running bot, and what it needs, fine?

For process managers and containers (the Dockerfile's HEALTHCHECK). One line per check:

- settings: the same validation as at start-up;
- database: it exists, is a SQLite database, and its schema is this Mnemo's (read-only, no
  lock: the running bot holds that);
- model server: it answers `GET /models` within 5 s (bot.model.probe);
- heartbeat: the running bot wrote it within HEARTBEAT_FRESH_SECONDS. The bot writes it every
  HEARTBEAT_SECONDS while it is connected to Discord's gateway, so a stale heartbeat means the
  bot is not running, is stuck, or has lost Discord for over a minute.

Exits 0 when every check passes, else 1 (Docker reads 0 and 1; it reserves 2).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime

from bot.app import make_llm
from bot.config import ConfigError, Settings
from bot.model.llm import loggable_url
from bot.model.probe import ask_for_models, health_problem
from bot.runtime.heartbeat import HEARTBEAT_FRESH_SECONDS, HEARTBEAT_KEY
from bot.startup import database_in_use
from storage import DatabaseUnusable, Storage, StorageError
from storage.database import newest_schema_version

HEALTHY, UNHEALTHY = 0, 1


def main(env_file: str | None = None) -> int:
    try:
        settings = Settings.from_env(env_file=env_file)
    except ConfigError as error:
        _report("settings", str(error))
        return UNHEALTHY
    _report("settings", None)
    if settings.ignored:
        print(f"settings: warning: ignored (not read by Mnemo): {settings.ignored}")
    return asyncio.run(check(settings))


async def check(settings: Settings) -> int:
    heartbeat, database = await check_database(settings)
    model_server = await check_model_server(settings)
    beat = check_heartbeat(heartbeat) if database is None else "not read (no database)"
    _report("database", database, database_in_use(settings))
    _report("model server", model_server, _base_url(settings))
    _report("heartbeat", beat, _age(heartbeat))
    healthy = database is None and model_server is None and beat is None
    print("healthy" if healthy else "unhealthy")
    return HEALTHY if healthy else UNHEALTHY


async def check_database(settings: Settings) -> tuple[str | None, str | None]:
    """(the heartbeat as stored, a problem or None)."""
    try:
        if settings.database_url.path is None:  # PostgreSQL: a server to connect to
            storage = await Storage.open(settings.database_url)
        else:  # SQLite: read the file beside the running bot, without its lock
            storage = await Storage.open_readonly(settings.database_url.path)
    except (DatabaseUnusable, StorageError) as error:
        return None, str(error)
    try:
        version = await storage.db.schema_version()
        newest = newest_schema_version()
        if version > newest:
            return None, f"schema {version} is from a newer Mnemo (this one knows {newest})"
        if version < newest:
            return None, f"schema {version}, not yet upgraded to {newest}: start Mnemo"
        return await storage.state.get(HEARTBEAT_KEY), None
    except Exception as error:  # any database error means "not usable", in one line
        return None, f"cannot read it: {error}"
    finally:
        await storage.close()


async def check_model_server(settings: Settings) -> str | None:
    llm = make_llm(settings)
    try:
        return health_problem(await ask_for_models(llm), loggable_url(settings.model_base_url))
    finally:
        await llm.close()


def check_heartbeat(stored: str | None, now: float | None = None) -> str | None:
    if stored is None:
        return "none yet: the bot has not been connected to Discord with this database"
    age = heartbeat_age(stored, now)
    if age is None:
        return f"unreadable value {stored!r}"
    if age > HEARTBEAT_FRESH_SECONDS:
        return f"stale: {age:.0f} s old (fresh means under {HEARTBEAT_FRESH_SECONDS:.0f} s)"
    return None


def heartbeat_age(stored: str, now: float | None = None) -> float | None:
    try:
        written = datetime.fromisoformat(stored).timestamp()
    except ValueError:
        return None
    return (time.time() if now is None else now) - written


def _age(stored: str | None) -> str:
    age = heartbeat_age(stored) if stored else None
    return f"{max(age, 0):.0f} s ago" if age is not None else ""


def _base_url(settings: Settings) -> str:
    """OPENAI_BASE_URL as the logs show it: without credentials (bot.model.llm.loggable_url)."""
    return loggable_url(settings.model_base_url)


def _report(name: str, problem: str | None, detail: str = "") -> None:
    if problem is None:
        print(f"{name}: ok{': ' + detail if detail else ''}")
    else:
        print(f"{name}: FAIL: {problem}")
    sys.stdout.flush()
