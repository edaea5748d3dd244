"""Shared fixtures: settings, tokenizer, real SQLite storage, and the loopback fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.llm import LLMClient
from bot.memory import MemoryEngine
from bot.tokens import OFFLINE_ENCODING, Tokenizer, load_encoding
from storage import Storage
from tests.fakes.llm_server import FakeLLM

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    # Tests never touch the network: use the bundled encoding directly.
    return Tokenizer(load_encoding("gpt-4o", OFFLINE_ENCODING))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "mnemo.db"


@pytest.fixture
def make_settings(db_path: Path) -> SettingsFactory:
    """Settings as a user would write them in .env, with per-test overrides."""

    def make(**overrides: object) -> Settings:
        env = {
            "DISCORD_TOKEN": "test-token",
            "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "DATABASE_URL": f"sqlite:///{db_path}",
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
async def storage(db_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(db_path)
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
        storage = await Storage.open(settings.database_path)
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
