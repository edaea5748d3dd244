"""MODEL_PARALLEL=auto: the server's own number wins, a remote server is probed while its
latency stays flat, a local one that does not say is never probed up, and a fixed number is
used as it is. Through the real SDK over HTTP to the loopback LLM (which serves llama.cpp's
`GET /props` when told to), and the learning rule on its own."""

from __future__ import annotations

import asyncio

import pytest

from bot.config import ConfigError
from bot.engine.engine import IncomingMessage, MemoryEngine, Outcome
from bot.model.parallel import FLAT, RISING, SAMPLES, ParallelLimit
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM
from tests.helpers.engines import Engines, SettingsFactory

_ids = iter(range(90_000, 10**9))


def said(user_id: int, text: str) -> IncomingMessage:
    key = SessionKey(guild_id=100, channel_id=10, user_id=user_id)
    return IncomingMessage(key=key, discord_id=next(_ids), content=text, author_name="Alice")


async def burst(engine: MemoryEngine, users: int) -> None:
    results = await asyncio.gather(*(engine.reply(said(u, f"hi {u}")) for u in range(1, users + 1)))
    assert all(result.outcome is Outcome.ANSWERED for result in results), results


# -- the settings ----------------------------------------------------------------------------


def test_auto_is_the_default_and_a_number_fixes_it(make_settings: SettingsFactory) -> None:
    default = make_settings()
    assert default.model_parallel_auto and default.model_parallel == 1  # 127.0.0.1: one
    assert make_settings(model_parallel="auto") == default
    assert make_settings(model_parallel="0") == default  # 0 meant "guess" before: still does
    fixed = make_settings(model_parallel="3")
    assert not fixed.model_parallel_auto and fixed.model_parallel == 3
    remote = make_settings(openai_base_url="https://llm.example.com/v1")
    assert remote.model_parallel_auto and remote.model_parallel == 4
    assert default.model_parallel_max == 16
    with pytest.raises(ConfigError, match="MODEL_PARALLEL must be auto or a whole number"):
        make_settings(model_parallel="many")


# -- through the server ----------------------------------------------------------------------


async def test_the_servers_own_slots_win_and_a_burst_goes_at_its_pace(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    fake_llm.props = {"total_slots": 8, "default_generation_settings": {"n_ctx": 4096}}
    fake_llm.slots = 8
    fake_llm.latency = 0.2
    engine = await engines.start()
    assert engine.llm.scheduler.parallel == 1  # the guess for 127.0.0.1, until the server says
    assert (await engine.reply(said(1, "hello"))).outcome is Outcome.ANSWERED
    await engine.llm.slots_asked()
    assert engine.llm.scheduler.parallel == 8
    assert [r.path for r in fake_llm.requests].count("/props") == 1  # asked once
    fake_llm.peak_active = 0
    await burst(engine, 16)
    assert fake_llm.peak_active == 8  # eight at once: the server's pace, not one by one


async def test_the_server_number_is_capped_by_the_maximum(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    fake_llm.props = {"total_slots": 64}
    engine = await engines.start(model_parallel_max=6)
    await engine.reply(said(1, "hello"))
    await engine.llm.slots_asked()
    assert engine.llm.scheduler.parallel == 6


async def test_a_fixed_number_is_used_as_it_is(engines: Engines, fake_llm: FakeLLM) -> None:
    fake_llm.props = {"total_slots": 8}
    fake_llm.latency = 0.1
    engine = await engines.start(model_parallel=2)
    await burst(engine, 6)
    assert engine.llm.scheduler.parallel == 2 and fake_llm.peak_active == 2
    assert "/props" not in [r.path for r in fake_llm.requests]  # never asked


async def test_a_local_server_that_does_not_say_stays_at_one(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    """It may interrupt a running request for a new one (llama-cpp-python): never probed up,
    however flat its latency under a burst."""
    fake_llm.latency = 0.05
    engine = await engines.start()
    for _ in range(3):
        await burst(engine, 6)
    assert engine.llm.scheduler.parallel == 1 and fake_llm.peak_active == 1
    assert engine.llm.parallel_limit is not None and not engine.llm.parallel_limit.told


# -- the rule --------------------------------------------------------------------------------


def feed(limit: ParallelLimit, alone: float, at_limit: float, *, queued: bool = True) -> None:
    for _ in range(SAMPLES):
        limit.sample(alone, 1, queued)
        limit.sample(at_limit, limit.value, queued)


def test_a_remote_server_with_flat_latency_is_probed_up_to_the_maximum() -> None:
    seen: list[int] = []
    limit = ParallelLimit(4, 6, may_probe=True, on_change=seen.append)
    for _ in range(5):
        feed(limit, 0.5, 0.5 * FLAT * 0.9)
    assert limit.value == 6 and seen == [5, 6]


def test_no_probing_without_replies_waiting() -> None:
    limit = ParallelLimit(4, 16, may_probe=True)
    feed(limit, 0.5, 0.5, queued=False)
    assert limit.value == 4  # nothing waits for a slot: no reason to ask for more


def test_latency_rising_with_concurrency_brings_the_limit_down() -> None:
    limit = ParallelLimit(8, 16, may_probe=True)
    feed(limit, 0.5, 0.5 * RISING * 1.2)
    assert limit.value == 6
    limit.overloaded()
    assert limit.value == 3
    limit.overloaded()
    limit.overloaded()
    assert limit.value == 1  # never below one


def test_a_local_server_is_not_probed_but_still_comes_down() -> None:
    limit = ParallelLimit(2, 16, may_probe=False)
    feed(limit, 0.5, 0.5)
    assert limit.value == 2
    limit.overloaded()
    assert limit.value == 1


def test_the_servers_number_is_the_ceiling_and_survives_a_new_guess() -> None:
    limit = ParallelLimit(4, 16, may_probe=True)
    limit.server_says(5)
    feed(limit, 0.5, 0.5)
    assert limit.value == 5  # not probed past what the server said
    limit.reset(2)
    assert limit.value == 5
