"""Rate limits, daily token budgets and the bounded reply queue."""

from __future__ import annotations

import asyncio

from bot.engine.engine import IncomingMessage, MemoryEngine, Outcome
from bot.policy.limits import Limits
from storage import Storage
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM
from tests.helpers.engines import Engines, SettingsFactory, hold_in_one_rate_window
from tests.helpers.llm import is_summary_call
from tests.helpers.storage import next_discord_id

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)
BOB = SessionKey(guild_id=100, channel_id=10, user_id=2)


async def say(engine: MemoryEngine, key: SessionKey, text: str = "hello"):
    return await engine.reply(IncomingMessage(key, next_discord_id(), text, "someone"))


async def test_rate_limit_refuses_with_reset_time(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(user_messages_per_minute=3)
    hold_in_one_rate_window(engine)
    outcomes = [await say(engine, ALICE) for _ in range(4)]
    assert [r.outcome for r in outcomes[:3]] == [Outcome.ANSWERED] * 3
    refused = outcomes[3]
    assert refused.outcome is Outcome.REFUSED and refused.refusal is not None
    assert "3 a minute" in refused.refusal.message
    assert refused.refusal.resets_at > 0
    assert (await say(engine, BOB)).outcome is Outcome.ANSWERED  # others are unaffected
    assert len(fake_llm.chat_calls) == 4


async def test_user_daily_budget_counts_api_usage(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(user_daily_tokens=60)
    first = await say(engine, ALICE, "word " * 100)  # the fake reports ~len/4 tokens of usage
    assert first.outcome is Outcome.ANSWERED and first.usage is not None
    second = await say(engine, ALICE)
    assert second.outcome is Outcome.REFUSED and second.refusal
    assert "today" in second.refusal.message
    assert (await say(engine, BOB)).outcome is Outcome.ANSWERED


async def test_server_over_budget_loses_background_work_first(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(
        server_daily_tokens=50_000, summary_trigger_tokens=100, summary_keep_recent_tokens=20
    )
    fake_llm.responder = lambda body: "s" if is_summary_call(body) else "fine"
    day = engine.limits._day()
    await engine.storage.usage.add(day, user_id=99, guild_id=100, tokens=46_000)  # 92% used
    for _ in range(5):
        assert (await say(engine, ALICE, "some words " * 20)).outcome is Outcome.ANSWERED
    await engine.jobs.idle()
    assert not any(is_summary_call(call) for call in fake_llm.chat_calls)
    await engine.storage.usage.add(day, user_id=99, guild_id=100, tokens=10_000)
    assert (await say(engine, ALICE)).outcome is Outcome.REFUSED


async def test_busy_past_what_the_deadline_allows(engines: Engines, fake_llm: FakeLLM) -> None:
    """Messages queue while their expected wait fits in the deadline; only the rest are busy."""
    engine = await engines.start(model_parallel=1, reply_deadline_seconds=1.95)
    fake_llm.latency = 0.5
    assert (await say(engine, SessionKey(100, 10, 9))).outcome is Outcome.ANSWERED  # timed
    users = [SessionKey(100, 10, user) for user in range(10, 16)]
    results = await asyncio.gather(*(say(engine, key) for key in users))
    outcomes = [r.outcome for r in results]
    # 0.5 s each (up to 0.65 s on a busy machine), one at a time: answered after 0.5, 1.0,
    # 1.5 s fit in 1.95 s; 2.0 s does not.
    assert outcomes.count(Outcome.ANSWERED) == 3
    assert outcomes.count(Outcome.REFUSED) == 3
    busy = [r for r in results if r.refusal]
    assert all("busy" in r.refusal.message for r in busy)  # type: ignore[union-attr]


async def test_a_flood_is_told_once_per_limit_window(
    storage: Storage, make_settings: SettingsFactory
) -> None:
    now = [1020.0]
    settings = make_settings(user_messages_per_minute=2)
    limits = Limits(settings, storage.usage, storage.fleet, clock=lambda: now[0])
    assert await limits.check_rate(1) is None and await limits.check_rate(1) is None
    first = await limits.check_rate(1)
    assert first is not None and first.notify
    for _ in range(5):
        now[0] += 1
        later = await limits.check_rate(1)
        assert later is not None and not later.notify  # refused, silently
    other = await limits.check_rate(2)
    assert other is None  # others are unaffected
    now[0] = first.resets_at + 1  # a new window: allowed again, and told again when over
    assert await limits.check_rate(1) is None and await limits.check_rate(1) is None
    again = await limits.check_rate(1)
    assert again is not None and again.notify


async def test_the_rate_limit_is_shared_by_every_process(
    storage: Storage, make_settings: SettingsFactory
) -> None:
    """Two processes on one database (two Limits): one user, one limit."""
    settings = make_settings(user_messages_per_minute=3)
    clock = lambda: 1020.0  # noqa: E731
    first = Limits(settings, storage.usage, storage.fleet, clock=clock)
    second = Limits(settings, storage.usage, storage.fleet, clock=clock)
    assert await first.check_rate(7) is None
    assert await second.check_rate(7) is None
    assert await first.check_rate(7) is None
    refused = await second.check_rate(7)
    assert refused is not None and refused.notify


async def test_erasing_everything_resets_neither_the_budget_nor_the_rate(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(user_daily_tokens=60)
    assert (await say(engine, ALICE, "word " * 100)).outcome is Outcome.ANSWERED
    assert (await say(engine, ALICE)).outcome is Outcome.REFUSED  # budget used up
    await engine.forget_user(ALICE.user_id)
    refused = await say(engine, ALICE)
    assert refused.outcome is Outcome.REFUSED and refused.refusal is not None
    assert "today" in refused.refusal.message
    assert len(fake_llm.chat_calls) == 1

    rated = await engines.start(user_messages_per_minute=1)
    hold_in_one_rate_window(rated)
    assert (await say(rated, BOB)).outcome is Outcome.ANSWERED
    await rated.forget_user(BOB.user_id)
    refused = await say(rated, BOB)
    assert refused.outcome is Outcome.REFUSED and refused.refusal is not None
    assert "a minute" in refused.refusal.message
