"""Memory never reaches a wider audience (#21), end to end through the loopback Discord.

A place is public when the server's @everyone can view it (Discord's permission overwrites, as
GUILD_CREATE and CHANNEL_UPDATE send them). In a public place only memory said in public places
is used; in a private channel or a private thread, that place's memory and the public places';
in DMs, DM memory. Facts come from the fake memory model (`facts_responder`: "I live in X"),
recalled excerpts from the recall index; each question is asked in another conversation than
the one the memory was said in, so only facts and recall can bring it (never the window).
"""

from __future__ import annotations

from typing import Any

import discord

from bot.client.bot import MemoryBot
from bot.memory.prompt import FACTS_HEADER, RECALL_HEADER
from tests.fakes.discord import FakeDiscord, FakeUser
from tests.fakes.discord.protocol import MEMBER_PERMISSIONS, VIEW_CHANNEL
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.e2e import Bots, eventually, stored, talk, talk_dm
from tests.helpers.llm import facts_responder, is_summary_call

PRIVATE_ID = 1_200_000_000_000_000_041  # a private channel: alice and the bot
PRIVATE_THREAD_ID = 1_200_000_000_000_000_042  # a private thread under CHANNEL_ID
THREAD_OF_PRIVATE_ID = 1_200_000_000_000_000_043  # a public thread under PRIVATE_ID


async def start(bots: Bots, fake_llm: FakeLLM) -> MemoryBot:
    """The bot, reading facts after every user message."""
    fake_llm.json_responder = facts_responder
    return await bots.start(facts_batch_messages=1)


async def say(bot: MemoryBot, d: FakeDiscord, channel: int, text: str) -> None:
    """Alice says it, is answered, and what it teaches is learned."""
    await talk(d, d.alice, channel, text)
    await bot.engine.jobs.idle()


async def prompt_for(
    d: FakeDiscord, fake_llm: FakeLLM, channel: int, question: str, user: FakeUser | None = None
) -> str:
    """Ask in `channel` and return the prompt that answered it."""
    await talk(d, user or d.alice, channel, question)
    for call in reversed(fake_llm.chat_calls):
        if _is_reply(call) and question in message_text(call["messages"][-1]):
            return "\n".join(message_text(m) for m in call["messages"])
    raise AssertionError(f"no prompt answered {question!r}")


def _is_reply(call: dict[str, Any]) -> bool:
    return not call.get("response_format") and not is_summary_call(call)


def facts_in(prompt: str) -> str:
    """The facts section of a prompt ('' without one)."""
    if FACTS_HEADER not in prompt:
        return ""
    return prompt.split(FACTS_HEADER, 1)[1].split("\n\n", 1)[0]


def recalled_in(prompt: str) -> str:
    """The recalled excerpts of a prompt ('' without any)."""
    if RECALL_HEADER not in prompt:
        return ""
    return prompt.split(RECALL_HEADER, 1)[1].split("\n\n", 1)[0]


async def test_a_private_channel_keeps_its_facts_and_messages(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """A fact and a message said in a private channel never reach a public channel's prompt
    (nor a public thread's); they reach the private channel itself (and its public thread,
    whose audience is the channel's); what was said in public reaches the private channel."""
    d = fake_discord
    d.add_private_channel(PRIVATE_ID, "staff", members=[d.alice])
    d.add_public_thread(THREAD_OF_PRIVATE_ID, PRIVATE_ID, "staff thread")
    bot = await start(bots, fake_llm)
    await say(bot, d, d.OTHER_CHANNEL_ID, "the public zebra password is MARKER-PUBLIC")
    await say(bot, d, PRIVATE_ID, "I live in Zanzibar")
    await say(bot, d, PRIVATE_ID, "the private zebra project is MARKER-PRIVATE")

    for place in (d.CHANNEL_ID, d.THREAD_ID):
        prompt = await prompt_for(d, fake_llm, place, f"zebra project in {place}?")
        assert "Zanzibar" not in prompt and "MARKER-PRIVATE" not in prompt, place
        assert "MARKER-PUBLIC" in recalled_in(prompt)  # recall works here, on public memory

    prompt = await prompt_for(d, fake_llm, PRIVATE_ID, "where do I live, and the zebra?")
    assert '"Zanzibar"' in facts_in(prompt)
    assert "MARKER-PUBLIC" in recalled_in(prompt)  # public memory reaches the private channel
    prompt = await prompt_for(d, fake_llm, THREAD_OF_PRIVATE_ID, "zebra project again?")
    assert '"Zanzibar"' in facts_in(prompt)
    assert "MARKER-PRIVATE" in recalled_in(prompt)
    # Export still returns everything.
    assert {"I live in Zanzibar", "the private zebra project is MARKER-PRIVATE"} <= {
        text for _, text in await stored(bot, d.alice)
    }


async def test_a_private_threads_memory_stays_in_the_thread(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    d.add_private_thread(PRIVATE_THREAD_ID, d.CHANNEL_ID, "just us")
    bot = await start(bots, fake_llm)
    thread = bot.get_channel(PRIVATE_THREAD_ID)
    assert isinstance(thread, discord.Thread) and thread.is_private(), "the case under test"
    await say(bot, d, d.OTHER_CHANNEL_ID, "the public otter is MARKER-PUBLIC")
    await say(bot, d, PRIVATE_THREAD_ID, "I live in Quito")
    await say(bot, d, PRIVATE_THREAD_ID, "the secret otter is MARKER-THREAD")

    for place in (d.CHANNEL_ID, d.THREAD_ID, d.OTHER_CHANNEL_ID):
        prompt = await prompt_for(d, fake_llm, place, f"which otter in {place}?")
        assert "Quito" not in prompt and "MARKER-THREAD" not in prompt, place
    prompt = await prompt_for(d, fake_llm, PRIVATE_THREAD_ID, "where do I live? the otter?")
    assert '"Quito"' in facts_in(prompt)
    assert "MARKER-PUBLIC" in recalled_in(prompt)


async def test_a_channel_made_private_stops_sharing_its_past(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """The audience is read when memory is used: once CHANNEL_UPDATE makes a channel
    private, what was said there before no longer reaches public channels (recall, facts,
    /memory why there); made public again, it is shared again, as Discord shows its history
    to everyone again."""
    d = fake_discord
    bot = await start(bots, fake_llm)
    await say(bot, d, d.OTHER_CHANNEL_ID, "I live in Lisbon")
    await say(bot, d, d.OTHER_CHANNEL_ID, "the llama codename is MARKER-LATER")
    prompt = await prompt_for(d, fake_llm, d.CHANNEL_ID, "the llama codename?")
    assert '"Lisbon"' in facts_in(prompt) and "MARKER-LATER" in recalled_in(prompt)
    why = await d.slash(d.alice, "memory", "why", channel_id=d.CHANNEL_ID)
    assert "MARKER-LATER" in await why.wait_text()

    await d.make_private(d.OTHER_CHANNEL_ID, members=[d.alice])
    everyone = bot.get_guild(d.GUILD_ID).default_role  # type: ignore[union-attr]

    async def updated() -> bool:
        channel = bot.get_channel(d.OTHER_CHANNEL_ID)
        return isinstance(channel, discord.TextChannel) and not (
            channel.permissions_for(everyone).view_channel
        )

    await eventually(updated, "the CHANNEL_UPDATE")
    why = await d.slash(d.alice, "memory", "why", channel_id=d.CHANNEL_ID)
    assert "MARKER-LATER" not in await why.wait_text()
    prompt = await prompt_for(d, fake_llm, d.CHANNEL_ID, "the llama codename again?")
    assert "Lisbon" not in prompt and "MARKER-LATER" not in prompt
    prompt = await prompt_for(d, fake_llm, d.THREAD_ID, "llama codename in the thread?")
    assert "Lisbon" not in prompt and "MARKER-LATER" not in prompt
    # The channel itself still has its past, and public memory.
    prompt = await prompt_for(d, fake_llm, d.OTHER_CHANNEL_ID, "where do I live?")
    assert '"Lisbon"' in facts_in(prompt)

    await d.make_public(d.OTHER_CHANNEL_ID)

    async def public_again() -> bool:
        channel = bot.get_channel(d.OTHER_CHANNEL_ID)
        return isinstance(channel, discord.TextChannel) and bool(
            channel.permissions_for(everyone).view_channel
        )

    await eventually(public_again, "the second CHANNEL_UPDATE")
    prompt = await prompt_for(d, fake_llm, d.CHANNEL_ID, "llama codename, once more?")
    assert '"Lisbon"' in facts_in(prompt) and "MARKER-LATER" in recalled_in(prompt)


async def test_memory_commands_show_what_may_be_used_here(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """/facts show lists, and /memory show counts, only the facts the place may use."""
    d = fake_discord
    d.add_private_channel(PRIVATE_ID, "staff", members=[d.alice])
    bot = await start(bots, fake_llm)
    await say(bot, d, PRIVATE_ID, "I live in Zanzibar")
    await say(bot, d, d.OTHER_CHANNEL_ID, "my dog is Rex")

    here = await d.slash(d.alice, "facts", "show", channel_id=d.CHANNEL_ID)
    text = await here.wait_text()
    assert "Rex" in text and "Zanzibar" not in text
    there = await d.slash(d.alice, "facts", "show", channel_id=PRIVATE_ID)
    text = await there.wait_text()
    assert "Rex" in text and "Zanzibar" in text
    show = await d.slash(d.alice, "memory", "show", channel_id=d.CHANNEL_ID)
    assert _facts_field(await show.response()) == "1"
    show = await d.slash(d.alice, "memory", "show", channel_id=PRIVATE_ID)
    assert _facts_field(await show.response()) == "2"


def _facts_field(response: Any) -> str:
    for embed in response["data"].get("embeds", []):
        for field in embed.get("fields", []):
            if field["name"].startswith("Facts"):
                return str(field["value"])
    raise AssertionError("no facts field")


async def test_dm_memory_stays_in_dms(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await start(bots, fake_llm)
    await talk_dm(d, d.alice, "I live in Oslo")
    await talk_dm(d, d.alice, "the walrus secret is MARKER-DM")
    await bot.engine.jobs.idle()
    for place in (d.CHANNEL_ID, d.THREAD_ID):
        prompt = await prompt_for(d, fake_llm, place, f"the walrus secret in {place}?")
        assert "Oslo" not in prompt and "MARKER-DM" not in prompt


async def test_a_server_whose_everyone_sees_no_channel_keeps_memory_in_each(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """@everyone loses View Channel server-wide (members see channels through a role):
    GUILD_ROLE_UPDATE makes every channel private, so memory stays where it was said."""
    d = fake_discord
    bot = await start(bots, fake_llm)
    await say(bot, d, d.OTHER_CHANNEL_ID, "the heron codename is MARKER-ROLE")
    prompt = await prompt_for(d, fake_llm, d.CHANNEL_ID, "the heron codename?")
    assert "MARKER-ROLE" in recalled_in(prompt)

    await d.set_role_permissions(d.GUILD_ID, d.GUILD_ID, MEMBER_PERMISSIONS & ~VIEW_CHANNEL)

    async def updated() -> bool:
        guild = bot.get_guild(d.GUILD_ID)
        channel = bot.get_channel(d.CHANNEL_ID)
        return (
            guild is not None
            and isinstance(channel, discord.TextChannel)
            and not channel.permissions_for(guild.default_role).view_channel
        )

    await eventually(updated, "the GUILD_ROLE_UPDATE")
    prompt = await prompt_for(d, fake_llm, d.CHANNEL_ID, "the heron codename, again?")
    assert "MARKER-ROLE" not in prompt
    prompt = await prompt_for(d, fake_llm, d.OTHER_CHANNEL_ID, "heron codename here?")
    assert "MARKER-ROLE" in prompt  # its own conversation still holds it
