"""The composition root: how the process's LLM client and memory engine are made.

`python -m bot` (through `bot.client.bot.MemoryBot.setup_hook`), the tests and the bench all
build them here, so the three run the same assembly. Nothing here imports discord: the engine
side of Mnemo is complete without Discord.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from bot.config import Settings
from bot.engine.engine import MemoryEngine
from bot.model.llm import LLMClient
from bot.model.tokens import Tokenizer, load_tokenizer
from storage import Storage


def make_llm(settings: Settings) -> LLMClient:
    """The one LLM client of the process."""
    return LLMClient(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        reply_deadline=settings.reply_deadline_seconds,
        parallel=settings.model_parallel,
        parallel_auto=settings.model_parallel_auto,
        parallel_max=settings.model_parallel_max,
        embedding_base_url=settings.embedding_base_url,
    )


async def make_tokenizer(settings: Settings) -> Tokenizer:
    return await load_tokenizer(settings.chat_model, settings.tokenizer_encoding)


def make_engine(
    storage: Storage,
    llm: LLMClient,
    tokenizer: Tokenizer,
    settings: Settings,
    *,
    engine_class: type[MemoryEngine] = MemoryEngine,
    **options: Any,
) -> MemoryEngine:
    """The memory engine over an open database; `start()` it before use. `options` are the
    engine's keyword arguments (a clock, retry delays) for tests and the bench."""
    return engine_class(storage, llm, tokenizer, settings, **options)


@asynccontextmanager
async def running_engine(
    settings: Settings,
    *,
    tokenizer: Tokenizer | None = None,
    engine_class: type[MemoryEngine] = MemoryEngine,
    **options: Any,
) -> AsyncIterator[MemoryEngine]:
    """A started engine with its own database and LLM client, all three closed on exit in
    the order the bot closes them (engine, then client, then database)."""
    async with AsyncExitStack() as stack:
        storage = await Storage.open(settings.database_url)
        stack.push_async_callback(storage.close)
        llm = make_llm(settings)
        stack.push_async_callback(llm.close)
        tokenizer = tokenizer or await make_tokenizer(settings)
        engine = make_engine(
            storage, llm, tokenizer, settings, engine_class=engine_class, **options
        )
        stack.push_async_callback(engine.close)
        await engine.start()
        yield engine
