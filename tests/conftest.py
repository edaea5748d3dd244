"""Shared fixtures: settings, tokenizer, real storage (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set), and the loopback fakes.

A test module marked `pytestmark = pytest.mark.both_backends` runs each of its database tests
twice, `[sqlite]` and `[postgres]` (a test marked `sqlite_only` or `postgres_only` runs once).
The PostgreSQL runs are skipped, with the reason and a line in the summary, when
TEST_DATABASE_URL is not set.

Tests that start processes (the bot, a fleet of them, a fresh virtualenv) are marked `slow`:
`pytest -m "not slow"` leaves them out. They run first, the longest first, so that under
pytest-xdist (`make test` runs `-n 4 --dist worksteal`) the few long ones overlap the many
short ones (see pytest_collection_modifyitems). Each xdist worker is a process of its own, with
its own PostgreSQL database (see tests/helpers/postgres.py); the PostgreSQL line of the summary is
counted on the controller from the test reports, which say which backend each test ran on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.client.bot import MemoryBot, create_bot
from bot.client.splitter import utf16_len
from bot.config import Settings
from bot.engine.engine import MemoryEngine
from bot.model.llm import LLMClient
from bot.model.tokens import OFFLINE_ENCODING, Tokenizer, load_encoding
from storage import Storage
from tests.fakes.discord_server import BotMessage, FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.postgres import PostgresForTests

SettingsFactory = Callable[..., Settings]
POSTGRES = pytest.StashKey[PostgresForTests]()
# A test report's user_properties name its backend and, for PostgreSQL, the database it ran on:
# the reports reach the xdist controller, which collects no tests of its own.
BACKEND_PROPERTY = "mnemo_backend"
DATABASE_PROPERTY = "mnemo_postgres_database"


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    # Tests never touch the network: use the bundled encoding directly.
    return Tokenizer(load_encoding("gpt-4o", OFFLINE_ENCODING))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "mnemo.db"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the module's tests on each backend")
    config.addinivalue_line("markers", "sqlite_only: a SQLite-specific test in such a module")
    config.addinivalue_line("markers", "postgres_only: a PostgreSQL-specific test in one")
    config.addinivalue_line(
        "markers", "slow: starts processes (the bot, a fleet, a virtualenv); -m 'not slow' skips"
    )
    config.stash[POSTGRES] = PostgresForTests.from_env()


def pytest_unconfigure(config: pytest.Config) -> None:
    if (server := config.stash.get(POSTGRES, None)) is not None:
        server.drop()  # the run's own database, dropped even when tests failed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker("both_backends") is not None
    only = [
        name
        for name in ("sqlite", "postgres")
        if metafunc.definition.get_closest_marker(f"{name}_only") is not None
    ]
    backends = (only or ["sqlite", "postgres"]) if both else ["sqlite"]
    metafunc.parametrize("backend", backends, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, the longest (the largest timeout) first, each followed by a quick one:
    xdist's worksteal never takes the test queued right behind a running one, so what waits
    behind a long test is short. Every xdist worker computes the same order."""
    slow = sorted(
        (item for item in items if item.get_closest_marker("slow") is not None),
        key=lambda item: -_timeout_of(item),
    )
    quick = iter([item for item in items if item.get_closest_marker("slow") is None])
    order: list[pytest.Item] = []
    for item in slow:
        order.append(item)
        order.extend(itertools.islice(quick, 1))
    items[:] = [*order, *quick]


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker is not None and marker.args else 0.0


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("backend")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if _backend_of(item) == "postgres":
        report.user_properties.append((BACKEND_PROPERTY, "postgres"))
        server = item.config.stash.get(POSTGRES, None)
        if server is not None and server.created:
            report.user_properties.append((DATABASE_PROPERTY, server.database_name))
    return report


def _properties(report: Any) -> dict[str, Any]:
    # A list of pairs; from an xdist worker, the pairs may arrive as lists.
    return {name: value for name, value in getattr(report, "user_properties", ())}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line on the PostgreSQL tests, from the reports (which under xdist come from the
    workers): how many ran and on which databases, or that none ran and why."""
    server = config.stash.get(POSTGRES, None)
    reports = [
        report
        for key in ("passed", "failed", "skipped", "error")
        for report in terminalreporter.stats.get(key, [])
        if _properties(report).get(BACKEND_PROPERTY) == "postgres"
    ]
    if server is None or not reports:
        return
    ran = [r for r in reports if r.when == "call" and not r.skipped]
    skipped = [r for r in reports if r.skipped]
    databases = sorted({_properties(r).get(DATABASE_PROPERTY) for r in reports} - {None})
    if server.admin_url is None:
        terminalreporter.write_line(
            f"PostgreSQL: {len(skipped)} tests NOT RUN: TEST_DATABASE_URL is not set"
            " (e.g. TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test)",
            yellow=True,
            bold=True,
        )
    else:
        terminalreporter.write_line(
            f"PostgreSQL: {len(ran)} tests ran on {', '.join(databases) or 'no database'}"
            f" at {server.redacted}"
        )


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of this test: `sqlite` unless the test is parametrized otherwise."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def database_url(request: pytest.FixtureRequest, backend: str, db_path: Path) -> str:
    """The test's own empty database: a fresh SQLite file, or a fresh schema in this run's
    PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{db_path}"
    server: PostgresForTests = request.config.stash[POSTGRES]
    if server.admin_url is None:
        pytest.skip("PostgreSQL tests not run: TEST_DATABASE_URL is not set")
    return await server.fresh_database()


@pytest.fixture
def make_settings(database_url: str) -> SettingsFactory:
    """Settings as a user would write them in .env, with per-test overrides."""

    def make(**overrides: object) -> Settings:
        env = {
            "DISCORD_TOKEN": "test-token",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "DATABASE_URL": database_url,
            "TOKENIZER_ENCODING": OFFLINE_ENCODING,
            "LLM_TIMEOUT_SECONDS": "5",
            "LLM_MAX_RETRIES": "0",
            "REPLY_DEADLINE_SECONDS": "10",
            "USER_MESSAGES_PER_MINUTE": "0",  # tests send fast; the limit has its own test
        }
        env.update({key.upper(): str(value) for key, value in overrides.items()})
        return Settings.from_env(env)

    return make


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    store = await Storage.open(database_url)
    yield store
    await store.close()


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    server = FakeLLM()
    await server.start()
    yield server
    await server.close()


class Engines:
    """Memory engines wired to a real SQLite file and the loopback LLM over HTTP.

    `start()` opens one like the bot's setup_hook does; `stop()` closes it like the bot's
    close(). Starting another on the same database is a restart.
    """

    def __init__(self, make_settings: SettingsFactory, tokenizer: Tokenizer, llm_url: str):
        self._make_settings = make_settings
        self._tokenizer = tokenizer
        self._llm_url = llm_url
        self._open: list[MemoryEngine] = []

    async def start(self, **overrides: object) -> MemoryEngine:
        overrides = {"facts_idle_seconds": 3600, **overrides}
        settings = self._make_settings(openai_base_url=self._llm_url, **overrides)
        storage = await Storage.open(settings.database_url)
        llm = LLMClient(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            reply_deadline=settings.reply_deadline_seconds,
        )
        # Background retries after 10 ms, not seconds: tests wait for them.
        engine = MemoryEngine(storage, llm, self._tokenizer, settings, job_retry_delays=(0.01,))
        await engine.start()
        self._open.append(engine)
        return engine

    async def stop(self, engine: MemoryEngine, grace: float = 1.0) -> None:
        self._open.remove(engine)
        await engine.close(grace)
        await engine.llm.close()
        await engine.storage.close()

    async def stop_all(self) -> None:
        for engine in list(self._open):
            await self.stop(engine)


@pytest.fixture
async def engines(
    make_settings: SettingsFactory, tokenizer: Tokenizer, fake_llm: FakeLLM
) -> AsyncIterator[Engines]:
    pool = Engines(make_settings, tokenizer, fake_llm.base_url)
    yield pool
    await pool.stop_all()


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    server.install()
    yield server
    await server.close()


class Bots:
    """The real MemoryBot, connected to the loopback Discord and the loopback LLM."""

    def __init__(self, make_settings: SettingsFactory, discord: FakeDiscord, llm: FakeLLM):
        self._make_settings = make_settings
        self._discord = discord
        self._llm = llm
        self._running: dict[MemoryBot, asyncio.Task[None]] = {}

    async def start(self, **overrides: object) -> MemoryBot:
        overrides = {"facts_idle_seconds": 3600, **overrides}
        settings = self._make_settings(openai_base_url=self._llm.base_url, **overrides)
        bot = create_bot(settings, guild_ready_timeout=0.1)
        identified = self._discord.identify_count
        task = asyncio.create_task(bot.start(settings.discord_token))
        self._running[bot] = task
        await self._discord.wait_identify(identified + 1)
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        return bot

    async def stop(self, bot: MemoryBot) -> None:
        task = self._running.pop(bot)
        await bot.close()
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for bot in list(self._running):
            await self.stop(bot)


class TracebackRecorder(logging.Handler):
    """Collects log records that carry a traceback: an unhandled exception somewhere."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture
async def bots(
    make_settings: SettingsFactory, fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> AsyncIterator[Bots]:
    running = Bots(make_settings, fake_discord, fake_llm)
    recorder = TracebackRecorder()
    logging.getLogger().addHandler(recorder)
    try:
        yield running
        await running.stop_all()
    finally:
        logging.getLogger().removeHandler(recorder)
    await check_invariants(fake_discord, db_path)
    assert not recorder.records, [r.getMessage() for r in recorder.records]


async def check_invariants(discord: FakeDiscord, db_path: Path) -> None:
    """What must hold after every end-to-end test."""
    assert discord.unknown_requests == [], discord.unknown_requests
    for request in discord.requests:
        unknown_member = (
            request.status == 404 and request.method == "GET" and "/members/" in request.path
        )  # "not a member" is an answer (a DM under the allow-lists), not a refusal
        if request.status >= 400 and not request.injected and not unknown_member:
            raise AssertionError(f"Discord refused {request.method} {request.path}: {request.json}")
        body = request.json if isinstance(request.json, dict) else None
        if body is None or request.method not in ("POST", "PATCH"):
            continue
        data = body.get("data", body) if "/callback" in request.path else body
        if not isinstance(data, dict):
            continue
        content = data.get("content")
        if content is not None:
            assert 0 < utf16_len(content) <= 2000, request.path
        if (
            "/messages" in request.path
            and not request.path.endswith("/threads")  # starting a thread sends no message
            and request.method == "POST"
            and "/webhooks/" not in request.path
        ):
            mentions = data.get("allowed_mentions")
            assert mentions is not None and mentions.get("parse") == [], (request.path, mentions)
            assert not mentions.get("users") and not mentions.get("roles")
            assert not mentions.get("replied_user")
            assert data.get("flags", 0) & 4, "link previews must be suppressed"
    if await asyncio.to_thread(db_path.exists):
        store = await Storage.open(db_path)
        try:
            assert await store.db.integrity_ok()
        finally:
            await store.close()


async def settled(discord: FakeDiscord, channel_id: int, quiet: float = 0.8) -> list[BotMessage]:
    """The bot's live messages in a channel once none was created or edited for `quiet` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        messages = discord.bot_messages(channel_id)
        latest = max((m.updated_at for m in messages), default=0.0)
        if messages and time.monotonic() - latest >= quiet:
            return [m for m in messages if not m.deleted]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"channel {channel_id} did not settle")
