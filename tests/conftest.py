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

import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.model.tokens import OFFLINE_ENCODING, Tokenizer, load_encoding
from storage import Storage
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, TracebackRecorder, check_invariants  # tests_real/ too
from tests.helpers.engines import Engines, SettingsFactory
from tests.helpers.postgres import PostgresForTests

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
