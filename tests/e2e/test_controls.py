"""Access and controls end to end: who may talk to Mnemo and where, how it answers (mention or
always, in a thread), as whom and with which model, what it remembers (memory off, paused), the
admins' commands and /help. Through the loopback Discord and the loopback LLM; what is stored is
checked in the database itself."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from discord import AppCommandOptionType, app_commands

from bot.client.bot import MemoryBot
from cogs.admin import NEEDS_INTENT, NEEDS_MANAGE_SERVER, SERVER_NOT_ALLOWED
from cogs.chat import NO_DMS, NOT_HERE
from tests.fakes.discord import ChannelRef, FakeDiscord, FakeUser, RoleRef
from tests.fakes.llm_server import FakeLLM, is_reply_call
from tests.helpers.e2e import Bots

Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(bot: MemoryBot) -> Snapshot:
    """Every row of every table."""
    db = bot.storage.db
    names = await db.fetch_all(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name"
    )
    return {
        row[0]: [tuple(r) for r in await db.fetch_all(f"SELECT * FROM {row[0]} ORDER BY 1, 2")]
        for row in names
    }


async def admin(
    d: FakeDiscord,
    subcommand: str,
    options: dict[str, Any] | None = None,
    *,
    group: str | None = None,
    user: FakeUser | None = None,
    channel_id: int | None = None,
    guild_id: int | None = None,
) -> str:
    interaction = await d.slash(
        user or d.admin,
        "mnemo-admin",
        subcommand,
        options,
        group=group,
        channel_id=channel_id,
        guild_id=guild_id,
    )
    response = await interaction.response()
    assert response["data"]["flags"] & 64, "admin answers are ephemeral"
    return await interaction.wait_text()


async def answered(d: FakeDiscord, channel_id: int) -> str:
    return await d.final_text(await d.next_bot_message(channel_id), quiet=0.2)


async def test_denied_server_channel_role_member_get_no_call_and_leave_no_row(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    d = fake_discord
    with caplog.at_level(logging.WARNING, logger="cogs.admin"):
        bot = await bots.start(allowed_guild_ids=d.GUILD_ID)
    assert any(str(d.GUILD2_ID) in r.getMessage() for r in caplog.records)  # said once, not left
    assert "Done." in await admin(
        d, "channel", {"channel": ChannelRef(d.OTHER_CHANNEL_ID), "rule": "deny"}, group="access"
    )
    await admin(d, "role", {"role": RoleRef(d.MEMBER_ROLE_ID), "rule": "deny"}, group="access")
    shown = await admin(d, "block", {"member": d.bob}, group="access")
    assert f"<#{d.OTHER_CHANNEL_ID}>" in shown and f"<@{d.bob.id}>" in shown
    assert f"<@&{d.MEMBER_ROLE_ID}>" in shown and "silence" in shown
    d.set_roles(d.GUILD_ID, d.alice, [d.MEMBER_ROLE_ID])
    before = await snapshot(bot)

    await d.send_message(d.owner, d.GUILD2_CHANNEL_ID, "DENIED-server", mention_bot=True)
    await d.send_message(d.owner, d.OTHER_CHANNEL_ID, "DENIED-channel", mention_bot=True)
    await d.send_message(d.alice, d.CHANNEL_ID, "DENIED-role", mention_bot=True)
    await d.send_message(d.bob, d.CHANNEL_ID, "DENIED-member", mention_bot=True)
    await d.send_message(d.bob, d.THREAD_ID, "DENIED-member-in-thread", mention_bot=True)
    for channel in (d.GUILD2_CHANNEL_ID, d.OTHER_CHANNEL_ID, d.CHANNEL_ID, d.THREAD_ID):
        await d.expect_no_bot_message(channel, wait=0.3)
    assert fake_llm.chat_calls == []
    assert await snapshot(bot) == before  # not one row written

    in_ignored = await admin(d, "memory", {"enabled": False}, user=d.owner, guild_id=d.GUILD2_ID)
    assert in_ignored == SERVER_NOT_ALLOWED
    assert await snapshot(bot) == before

    await d.send_message(d.owner, d.CHANNEL_ID, "allowed", mention_bot=True)
    assert await answered(d, d.CHANNEL_ID) == "echo: allowed"
    assert "DENIED" not in "\n".join(fake_llm.prompt_texts())
    export = await bot.storage.users.export(d.owner.id)
    assert [m["content"] for m in export["messages"]] == ["allowed", "echo: allowed"]


async def test_a_server_may_choose_a_short_notice(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    await admin(d, "block", {"member": d.bob}, group="access")
    assert "a short notice" in await admin(d, "notice", {"mode": "notice"}, group="access")
    before = await snapshot(bot)
    await d.send_message(d.bob, d.CHANNEL_ID, "hello?", mention_bot=True)
    assert await answered(d, d.CHANNEL_ID) == NOT_HERE
    await d.send_message(d.bob, d.CHANNEL_ID, "again?", mention_bot=True)
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)  # one notice, not one per message
    assert fake_llm.chat_calls == []
    assert await snapshot(bot) == before


async def test_dms_off(bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM) -> None:
    d = fake_discord
    bot = await bots.start(allow_dms="false")
    await d.send_dm(d.alice, "DM-SECRET hello")
    assert await answered(d, d.dm_channel_id(d.alice)) == NO_DMS
    assert fake_llm.chat_calls == []
    assert (await snapshot(bot))["messages"] == []
    await d.send_message(d.alice, d.CHANNEL_ID, "in a server", mention_bot=True)
    assert await answered(d, d.CHANNEL_ID) == "echo: in a server"


async def test_operator_lists_of_channels_roles_and_users(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(
        allowed_channel_ids=f"{d.CHANNEL_ID},{d.CATEGORY_ID}",
        allowed_role_ids=d.MEMBER_ROLE_ID,
        blocked_user_ids=d.owner.id,
    )
    d.set_roles(d.GUILD_ID, d.alice, [d.MEMBER_ROLE_ID])
    d.set_roles(d.GUILD_ID, d.owner, [d.MEMBER_ROLE_ID])
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "not this channel", mention_bot=True)
    await d.send_message(d.bob, d.CHANNEL_ID, "no role", mention_bot=True)
    await d.send_message(d.owner, d.CHANNEL_ID, "blocked", mention_bot=True)
    await d.expect_no_bot_message(d.OTHER_CHANNEL_ID, wait=0.3)
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.3)
    assert fake_llm.chat_calls == []
    await d.send_message(d.alice, d.THREAD_ID, "thread of an allowed channel", mention_bot=True)
    assert await answered(d, d.THREAD_ID) == "echo: thread of an allowed channel"
    await d.send_message(d.alice, d.CATEGORY_CHANNEL_ID, "in the category", mention_bot=True)
    assert await answered(d, d.CATEGORY_CHANNEL_ID) == "echo: in the category"


async def test_allowed_thread_under_allowed_channel_and_category(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start()
    allow = {"channel": ChannelRef(d.CHANNEL_ID), "rule": "allow"}
    shown = await admin(d, "channel", allow, group="access")
    assert f"only <#{d.CHANNEL_ID}>" in shown
    await d.send_message(d.alice, d.THREAD_ID, "in the thread", mention_bot=True)
    assert await answered(d, d.THREAD_ID) == "echo: in the thread"
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "elsewhere", mention_bot=True)
    await d.send_message(d.alice, d.CATEGORY_CHANNEL_ID, "in the category", mention_bot=True)
    await d.expect_no_bot_message(d.OTHER_CHANNEL_ID, wait=0.3)
    await d.expect_no_bot_message(d.CATEGORY_CHANNEL_ID, wait=0.1)
    await admin(
        d, "channel", {"channel": ChannelRef(d.CATEGORY_ID), "rule": "allow"}, group="access"
    )
    await d.send_message(d.alice, d.CATEGORY_CHANNEL_ID, "now allowed", mention_bot=True)
    assert await answered(d, d.CATEGORY_CHANNEL_ID) == "echo: now allowed"
    # Deny the thread itself: the most specific rule wins over its allowed channel.
    await admin(d, "channel", {"channel": ChannelRef(d.THREAD_ID), "rule": "deny"}, group="access")
    await d.send_message(d.alice, d.THREAD_ID, "thread denied", mention_bot=True)
    await d.expect_no_bot_message(d.THREAD_ID, wait=0.5)
    assert "thread denied" not in "\n".join(fake_llm.prompt_texts())


async def test_always_answer_channel(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    shown = await admin(d, "answer-mode", {"channel": ChannelRef(d.CHANNEL_ID), "mode": "always"})
    assert "every message" in shown
    await d.send_message(d.alice, d.CHANNEL_ID, "no mention needed")
    assert await answered(d, d.CHANNEL_ID) == "echo: no mention needed"
    await d.send_message(d.alice, d.CHANNEL_ID, "", attachments=[{"filename": "a.png"}])
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "not for the bot")
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)  # an image alone: no greeting
    await d.expect_no_bot_message(d.OTHER_CHANNEL_ID, wait=0.1)
    assert len(fake_llm.chat_calls) == 1
    await admin(d, "answer-mode", {"channel": ChannelRef(d.CHANNEL_ID), "mode": "inherit"})
    await d.send_message(d.alice, d.CHANNEL_ID, "mention-only again")
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)
    rows = (await snapshot(bot))["channel_settings"]
    assert rows == []  # nothing of its own left: no row


async def test_always_answer_needs_the_message_content_intent(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    bot = await bots.start(message_content_intent="false")
    text = await admin(d, "answer-mode", {"channel": ChannelRef(d.CHANNEL_ID), "mode": "always"})
    assert text == NEEDS_INTENT
    assert (await snapshot(bot))["channel_settings"] == []


async def test_thread_per_conversation(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    shown = await admin(d, "threads", {"enabled": True, "channel": ChannelRef(d.CHANNEL_ID)})
    assert "opens a thread" in shown
    sent = await d.send_message(d.alice, d.CHANNEL_ID, "plan the trip to Porto", mention_bot=True)
    thread_id = int(sent["id"])  # a thread from a message has the message's id
    assert await answered(d, thread_id) == "echo: plan the trip to Porto"
    assert d.bot_messages(d.CHANNEL_ID) == []  # the channel stays readable
    starts = [r for r in d.requests if r.path.endswith(f"/messages/{thread_id}/threads")]
    assert starts[0].json["name"] == "plan the trip to Porto"
    # In the thread it opened, the conversation goes on without mentions; it is its own session.
    await d.send_message(d.alice, thread_id, "and the hotel?")
    assert await answered(d, thread_id) == "echo: and the hotel?"
    assert "plan the trip to Porto" in fake_llm.prompt_texts()[-1]
    session = await bot.storage.sessions.find(thread_id, d.alice.id)
    assert session is not None and await bot.storage.sessions.find(d.CHANNEL_ID, d.alice.id) is None
    # Other channels answer in place.
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "here", mention_bot=True)
    assert await answered(d, d.OTHER_CHANNEL_ID) == "echo: here"


async def test_personas_per_channel_and_server_never_cross(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(persona_max_tokens=40)
    channel = ChannelRef(d.CHANNEL_ID)
    shown = await admin(
        d,
        "set",
        {"text": "You are PERSONA-CHANNEL, a pirate.", "channel": channel},
        group="persona",
    )
    assert "PERSONA-CHANNEL" in shown and f"<#{d.CHANNEL_ID}>" in shown
    await admin(d, "set", {"text": "You are PERSONA-SERVER."}, group="persona")
    too_long = await admin(d, "set", {"text": "word " * 100}, group="persona")
    assert "PERSONA_MAX_TOKENS" in too_long and "Nothing was changed" in too_long

    async def system_prompt_in(channel_id: int, guild_id: int | None = None) -> str:
        await d.send_message(d.alice, channel_id, "who are you?", mention_bot=True)
        await answered(d, channel_id)
        return str(fake_llm.prompts()[-1][0]["content"])

    in_channel = await system_prompt_in(d.CHANNEL_ID)
    assert "PERSONA-CHANNEL" in in_channel and "PERSONA-SERVER" not in in_channel
    in_thread = await system_prompt_in(d.THREAD_ID)  # a channel covers its threads
    assert "PERSONA-CHANNEL" in in_thread
    elsewhere = await system_prompt_in(d.OTHER_CHANNEL_ID)
    assert "PERSONA-SERVER" in elsewhere and "PERSONA-CHANNEL" not in elsewhere
    other_server = await system_prompt_in(d.GUILD2_CHANNEL_ID)
    assert "PERSONA" not in other_server and "You are Mnemo" in other_server
    await d.send_dm(d.alice, "and in DMs?")
    await answered(d, d.dm_channel_id(d.alice))
    assert "PERSONA" not in str(fake_llm.prompts()[-1][0]["content"])

    reset = await admin(d, "reset", {"channel": channel}, group="persona")
    assert "PERSONA-SERVER" in reset
    assert "PERSONA-SERVER" in await system_prompt_in(d.CHANNEL_ID)
    assert "the bot's default" in await admin(d, "reset", group="persona")
    assert "You are Mnemo" in await system_prompt_in(d.CHANNEL_ID)


async def test_models_from_the_operators_list_only(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(chat_model="gpt-4o", allowed_chat_models="gpt-4o-mini, special-model")
    choices = await d.autocomplete(d.admin, "mnemo-admin", "set", "name", "", group="model")
    assert [c["value"] for c in choices] == ["gpt-4o", "gpt-4o-mini", "special-model"]
    refused = await admin(d, "set", {"name": "gpt-5-expensive"}, group="model")
    assert "not one of the models" in refused and "Nothing was changed" in refused
    assert (await snapshot(bot))["server_settings"] == []
    channel = ChannelRef(d.CHANNEL_ID)
    shown = await admin(d, "set", {"name": "special-model", "channel": channel}, group="model")
    assert "`special-model`" in shown
    await d.send_message(d.alice, d.CHANNEL_ID, "hi", mention_bot=True)
    await answered(d, d.CHANNEL_ID)
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "hi", mention_bot=True)
    await answered(d, d.OTHER_CHANNEL_ID)
    await d.send_message(d.alice, d.GUILD2_CHANNEL_ID, "hi", mention_bot=True)
    await answered(d, d.GUILD2_CHANNEL_ID)
    assert [call["model"] for call in fake_llm.chat_calls] == [
        "special-model",
        "gpt-4o",
        "gpt-4o",
    ]
    await admin(d, "reset", {"channel": channel}, group="model")
    await d.send_message(d.alice, d.CHANNEL_ID, "hi", mention_bot=True)
    await answered(d, d.CHANNEL_ID)
    assert fake_llm.chat_calls[-1]["model"] == "gpt-4o"


async def test_memory_off_keeps_only_the_window_and_learns_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    budget = {
        "max_prompt_tokens": 500,
        "max_message_tokens": 100,
        "summary_max_tokens": 50,
        "facts_max_tokens": 50,
    }
    bot = await bots.start(
        summary_trigger_tokens=100, facts_batch_messages=1, facts_idle_seconds=0, **budget
    )
    assert "Memory: off" in await admin(d, "memory", {"enabled": False})
    for i in range(15):
        await d.send_message(d.alice, d.CHANNEL_ID, f"OLD-{i} " + "words " * 20, mention_bot=True)
        await answered(d, d.CHANNEL_ID)
    await bot.engine.jobs.idle()
    assert not [c for c in fake_llm.chat_calls if not is_reply_call(c)]  # no summary, no facts
    rows = await snapshot(bot)
    assert rows["facts"] == [] and all(session[4] == "" for session in rows["sessions"])
    stored = await bot.storage.users.export(d.alice.id)
    kept_tokens = sum(m["tokens"] for m in stored["messages"])
    assert kept_tokens <= budget["max_prompt_tokens"]
    assert "OLD-0 " not in str(stored)  # the oldest are gone from the database
    assert "OLD-14" in str(stored)
    last_prompt = fake_llm.prompt_texts()[-1]
    assert "OLD-13" in last_prompt  # the window still works
    # Memory on again: learning resumes.
    await admin(d, "memory", {"enabled": True})
    await d.send_message(d.alice, d.CHANNEL_ID, "back on " + "words " * 30, mention_bot=True)
    await answered(d, d.CHANNEL_ID)
    await bot.engine.jobs.idle()
    assert [c for c in fake_llm.chat_calls if not is_reply_call(c)]


async def test_paused_user_leaves_no_row_anywhere(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1, summary_trigger_tokens=100)
    await d.send_message(d.alice, d.CHANNEL_ID, "remember BEFORE-PAUSE", mention_bot=True)
    await answered(d, d.CHANNEL_ID)
    await bot.engine.jobs.idle()
    paused = await d.slash(d.alice, "memory", "pause")
    assert "Memory paused" in await paused.wait_text()
    before = await snapshot(bot)
    fake_llm.reset()

    payload = await d.send_message(d.alice, d.CHANNEL_ID, "PAUSED-SECRET one", mention_bot=True)
    reply = await answered(d, d.CHANNEL_ID)
    assert reply == "echo: PAUSED-SECRET one\n-# memory paused"
    await d.redeliver(payload)  # a replayed event is answered once, even with nothing stored
    await d.expect_no_bot_message(d.CHANNEL_ID, wait=0.5)
    assert "BEFORE-PAUSE" in fake_llm.prompt_texts()[-1]  # answered from the existing window
    await d.send_message(d.alice, d.OTHER_CHANNEL_ID, "PAUSED-SECRET two " * 20, mention_bot=True)
    await answered(d, d.OTHER_CHANNEL_ID)
    await d.send_dm(d.alice, "PAUSED-SECRET three")
    assert (await answered(d, d.dm_channel_id(d.alice))).endswith("-# memory paused")
    await bot.engine.jobs.idle()
    await asyncio.sleep(0.2)

    after = await snapshot(bot)
    # Only the server's token counter moved (a number, for SERVER_DAILY_TOKENS).
    changed = {t for t in after if after[t] != before[t]}
    assert changed <= {"usage_daily"}
    usage_rows = lambda rows: [r for r in rows if r[1] != "guild"]  # noqa: E731
    assert usage_rows(after["usage_daily"]) == usage_rows(before["usage_daily"])
    assert "PAUSED-SECRET" not in str(after)
    assert not [c for c in fake_llm.chat_calls if not is_reply_call(c)]  # nothing learned
    show = await (await d.slash(d.alice, "memory", "show")).response()
    assert "paused" in show["data"]["embeds"][0]["title"]

    resumed = await d.slash(d.alice, "memory", "resume")
    assert "cannot be recovered" in await resumed.wait_text()
    await d.send_message(d.alice, d.CHANNEL_ID, "AFTER-RESUME", mention_bot=True)
    assert await answered(d, d.CHANNEL_ID) == "echo: AFTER-RESUME"
    export = await bot.storage.users.export(d.alice.id)
    contents = [m["content"] for m in export["messages"]]
    assert "AFTER-RESUME" in contents and not any("PAUSED-SECRET" in c for c in contents)
    await bots.stop(bot)
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith("mnemo"))
    assert b"PAUSED-SECRET" not in raw


def admin_commands(bot: MemoryBot) -> list[tuple[str | None, app_commands.Command]]:
    group = bot.tree.get_command("mnemo-admin")
    assert isinstance(group, app_commands.Group)
    found: list[tuple[str | None, app_commands.Command]] = []
    for item in group.commands:
        if isinstance(item, app_commands.Group):
            found.extend((item.name, command) for command in item.commands)  # type: ignore[misc]
        else:
            found.append((None, item))
    return found


def sample_options(d: FakeDiscord, command: app_commands.Command) -> dict[str, Any]:
    values: dict[AppCommandOptionType, Any] = {
        AppCommandOptionType.user: d.alice,
        AppCommandOptionType.channel: ChannelRef(d.CHANNEL_ID),
        AppCommandOptionType.role: RoleRef(d.MEMBER_ROLE_ID),
        AppCommandOptionType.boolean: False,
        AppCommandOptionType.string: "gpt-4o",
        AppCommandOptionType.integer: 1,
    }
    options = {}
    for parameter in command.parameters:
        if parameter.required:
            choices = parameter.choices
            options[parameter.name] = choices[0].value if choices else values[parameter.type]
    return options


async def test_non_admins_are_refused_every_admin_command(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    await d.send_message(d.alice, d.CHANNEL_ID, "some data", mention_bot=True)
    await answered(d, d.CHANNEL_ID)
    before = await snapshot(bot)
    commands = admin_commands(bot)
    assert len(commands) >= 15
    for group, command in commands:
        text = await admin(d, command.name, sample_options(d, command), group=group, user=d.bob)
        assert text == NEEDS_MANAGE_SERVER, (group, command.name)
    assert await snapshot(bot) == before


async def test_stats_show_model_tokens_top_members_and_budget(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(server_daily_tokens=100_000)
    for user in (d.alice, d.alice, d.bob):
        await d.send_message(user, d.CHANNEL_ID, "count my tokens", mention_bot=True)
        await answered(d, d.CHANNEL_ID)
    await d.send_message(d.bob, d.GUILD2_CHANNEL_ID, "other server", mention_bot=True)
    await answered(d, d.GUILD2_CHANNEL_ID)
    rows = (await snapshot(bot))["usage_members"]
    ours = {user: tokens for _, guild, user, tokens in rows if guild == d.GUILD_ID}
    assert ours[d.alice.id] > ours[d.bob.id] > 0
    total = sum(ours.values())
    stats = await admin(d, "stats")
    assert f"Model tokens today (UTC): {total} · last 30 days: {total}" in stats
    assert stats.index(f"`{d.alice.id}` {ours[d.alice.id]}") < stats.index(f"`{d.bob.id}`")
    assert f"Daily budget left: {100_000 - total} of 100000" in stats
    assert "count my tokens" not in stats


async def test_help_says_how_to_talk_here(bots: Bots, fake_discord: FakeDiscord) -> None:
    d = fake_discord
    await bots.start()
    await admin(d, "answer-mode", {"channel": ChannelRef(d.OTHER_CHANNEL_ID), "mode": "always"})
    await admin(d, "memory", {"enabled": False})
    await admin(d, "channel", {"channel": ChannelRef(d.THREAD_ID), "rule": "deny"}, group="access")

    async def help_text(user: FakeUser, **where: Any) -> str:
        interaction = await d.slash(user, "help", **where)
        response = await interaction.response()
        assert response["data"]["flags"] & 64
        return await interaction.wait_text()

    member = await help_text(d.bob)
    assert "mention me" in member and "/memory pause" in member and "/memory export" in member
    assert "Memory here** · off" in member and "Admin commands" not in member
    assert f"in every channel, except <#{d.THREAD_ID}>" in member
    assert "just write" in await help_text(d.bob, channel_id=d.OTHER_CHANNEL_ID)
    assert "Admin commands" in await help_text(d.admin)
    assert "our DMs" in await help_text(d.bob, dm=True)


async def test_dms_under_allow_lists_only_for_members_of_allowed_servers(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """ALLOWED_GUILD_IDS: a DM is served to a member of an allowed server (looked up over
    REST, cached), refused with a notice to a user who shares only another server with the bot
    and to one the allowed server's admins blocked; nothing of theirs is stored."""
    d = fake_discord
    d.remove_member(d.GUILD_ID, d.bob)  # bob shares only GUILD2 (not allowed) with the bot
    bot = await bots.start(allowed_guild_ids=d.GUILD_ID)
    await d.send_dm(d.bob, "STRANGER-DM hello")
    assert await answered(d, d.dm_channel_id(d.bob)) == NOT_HERE
    assert fake_llm.chat_calls == []
    assert (await snapshot(bot))["messages"] == []

    await d.send_dm(d.alice, "member one")
    assert await answered(d, d.dm_channel_id(d.alice)) == "echo: member one"
    await d.send_dm(d.alice, "member two")
    assert await answered(d, d.dm_channel_id(d.alice)) == "echo: member two"
    assert d.member_lookups(d.alice) == 1  # the answer is cached
    assert d.member_lookups(d.bob) == 1  # only the allowed server is asked about

    await admin(d, "block", {"member": d.owner}, group="access")
    await d.send_dm(d.owner, "BLOCKED-DM hello")
    assert await answered(d, d.dm_channel_id(d.owner)) == NOT_HERE
    assert len(fake_llm.chat_calls) == 2
    contents = str(await snapshot(bot))
    assert "STRANGER-DM" not in contents and "BLOCKED-DM" not in contents


async def test_dms_under_the_role_list_need_the_role_in_a_server(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(allowed_role_ids=d.MEMBER_ROLE_ID)
    d.set_roles(d.GUILD_ID, d.alice, [d.MEMBER_ROLE_ID])
    await d.send_dm(d.bob, "NO-ROLE hello")  # a member of both servers, without the role
    assert await answered(d, d.dm_channel_id(d.bob)) == NOT_HERE
    await d.send_dm(d.alice, "subscriber")
    assert await answered(d, d.dm_channel_id(d.alice)) == "echo: subscriber"
    assert "NO-ROLE" not in "\n".join(fake_llm.prompt_texts())
    # The role exists in GUILD only: GUILD2 is never asked about.
    assert not [r for r in d.requests if f"/guilds/{d.GUILD2_ID}/members/" in r.path]
