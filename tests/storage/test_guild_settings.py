"""storage/guild_settings.py on a real SQLite file, and the engine's cache of it (bot/controls)."""

from __future__ import annotations

import asyncio

import pytest

from bot.model.tokens import Tokenizer
from bot.policy.access import ChannelView, Place
from bot.policy.controls import Controls
from storage import Storage
from storage.guild_settings import ChannelRule, ServerRules
from tests.helpers.engines import SettingsFactory

pytestmark = pytest.mark.both_backends

GUILD = 1_200_000_000_000_000_001  # real snowflakes: past 32 bits
CHANNEL = 1_200_000_000_000_000_011
ROLE = 1_200_000_000_000_000_023
USER = 1_400_000_000_000_000_001


async def test_nothing_set_is_the_default(storage: Storage) -> None:
    assert await storage.guild_settings.load(GUILD) == ServerRules(GUILD)


async def test_set_and_reset_every_kind_of_setting(storage: Storage) -> None:
    repo = storage.guild_settings
    await repo.set_server(GUILD, "persona", "be brief", now=1.0)
    await repo.set_server(GUILD, "memory", 0, now=1.0)
    await repo.set_server(GUILD, "notice", 1, now=1.0)
    await repo.set_channel(GUILD, CHANNEL, "access", "deny", now=1.0)
    await repo.set_channel(GUILD, CHANNEL, "chat_model", "small", now=1.0)
    await repo.set_role(GUILD, ROLE, "allow")
    await repo.set_role(GUILD, ROLE, "deny")  # the latest wins
    await repo.set_blocked(GUILD, USER, True, by=9, now=1.0)
    await repo.set_blocked(GUILD, USER, True, by=9, now=2.0)  # twice is once
    rules = await repo.load(GUILD)
    assert (rules.persona, rules.memory, rules.notice, rules.threads) == (
        "be brief",
        False,
        True,
        False,
    )
    assert rules.channels == {CHANNEL: ChannelRule(CHANNEL, access="deny", chat_model="small")}
    assert rules.roles == {ROLE: "deny"} and rules.blocked == {USER}
    assert await repo.load(GUILD + 1) == ServerRules(GUILD + 1)  # never another server's

    await repo.set_server(GUILD, "persona", None, now=3.0)
    await repo.set_server(GUILD, "memory", None, now=3.0)
    await repo.set_channel(GUILD, CHANNEL, "access", None, now=3.0)
    await repo.set_channel(GUILD, CHANNEL, "chat_model", None, now=3.0)
    await repo.set_role(GUILD, ROLE, None)
    await repo.set_blocked(GUILD, USER, False, by=9, now=3.0)
    rules = await repo.load(GUILD)
    assert rules.persona is None and rules.memory and rules.notice
    assert rules.channels == {} and rules.roles == {} and rules.blocked == frozenset()
    rows = await storage.db.fetch_all("SELECT * FROM channel_settings")
    assert rows == []  # a channel with nothing of its own has no row


async def test_unknown_columns_are_refused(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.guild_settings.set_server(GUILD, "persona = 'x'; --", "y", now=1.0)
    with pytest.raises(ValueError):
        await storage.guild_settings.set_channel(GUILD, CHANNEL, "memory", 1, now=1.0)


async def test_pause_and_resume(storage: Storage) -> None:
    repo = storage.guild_settings
    assert not await repo.is_paused(USER)
    assert await repo.set_paused(USER, True, now=1.0)
    assert not await repo.set_paused(USER, True, now=2.0)  # already
    assert await repo.is_paused(USER)
    assert await repo.set_paused(USER, False, now=3.0)
    assert not await repo.set_paused(USER, False, now=4.0)
    assert not await repo.is_paused(USER)


async def test_usage_per_member_and_since(storage: Storage) -> None:
    usage = storage.usage
    await usage.add("2026-01-01", user_id=1, guild_id=GUILD, tokens=10)
    await usage.add("2026-01-02", user_id=1, guild_id=GUILD, tokens=5)
    await usage.add("2026-01-02", user_id=2, guild_id=GUILD, tokens=7)
    await usage.add("2026-01-02", user_id=2, guild_id=None, tokens=100)  # a DM: no server
    await usage.add("2026-01-02", user_id=3, guild_id=GUILD, tokens=50, per_member=False)
    assert await usage.guild_since(GUILD, "2026-01-01") == 72
    assert await usage.guild_since(GUILD, "2026-01-02") == 62
    assert await usage.top_members(GUILD, "2026-01-01") == [(1, 15), (2, 7)]
    assert await usage.top_members(GUILD, "2026-01-02", limit=1) == [(2, 5 + 2)]
    assert await usage.used("2026-01-02", "user", 3) == 50
    await usage.add("2026-01-02", user_id=4, guild_id=GUILD, tokens=1, per_user=False)
    assert await usage.used("2026-01-02", "user", 4) == 0


async def test_rules_are_cached_invalidated_on_change_and_expire(
    storage: Storage, make_settings: SettingsFactory, tokenizer: Tokenizer
) -> None:
    controls = Controls(storage, make_settings(), tokenizer, ttl=0.3)
    place = Place(USER, GUILD, CHANNEL)
    assert (await controls.check(place))[0].allowed
    await controls.set_blocked(GUILD, USER, True, by=9)  # through controls: at once
    assert not (await controls.check(place))[0].allowed
    # Another process changes the database: seen once the entry expires.
    await storage.guild_settings.set_blocked(GUILD, USER, False, by=9, now=1.0)
    assert not (await controls.check(place))[0].allowed
    await asyncio.sleep(0.35)
    assert (await controls.check(place))[0].allowed


@pytest.mark.sqlite_only
async def test_messages_that_miss_the_cache_together_share_one_load(
    storage: Storage, make_settings: SettingsFactory, tokenizer: Tokenizer
) -> None:
    controls = Controls(storage, make_settings(), tokenizer)
    await storage.guild_settings.set_blocked(GUILD, USER, True, by=9, now=1.0)
    statements: list[str] = []
    connection = storage.db._conn  # type: ignore[attr-defined]
    await connection.set_trace_callback(statements.append)
    # A burst after a restart: twenty messages of one server arrive before any read returns.
    decisions = await asyncio.gather(
        *(controls.check(Place(USER, GUILD, CHANNEL)) for _ in range(20))
    )
    await connection.set_trace_callback(None)
    assert not any(decision.allowed for decision, _ in decisions)
    assert sum("FROM server_settings" in statement for statement in statements) == 1


async def test_persona_and_model_checks(
    storage: Storage, make_settings: SettingsFactory, tokenizer: Tokenizer
) -> None:
    settings = make_settings(persona_max_tokens=20, allowed_chat_models="small")
    controls = Controls(storage, settings, tokenizer)
    assert controls.persona_problem("be brief") is None
    assert "PERSONA_MAX_TOKENS" in (controls.persona_problem("word " * 30) or "")
    assert controls.model_problem("small") is None and controls.model_problem("gpt-4o") is None
    assert "not one of" in (controls.model_problem("huge") or "")
    # Chosen before the operator changed the lists: the default model, and a cut persona.
    assert controls.model_for(ChannelView(chat_model="gone")) == settings.chat_model
    assert controls.model_for(ChannelView(chat_model="small")) == "small"
    assert tokenizer.count(controls.persona_for(ChannelView(persona="word " * 50))) <= 20
    assert controls.persona_for(ChannelView()) == settings.system_prompt
