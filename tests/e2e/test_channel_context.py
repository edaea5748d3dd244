"""Channel context (#21): with it on, the prompt holds the channel's recent messages from
everyone, with who said what; the speaker's memory stays the speaker's; erasure, deletion and
edits reach it, on every process. Through the loopback Discord and the loopback LLM."""

from __future__ import annotations

import pytest

from bot.client.bot import MemoryBot
from bot.memory.channel import CHANNEL_HEADER
from storage.models import SessionKey
from tests.fakes.discord import ChannelRef, FakeDiscord, FakeUser
from tests.fakes.llm_server import FakeLLM, is_reply_call
from tests.helpers.e2e import Bots, ask, talk
from tests.helpers.llm import facts_responder

pytestmark = pytest.mark.both_backends

EPHEMERAL = 64


def reply_prompt(llm: FakeLLM) -> list[dict[str, str]]:
    """The messages of the last chat call that answered someone."""
    calls = [call for call in llm.chat_calls if is_reply_call(call)]
    return [{"role": m["role"], "content": str(m["content"])} for m in calls[-1]["messages"]]


def channel_block(llm: FakeLLM) -> list[str]:
    """The channel context's lines in the last reply's prompt (without their times)."""
    system = reply_prompt(llm)[0]["content"]
    if CHANNEL_HEADER not in system:
        return []
    block = system[system.index(CHANNEL_HEADER) :].split("\n\n")[0].split("\n")[1:]
    return [line.split("] ", 1)[1] for line in block]


def in_force(shown: str) -> str:
    return next(line for line in shown.splitlines() if line.startswith("Channel context:"))


async def chatter(d: FakeDiscord, user: FakeUser, text: str, channel: int | None = None) -> dict:
    """A message not addressed to Mnemo, once the bot has received it."""
    payload = await d.send_message(user, channel or d.CHANNEL_ID, text)
    return payload


async def heard(bot: MemoryBot, channel_id: int, count: int, d: FakeDiscord) -> None:
    """Wait until the bot's channel buffer holds `count` lines (gateway events are async)."""

    def enough() -> bool | None:
        buffer = bot.channel_log.buffer(channel_id)
        return (buffer is not None and len(buffer.lines) >= count) or None

    await d.wait_for(enough, 5, f"{count} lines heard in {channel_id}")


async def test_the_prompt_holds_who_said_what_oldest_first_and_who_speaks_now(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(channel_context="on")
    twin = FakeUser(1_400_000_000_000_000_077, "alice2", "Alice")  # another Alice
    d.users[twin.id] = twin
    assert await ask(d, d.alice, d.CHANNEL_ID, "hello Mnemo") == "echo: hello Mnemo"
    await chatter(d, d.alice, "I think we should ship on Friday")
    await chatter(d, twin, "I disagree, Monday is safer")
    await heard(bot, d.CHANNEL_ID, 4, d)  # Alice's question, the answer, and two lines
    await ask(d, d.bob, d.CHANNEL_ID, "what do you think of the plan?")
    block = channel_block(fake_llm)
    alice, twin_label = "Alice (user …0001)", "Alice (user …0077)"
    assert block == [
        f'{alice}: "@Mnemo hello Mnemo"',
        'you (Mnemo): "echo: hello Mnemo"',
        f'{alice}: "I think we should ship on Friday"',
        f'{twin_label}: "I disagree, Monday is safer"',
    ]
    system = reply_prompt(fake_llm)[0]["content"]
    assert "the one speaking to you now is Bob" in system
    # Bob's own message is the new message, not a channel line.
    assert reply_prompt(fake_llm)[-1]["content"] == "what do you think of the plan?"
    # Alice's own window is not repeated in her channel context: only the others' lines.
    await ask(d, d.alice, d.CHANNEL_ID, "and you?")
    lines = channel_block(fake_llm)
    assert 'you (Mnemo): "echo: hello Mnemo"' not in lines
    assert f'{alice}: "@Mnemo hello Mnemo"' not in lines
    assert f'{alice} (speaking to you now): "I think we should ship on Friday"' in lines
    assert 'Bob: "@Mnemo what do you think of the plan?"' in lines


async def test_off_by_default_and_per_channel_with_what_is_in_force(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    await chatter(d, d.alice, "said while it was off")
    await ask(d, d.bob, d.CHANNEL_ID, "anything?")
    assert channel_block(fake_llm) == []
    assert len(bot.channel_log) == 0, "nothing kept where it is off"

    turned = await d.slash(
        d.admin,
        "mnemo-admin",
        "channel-context",
        {"mode": "on", "channel": ChannelRef(d.CHANNEL_ID)},
    )
    shown = (await turned.response())["data"]["content"]
    assert in_force(shown) == "Channel context: on (the channel's recent messages, who said what)"
    await chatter(d, d.alice, "Friday works for me")
    await chatter(d, d.alice, "elsewhere", channel=d.OTHER_CHANNEL_ID)
    await heard(bot, d.CHANNEL_ID, 1, d)
    await ask(d, d.bob, d.CHANNEL_ID, "anything now?")
    # Kept from when it is on; the channel's recent history is read once, as anyone there can.
    assert channel_block(fake_llm) == [
        'Alice: "said while it was off"',
        'Alice: "Friday works for me"',
    ]
    await ask(d, d.bob, d.OTHER_CHANNEL_ID, "and here?")
    assert channel_block(fake_llm) == [], "only where the admins turned it on"
    assert bot.channel_log.buffer(d.OTHER_CHANNEL_ID) is None

    reset = await d.slash(
        d.admin,
        "mnemo-admin",
        "channel-context",
        {"mode": "inherit", "channel": ChannelRef(d.CHANNEL_ID)},
    )
    assert in_force((await reset.response())["data"]["content"]) == (
        "Channel context: off (the bot's default)"
    )


async def test_the_budget_keeps_the_newest_lines_under_its_cap(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(channel_context="on", channel_context_tokens=120)
    for n in range(30):
        await chatter(d, d.alice, f"line number {n} about the release plan")
    await heard(bot, d.CHANNEL_ID, 30, d)
    await ask(d, d.bob, d.CHANNEL_ID, "summarise please")
    block = channel_block(fake_llm)
    assert 0 < len(block) < 30
    assert block[-1] == 'Alice: "line number 29 about the release plan"'
    numbers = [int(line.split("line number ")[1].split()[0]) for line in block]
    assert numbers == sorted(numbers) and numbers[-1] == 29, "the newest, oldest first"
    system = reply_prompt(fake_llm)[0]["content"]
    section = system[system.index(CHANNEL_HEADER) :].split("\n\n")[0]
    assert bot.engine._tokenizer.count(section) <= 120


async def test_bob_gets_bobs_memory_only_even_with_alice_in_the_channel(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(channel_context="on", facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    # Alice's memory, learned elsewhere in the server: a fact and an older message.
    await talk(d, d.alice, d.OTHER_CHANNEL_ID, "I live in Oslo, by the fjord")
    await bot.engine.jobs.idle()
    assert [f.value for f in await bot.storage.facts.current(d.alice.id, d.GUILD_ID)] == ["Oslo"]
    await chatter(d, d.alice, "my favourite pizza is margherita")
    await heard(bot, d.CHANNEL_ID, 1, d)
    await d.send_message(
        d.bob,
        d.CHANNEL_ID,
        "where does she live, and the fjord?",
        mention_bot=True,
        mention_users=[d.alice],
    )
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    prompt = "\n".join(m["content"] for m in reply_prompt(fake_llm))
    assert 'Alice: "my favourite pizza is margherita"' in channel_block(fake_llm)
    assert "Oslo" not in prompt, "none of Alice's facts or recalled messages"
    assert "Facts this user has told you" not in prompt
    assert "the one speaking to you now is Bob" in prompt


async def test_edits_show_the_new_text_marked_and_deleted_lines_leave(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(channel_context="on")
    plan = await chatter(d, d.alice, "plan A: ship on Friday")
    doomed = await chatter(d, d.alice, "my phone number is 555-0100")
    spam = [await chatter(d, d.bob, f"spam {n}") for n in range(3)]
    await heard(bot, d.CHANNEL_ID, 5, d)
    await d.edit_user_message(plan, "plan B: ship on Monday")
    await d.delete_user_message(doomed)
    await d.bulk_delete_user_messages(spam)  # a moderator's purge
    await d.wait_for(
        lambda: (len(bot.channel_log.buffer(d.CHANNEL_ID).lines) == 1) or None,  # type: ignore[union-attr]
        5,
        "the deletions heard",
    )
    await ask(d, d.bob, d.CHANNEL_ID, "what is the plan?")
    assert channel_block(fake_llm) == ['Alice: "plan B: ship on Monday" (edited)']
    assert "plan A" not in reply_prompt(fake_llm)[0]["content"]


async def test_bots_webhooks_blocked_and_paused_people_are_left_out(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(channel_context="on", blocked_user_ids=str(d.owner.id))
    await chatter(d, d.other_bot, "I am a bot")
    await d.send_message(d.alice, d.CHANNEL_ID, "from a webhook", webhook_id=1_400_000_000_099)
    await chatter(d, d.owner, "the operator blocked me")
    await chatter(d, d.admin, "blocked by the server later")
    await chatter(d, d.alice, "an ordinary line")
    await heard(bot, d.CHANNEL_ID, 2, d)
    blocked = await d.slash(d.admin, "mnemo-admin", "block", {"member": d.admin}, group="access")
    await blocked.response()
    await ask(d, d.bob, d.CHANNEL_ID, "who said what?")
    assert channel_block(fake_llm) == ['Alice: "an ordinary line"']
    # A person who paused their memory is not remembered in the channel context either.
    paused = await d.slash(d.alice, "memory", "pause")
    await paused.response()
    await ask(d, d.bob, d.CHANNEL_ID, "and now?")
    assert channel_block(fake_llm) == []


async def test_without_the_intent_it_says_so_and_keeps_what_it_can_read(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(message_content_intent="false")
    turned = await d.slash(d.admin, "mnemo-admin", "channel-context", {"mode": "on"})
    shown = (await turned.response())["data"]["content"]
    assert "Message Content intent" in shown and "Channel context: on" in shown
    await chatter(d, d.alice, "unreadable without the intent")
    assert await ask(d, d.alice, d.CHANNEL_ID, "a readable question") == "echo: a readable question"
    await heard(bot, d.CHANNEL_ID, 2, d)
    await ask(d, d.bob, d.CHANNEL_ID, "what did she ask?")
    assert channel_block(fake_llm) == [
        'Alice: "@Mnemo a readable question"',
        'you (Mnemo): "echo: a readable question"',
    ]


@pytest.mark.parametrize("erasure", ["everywhere", "this channel", "admin forget"])
async def test_erasure_reaches_the_channel_context_of_another_process_and_a_restart(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, erasure: str
) -> None:
    d = fake_discord
    # Two processes on one database: the one started last receives the gateway's events and
    # keeps the channel's lines; the other one erases.
    eraser = await bots.start(channel_context="on")
    holder = await bots.start(channel_context="on")
    await chatter(d, d.alice, "Alice's line before the erasure")
    said = await chatter(d, d.admin, "a line that will be deleted")
    await chatter(d, d.admin, "Admin's line stays")
    await heard(holder, d.CHANNEL_ID, 3, d)
    await ask(d, d.bob, d.CHANNEL_ID, "who said what?")
    assert 'Alice: "Alice\'s line before the erasure"' in channel_block(fake_llm)

    if erasure == "everywhere":
        await eraser.engine.forget_user(d.alice.id)
    elif erasure == "this channel":
        await eraser.engine.clear_conversation(SessionKey(d.GUILD_ID, d.CHANNEL_ID, d.alice.id))
    else:
        await eraser.engine.forget_member(d.alice.id, d.GUILD_ID)
    await d.delete_user_message(said)
    await d.wait_for(
        lambda: (
            (said["id"] not in {str(i) for i in holder.channel_log.buffer(d.CHANNEL_ID).lines})  # type: ignore[union-attr]
            or None
        ),
        5,
        "the deletion heard",
    )
    await ask(d, d.bob, d.CHANNEL_ID, "and now?")
    lines = channel_block(fake_llm)
    assert not any("Alice's line" in line or "deleted" in line for line in lines), lines
    assert 'Admin: "Admin\'s line stays"' in lines

    # A restart reads the channel's history from Discord again: still nothing of Alice's.
    lines = await restart_and_ask(bots, holder, d, fake_llm)
    assert 'Admin: "Admin\'s line stays"' in lines, "the history was read"
    assert not any("Alice's line" in line or "deleted" in line for line in lines), lines


async def test_remember_this_and_forget_this_on_ones_own_message(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    fake_llm.json_responder = facts_responder
    mine = await chatter(d, d.alice, "by the way, I live in Lisbon now")
    bobs = await chatter(d, d.bob, "I live in Porto")

    refused = await d.message_command(d.alice, "Remember this", bobs)
    answer = (await refused.response())["data"]
    assert answer["flags"] & EPHEMERAL and "your own messages" in answer["content"]
    assert (await bot.storage.users.export(d.bob.id))["messages"] == [], "nothing of Bob's kept"

    remembered = await d.message_command(d.alice, "Remember this", mine)
    text = await remembered.wait_text()
    assert text.startswith("Remembered.") and "city: Lisbon" in text
    assert [f.value for f in await bot.storage.facts.current(d.alice.id, d.GUILD_ID)] == ["Lisbon"]
    again = await d.message_command(d.alice, "Remember this", mine)
    assert (await again.wait_text()).startswith("I had that message already.")
    assert await bot.engine.awaiting_reply() == [], "a remembered message is no question"

    nothing = await chatter(d, d.alice, "nice weather today")
    learned_nothing = await d.message_command(d.alice, "Remember this", nothing)
    assert "learned nothing" in await learned_nothing.wait_text()

    not_yours = await d.message_command(d.alice, "Forget this", bobs)
    assert "your own messages" in (await not_yours.response())["data"]["content"]
    forgotten = await d.message_command(d.alice, "Forget this", mine)
    assert (await forgotten.wait_text()).startswith("Forgotten")
    assert await bot.storage.facts.current(d.alice.id, d.GUILD_ID) == []
    contents = [m["content"] for m in (await bot.storage.users.export(d.alice.id))["messages"]]
    assert contents == ["nice weather today"]


async def test_a_line_forgotten_with_forget_this_stays_out_after_a_restart(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """ "Forget this" leaves the message on Discord (it is the author's, not the bot's to
    delete): a restart reads the channel's history again, and the forgotten line must not
    come back with it. Neither for a message the bot never stored (only heard)."""
    d = fake_discord
    bot = await bots.start(channel_context="on")
    stored = await d.send_message(d.alice, d.CHANNEL_ID, "my PIN is 4921", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    only_heard = await chatter(d, d.alice, "my locker code is 7730")
    await chatter(d, d.admin, "Admin's line stays")
    await heard(bot, d.CHANNEL_ID, 4, d)
    for message in (stored, only_heard):
        forgotten = await d.message_command(d.alice, "Forget this", message)
        await forgotten.wait_text()
    await ask(d, d.bob, d.CHANNEL_ID, "what was said?")
    lines = channel_block(fake_llm)
    assert 'Admin: "Admin\'s line stays"' in lines
    assert not any("4921" in line or "7730" in line for line in lines), lines

    lines = await restart_and_ask(bots, bot, d, fake_llm)
    assert 'Admin: "Admin\'s line stays"' in lines, "the history was read again"
    assert not any("4921" in line or "7730" in line for line in lines), lines


async def restart_and_ask(
    bots: Bots, bot: MemoryBot, d: FakeDiscord, fake_llm: FakeLLM
) -> list[str]:
    """Restart the bot (channel context on) and ask in the channel: the channel block sent."""
    await bots.stop(bot)
    await bots.start(channel_context="on")
    await ask(d, d.bob, d.CHANNEL_ID, "after the restart?")
    return channel_block(fake_llm)
