"""Memory engines for tests: the `engines` fixture's pool, and a user's turn through one."""

from __future__ import annotations

from collections.abc import Callable

from bot.app import make_engine, make_llm
from bot.config import Settings
from bot.engine.engine import IncomingMessage, MemoryEngine, Outcome
from bot.model.tokens import Tokenizer
from storage import Storage
from storage.models import SessionKey
from tests.helpers.storage import next_discord_id

SettingsFactory = Callable[..., Settings]
"""The `make_settings` fixture: Settings as a user writes them in .env, with overrides."""

A_MINUTES_START = 1_800_000_000.0  # divisible by 60: the first second of a rate window


def hold_in_one_rate_window(engine: MemoryEngine) -> None:
    """Count every message of the test in one per-minute rate window.

    The rate is counted in fixed windows of the wall clock; a test that crossed a minute's
    boundary would start a fresh count and see a message it expected refused answered.
    """
    engine.limits._clock = lambda: A_MINUTES_START


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
        llm = make_llm(settings)
        # Background retries after 10 ms, not seconds: tests wait for them.
        engine = make_engine(storage, llm, self._tokenizer, settings, job_retry_delays=(0.01,))
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


# Settings for summaries after a few turns (SUMMARY_TRIGGER_TOKENS 200, not 2000), the newest
# 60 tokens kept out of them.
SMALL = {"summary_trigger_tokens": 200, "summary_keep_recent_tokens": 60}


def said(key: SessionKey, text: str, name: str = "Alice") -> IncomingMessage:
    """`name`'s message `text` in `key`'s conversation, with a Discord id of its own."""
    return IncomingMessage(key=key, discord_id=next_discord_id(), content=text, author_name=name)


async def chat(engine: MemoryEngine, key: SessionKey, *texts: str) -> None:
    for text in texts:
        result = await engine.reply(said(key, text))
        assert result.outcome is Outcome.ANSWERED
