"""Shared fixtures: settings, tokenizer, real SQLite storage, and the loopback fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.tokens import OFFLINE_ENCODING, Tokenizer, load_encoding
from storage import Storage

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
        }
        env.update({key.upper(): str(value) for key, value in overrides.items()})
        return Settings.from_env(env)

    return make


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(db_path)
    yield store
    await store.close()
