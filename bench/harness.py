"""Wiring shared by the benchmarks: the loopback LLM, settings, and real engines.

An engine here is the real thing: `MemoryEngine` over a real SQLite file (or the PostgreSQL
database of DATABASE_URL), talking through
`bot.model.llm.LLMClient` (the real openai SDK) to the loopback `FakeLLM` on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench import script
from bench.core import BenchError
from bot.config import Settings
from bot.engine.engine import IncomingMessage, Outcome, ReplyResult
from bot.model.tokens import OFFLINE_ENCODING, Tokenizer, load_tokenizer
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM

AUTHOR_NAME = "Alice"
BENCH_KEY = SessionKey(guild_id=1000, channel_id=2000, user_id=3000)


# One scripted user sends hundreds of messages in a minute or two: the per-user rate limit
# (USER_MESSAGES_PER_MINUTE, 10 by default) would refuse most of them, so the conversation
# benchmarks turn it off. Every other setting keeps its default.
NO_RATE_LIMIT = {"USER_MESSAGES_PER_MINUTE": "0"}


def bench_settings(base_url: str, database: Path, **overrides: str) -> Settings:
    """The bot's settings as an operator would write them, with the default budgets."""
    env = {
        "DISCORD_TOKEN": "x",
        "OPENAI_API_KEY": "x",
        "OPENAI_BASE_URL": base_url,
        "DATABASE_URL": f"sqlite:///{database}",
        "TOKENIZER_ENCODING": OFFLINE_ENCODING,  # never touch the network
        "LOG_LEVEL": "WARNING",
    }
    return Settings.from_env(env | overrides)


async def bench_tokenizer() -> Tokenizer:
    return await load_tokenizer("gpt-4o", OFFLINE_ENCODING)


@asynccontextmanager
async def loopback_llm(latency: float = 0.0) -> AsyncIterator[FakeLLM]:
    """The loopback OpenAI-compatible server, answering the scripted conversation."""
    fake = FakeLLM(responder=script.answer, json_responder=script.extract_facts, latency=latency)
    async with fake:
        yield fake


class Speaker:
    """Turns script lines into `IncomingMessage`s with fresh Discord ids."""

    def __init__(self, key: SessionKey = BENCH_KEY, first_id: int = 10**12) -> None:
        self.key = key
        self._next_id = first_id

    def says(self, text: str, key: SessionKey | None = None) -> IncomingMessage:
        self._next_id += 1
        return IncomingMessage(
            key=key or self.key, discord_id=self._next_id, content=text, author_name=AUTHOR_NAME
        )


def answered(result: ReplyResult) -> ReplyResult:
    """The result, if the engine answered; a failed reply would make every figure wrong."""
    if result.outcome is not Outcome.ANSWERED:
        error = result.error
        detail = f"{error.user_message} ({error.__cause__!r})" if error else result.outcome.value
        raise BenchError(f"the engine did not answer: {detail}")
    return result


def call_kind(body: dict[str, Any]) -> str:
    """'chat', 'summary' or 'facts': which part of the bot made a recorded LLM call."""
    if body.get("response_format"):
        return "facts"
    return "summary" if script.is_summary_call(body) else "chat"
