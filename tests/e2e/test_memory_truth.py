"""End to end: what users erase stays erased, edits and deletions mean what the user meant,
refused answers are not memory, floods get one notice, and a cancelled reply leaves no task.

Races hold an answer in flight with the loopback LLM (a responder that waits on an event) while
the user acts in Discord.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.e2e import (
    Bots,
    Gate,
    ask,
    eventually,
    final_content,
    no_reply_in_flight,
    press,
    settled,
    stored,
)
from tests.helpers.engines import hold_in_one_rate_window
from tests.helpers.llm import facts_responder, is_summary_call


async def erase(d: FakeDiscord, scope: str) -> str:
    """Alice erases (or an admin erases Alice in this server) and confirms; the answer."""
    if scope == "admin":
        interaction = await d.slash(d.admin, "mnemo-admin", "forget", {"member": d.alice})
        presser = d.admin
    else:
        options = {"scope": "everywhere"} if scope == "everywhere" else {}
        interaction = await d.slash(d.alice, "memory", "clear", options)
        presser = d.alice
    await interaction.response()
    await press(d, presser, interaction, "Erase")
    return await final_content(interaction)


@pytest.mark.parametrize("scope", ["channel", "everywhere", "admin"])
async def test_erasure_while_an_answer_is_in_flight_or_queued_leaves_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, scope: str
) -> None:
    d = fake_discord
    bot = await bots.start()
    await ask(d, d.alice, d.CHANNEL_ID, "MARKER-before the erasure")
    gate = Gate("MARKER-in-flight")
    fake_llm.responder = gate
    await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-in-flight question", mention_bot=True)
    await asyncio.wait_for(gate.arrived.wait(), 5)
    queued = await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-queued", mention_bot=True)
    await eventually(lambda: bot.engine.knows(int(queued["id"])), "the queued message")

    assert (await erase(d, scope)).startswith("Done. Deleted 3 messages")
    gate.release.set()
    await eventually(lambda: no_reply_in_flight(bot), "the answers in flight to end")

    assert await stored(bot, d.alice) == []  # no late write recreated a session or message
    assert await bot.storage.sessions.find(d.CHANNEL_ID, d.alice.id) is None
    # The answer in flight is replaced by a notice; the queued message never reached the model.
    assert not any("MARKER-queued" in text for text in fake_llm.prompt_texts())
    texts = [m.content for m in await settled(d, d.CHANNEL_ID)]
    assert [text.startswith("🗑️ Your memory was erased") for text in texts[-2:]] == [True, True]
    shown = [text for m in d.bot_messages(d.CHANNEL_ID) for text in m.history]
    assert not any("MARKER-in-flight" in text for text in shown)  # not even for a moment

    for _ in texts[-2:]:
        await d.next_bot_message(d.CHANNEL_ID)  # past the notices
    assert await ask(d, d.alice, d.CHANNEL_ID, "what do you remember?") == (
        "echo: what do you remember?"
    )
    assert "MARKER" not in fake_llm.prompt_texts()[-1]
    assert "MARKER" not in json.dumps(await bot.storage.users.export(d.alice.id))


async def test_a_message_deleted_while_queued_is_never_answered_and_an_edited_one_is(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    gate = Gate("first")
    fake_llm.responder = gate
    await d.send_message(d.alice, d.CHANNEL_ID, "first", mention_bot=True)
    await asyncio.wait_for(gate.arrived.wait(), 5)
    doomed = await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-deleted", mention_bot=True)
    changed = await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-original", mention_bot=True)
    for message in (doomed, changed):
        await eventually(lambda m=message: bot.engine.knows(int(m["id"])), "queued messages")
    await d.delete_user_message(doomed)
    # Edited so that it no longer mentions the bot: it was taken already, so it is answered.
    await d.edit_user_message(changed, "the edited text", keep_mentions=False)

    async def both_remembered() -> bool:
        return len(bot.engine._unstored) == 2  # the engine has both events in hand

    await eventually(both_remembered, "the deletion and the edit")
    gate.release.set()
    await eventually(lambda: no_reply_in_flight(bot), "the replies to end")
    assert await stored(bot, d.alice) == [
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "the edited text"),
        ("assistant", "echo: the edited text"),
    ]
    prompts = fake_llm.prompt_texts()
    assert len(prompts) == 2
    assert not any("MARKER" in prompt for prompt in prompts)


async def test_an_edit_updates_the_stored_text_even_without_the_mention(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    fake_llm.responder = lambda body: "Noted."  # only memory can bring the old text back
    sent = await d.send_message(d.alice, d.CHANNEL_ID, "MARKER-tea is my drink", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    await d.edit_user_message(sent, "coffee is my drink", keep_mentions=False)

    async def edited() -> bool:
        return ("user", "coffee is my drink") in await stored(bot, d.alice)

    await eventually(edited, "the edit to be stored")
    await ask(d, d.alice, d.CHANNEL_ID, "what do I drink?")
    assert "MARKER-tea" not in fake_llm.prompt_texts()[-1]


async def test_an_edit_of_a_message_never_stored_downloads_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start()
    notes = {"filename": "notes.txt", "data": b"just notes"}
    chat = await d.send_message(d.alice, d.CHANNEL_ID, "not for the bot", attachments=[notes])
    # Bob's answer comes after the bot handled Alice's message (discord.py updates a cached
    # message in place, so an edit racing its own creation would be seen by on_message).
    await ask(d, d.bob, d.CHANNEL_ID, "a question")
    await d.edit_user_message(chat, "still not for the bot")
    # An edit that newly mentions the bot is not a new message either.
    await d.edit_user_message(chat, f"<@{d.BOT_USER_ID}> hey")
    await ask(d, d.bob, d.CHANNEL_ID, "another question")  # the events before it are handled
    assert d.cdn_downloads == []
    assert len(fake_llm.chat_calls) == 2


async def test_an_edit_re_derives_facts_and_summary(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(
        facts_batch_messages=1, summary_trigger_tokens=100, summary_keep_recent_tokens=10
    )

    def respond(body: dict[str, Any]) -> str:
        if is_summary_call(body):  # a summary that keeps what the user said
            transcript = message_text(body["messages"][-1])
            return "The user said: " + " | ".join(
                line for line in transcript.splitlines() if line.startswith("[user]")
            )
        return "Noted."  # never repeats the user, so only memory can bring the old text back

    fake_llm.responder = respond
    fake_llm.json_responder = facts_responder
    home = await d.send_message(d.alice, d.CHANNEL_ID, "I live in Lyon", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.2)
    for i in range(4):
        await ask(d, d.alice, d.CHANNEL_ID, f"filler {i} " + "words " * 30)
    await bot.engine.jobs.idle()
    session = await bot.storage.sessions.find(d.CHANNEL_ID, d.alice.id)
    assert session is not None and "Lyon" in session.summary
    assert [f.value for f in await bot.storage.facts.current(d.alice.id, d.GUILD_ID)] == ["Lyon"]

    await d.edit_user_message(home, "I live in Grenoble")

    async def re_derived() -> bool:
        await bot.engine.jobs.idle()
        facts = await bot.storage.facts.current(d.alice.id, d.GUILD_ID)
        session = await bot.storage.sessions.find(d.CHANNEL_ID, d.alice.id)
        return (
            [f.value for f in facts] == ["Grenoble"]
            and session is not None
            and ("Grenoble" in session.summary)
        )

    await eventually(re_derived, "facts and summary learned again from the edit")
    await ask(d, d.alice, d.CHANNEL_ID, "where do I live?")
    [prompt] = [
        "\n".join(map(message_text, call["messages"]))
        for call in fake_llm.chat_calls
        if "response_format" not in call
        and not is_summary_call(call)
        and message_text(call["messages"][-1]) == "where do I live?"
    ]
    assert "Grenoble" in prompt and "Lyon" not in prompt


async def test_an_answer_discord_refused_is_not_remembered(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    fake_llm.push_answers("MARKER-undelivered answer")
    d.fail_next("POST", rf"/channels/{d.CHANNEL_ID}/messages", 403)
    await d.send_message(d.alice, d.CHANNEL_ID, "hello?", mention_bot=True)

    async def taken() -> bool:
        return bool(await stored(bot, d.alice))

    await eventually(taken, "the message to be stored")
    await eventually(lambda: no_reply_in_flight(bot), "the turn to end")
    assert await stored(bot, d.alice) == [("user", "hello?")]
    await ask(d, d.alice, d.CHANNEL_ID, "and now?")
    assert "MARKER-undelivered" not in fake_llm.prompt_texts()[-1]


async def test_a_flood_past_the_rate_limit_gets_one_notice(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    hold_in_one_rate_window((await bots.start(user_messages_per_minute=2)).engine)
    for text in ("one", "two"):
        assert (await ask(d, d.alice, d.CHANNEL_ID, text)).startswith("echo:")
    for i in range(6):
        await d.send_message(d.alice, d.CHANNEL_ID, f"flood {i}", mention_bot=True)
    texts = [m.content for m in await settled(d, d.CHANNEL_ID)]
    notices = [text for text in texts if text.startswith("⏳")]
    assert len(notices) == 1 and "2 a minute" in notices[0]
    assert len(texts) == 3
    assert len(fake_llm.chat_calls) == 2


REPLY_TASKS = ("mnemo-typing", "mnemo-render")


def reply_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() in REPLY_TASKS and not t.done()]


@pytest.mark.parametrize("stage", ["typing", "rendering"])
async def test_a_reply_cancelled_mid_stream_leaves_no_task(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, stage: str
) -> None:
    d = fake_discord
    bot = await bots.start()
    if stage == "typing":
        fake_llm.latency = 30.0  # no token yet: only "typing…" is shown
    else:
        fake_llm.stream_chunk_delay = 0.5  # the message grows slowly
        fake_llm.push_answers(" ".join(f"word{i}" for i in range(40)))
    await d.send_message(d.alice, d.CHANNEL_ID, "a long answer, please", mention_bot=True)
    if stage == "typing":
        await d.wait_for(
            lambda: True if any("/typing" in r.path for r in d.requests) else None, 5, "typing"
        )
    else:
        await d.next_bot_message(d.CHANNEL_ID)
    assert reply_tasks(), "the reply's task runs while it streams"
    await bot.engine.drain(grace=0)  # shutdown cancels the reply mid-stream
    for _ in range(20):
        await asyncio.sleep(0)  # let cancellation finish
    assert reply_tasks() == []


async def test_an_edit_while_paused_withdraws_the_message_and_learns_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """Pause covers edits: the edited text is never stored nor read for facts; the stored old
    message is withdrawn with the fact it taught."""
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    home = await d.send_message(d.alice, d.CHANNEL_ID, "I live in Lyon", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.2)
    await bot.engine.jobs.idle()
    assert [f.value for f in await bot.storage.facts.current(d.alice.id, d.GUILD_ID)] == ["Lyon"]
    paused = await d.slash(d.alice, "memory", "pause")
    assert "Memory paused" in await paused.wait_text()
    calls = len(fake_llm.chat_calls)

    await d.edit_user_message(home, "I live in PAUSED-EDIT-Porto")

    async def withdrawn() -> bool:
        return ("user", "I live in Lyon") not in await stored(bot, d.alice)

    await eventually(withdrawn, "the edit to be handled")
    await bot.engine.jobs.idle()
    export = await bot.storage.users.export(d.alice.id)
    assert "PAUSED-EDIT" not in json.dumps(export)
    assert [m for m in await stored(bot, d.alice) if m[0] == "user"] == []
    assert await bot.storage.facts.current(d.alice.id, d.GUILD_ID) == []
    assert len(fake_llm.chat_calls) == calls  # nothing read, nothing summarized


@pytest.mark.parametrize("where", ["server", "dm"])
async def test_a_user_refused_for_their_budget_gets_no_model_call_from_20_edits(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, where: str
) -> None:
    """Edits buy no model calls past the budget: re-learning after an edit is background
    work charged to the user, and stops with their budget (in DMs too)."""
    d = fake_discord
    bot = await bots.start(
        user_daily_tokens=60,
        facts_batch_messages=1,
        summary_trigger_tokens=100,
        summary_keep_recent_tokens=10,
        edit_relearn_seconds=0,  # no debounce: the budget alone must hold
    )
    fake_llm.json_responder = facts_responder
    channel = d.CHANNEL_ID if where == "server" else d.dm_channel_id(d.alice)
    first = await d.send_message(
        d.alice, channel, "I live in Lyon " + "words " * 100, mention_bot=where == "server"
    )
    assert (await d.final_text(await d.next_bot_message(channel), quiet=0.2)).startswith("echo")
    await d.send_message(d.alice, channel, "and now?", mention_bot=where == "server")
    assert "today" in await d.final_text(await d.next_bot_message(channel), quiet=0.2)
    await bot.engine.jobs.idle()
    calls = len(fake_llm.chat_calls)

    for i in range(20):
        await d.edit_user_message(first, f"I live in City{i} " + "words " * 100)

    async def last_edit_stored() -> bool:
        return any(c.startswith("I live in City19") for _, c in await stored(bot, d.alice))

    await eventually(last_edit_stored, "the 20th edit")
    await bot.engine.jobs.idle()
    assert len(fake_llm.chat_calls) == calls


async def test_edits_pass_the_same_gate_as_messages(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """An edit by a member the server's admins blocked since is not taken: not stored, not
    learned from (a block, like every access rule, covers edits)."""
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    sent = await d.send_message(d.bob, d.CHANNEL_ID, "I live in Lyon", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.2)
    await bot.engine.jobs.idle()
    calls = len(fake_llm.chat_calls)
    await bot.engine.controls.set_blocked(d.GUILD_ID, d.bob.id, True, by=d.admin.id)
    await d.edit_user_message(sent, "I live in BLOCKED-EDIT")
    await ask(d, d.alice, d.CHANNEL_ID, "after the edit")  # the edit event was handled before
    await bot.engine.jobs.idle()
    assert "BLOCKED-EDIT" not in json.dumps(await bot.storage.users.export(d.bob.id))
    assert not any("BLOCKED-EDIT" in json.dumps(call) for call in fake_llm.chat_calls[calls:])
