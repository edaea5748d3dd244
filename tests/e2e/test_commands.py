"""Slash commands end to end: what users see, what they can and cannot do, what is deleted."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from pathlib import Path
from random import Random
from typing import Any

from bot.client.bot import MemoryBot
from bot.client.ui import CANCELLED, TIMED_OUT
from storage.models import SessionKey
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, final_content, press, settled, talk, talk_dm
from tests.helpers.llm import facts_responder, is_summary_call

EPHEMERAL = 64
# (name, type): the slash commands (1) and the message commands, right-click → Apps (3).
REGISTERED = {
    ("memory", 1),
    ("facts", 1),
    ("mnemo-admin", 1),
    ("help", 1),
    ("Remember this", 3),
    ("Forget this", 3),
}


async def test_commands_are_synced_globally_once(bots: Bots, fake_discord: FakeDiscord) -> None:
    bot = await bots.start()
    names = {(c["name"], c["type"]) for c in fake_discord.global_commands}
    assert names == REGISTERED
    puts = [r for r in fake_discord.requests if r.method == "PUT"]
    assert len(puts) == 1
    await bots.stop(bot)
    await bots.start()  # same definitions: no second sync
    assert len([r for r in fake_discord.requests if r.method == "PUT"]) == 1


async def test_commands_lost_on_discords_side_are_synced_again(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    """The stored fingerprint is not trusted alone: an operator reset the commands (or another
    application shares the database), so Discord has none, and the next start syncs."""
    bot = await bots.start()
    await bots.stop(bot)
    fake_discord.global_commands = []
    await bots.start()
    names = {(c["name"], c["type"]) for c in fake_discord.global_commands}
    assert names == REGISTERED
    assert len([r for r in fake_discord.requests if r.method == "PUT"]) == 2


async def test_dev_guild_sync(bots: Bots, fake_discord: FakeDiscord) -> None:
    await bots.start(dev_guild_id=fake_discord.GUILD_ID)
    names = {(c["name"], c["type"]) for c in fake_discord.guild_commands[fake_discord.GUILD_ID]}
    assert names == REGISTERED
    assert fake_discord.global_commands == []


async def test_memory_show(bots: Bots, fake_discord: FakeDiscord) -> None:
    d = fake_discord
    await bots.start()
    for text in ("first", "second", "third"):
        await talk(d, d.alice, d.CHANNEL_ID, text)
    interaction = await d.slash(d.alice, "memory", "show")
    response = await interaction.response()
    assert response["data"]["flags"] & EPHEMERAL
    embed = response["data"]["embeds"][0]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Messages"] == "6 stored, 6 in the window"
    assert fields["Facts about you here"] == "0"
    assert "of 6000" in fields["Prompt tokens"]
    assert "none yet" in embed["description"]
    empty = await d.slash(d.bob, "memory", "show")
    bob_fields = {
        f["name"]: f["value"] for f in (await empty.response())["data"]["embeds"][0]["fields"]
    }
    assert bob_fields["Messages"] == "0 stored, 0 in the window"


async def test_clear_this_channel_with_confirmation(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start()
    await talk(d, d.alice, d.CHANNEL_ID, "MARKER-here")
    await talk(d, d.alice, d.OTHER_CHANNEL_ID, "MARKER-there")
    interaction = await d.slash(d.alice, "memory", "clear")
    await interaction.response()
    # Bob cannot press Alice's button.
    intruder = await press(d, d.bob, interaction, "Erase")
    refusal = await intruder.response()
    assert refusal["data"]["flags"] & EPHEMERAL and "someone else" in refusal["data"]["content"]
    await press(d, d.alice, interaction, "Erase")
    assert await final_content(interaction) == "Done. Deleted 2 messages, 0 summaries and 0 facts."
    await talk(d, d.alice, d.CHANNEL_ID, "what did I say?")
    assert "MARKER-here" not in fake_llm.prompt_texts()[-1]
    await talk(d, d.alice, d.OTHER_CHANNEL_ID, "and here?")
    assert "MARKER-there" in fake_llm.prompt_texts()[-1]


async def test_confirmation_cancel_and_timeout_delete_nothing(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    bot = await bots.start()
    bot.get_cog("Memory").confirm_timeout = 1.0  # type: ignore[union-attr]
    await talk(d, d.alice, d.CHANNEL_ID, "keep me")
    cancelled = await d.slash(d.alice, "memory", "clear", {"scope": "everywhere"})
    await cancelled.response()
    await press(d, d.alice, cancelled, "Cancel")
    assert await final_content(cancelled) == CANCELLED
    timed_out = await d.slash(d.alice, "memory", "clear")
    await timed_out.response()
    assert await final_content(timed_out) == TIMED_OUT
    export = await bot.storage.users.export(d.alice.id)
    assert len(export["messages"]) == 2


async def test_clear_everywhere_leaves_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM, db_path: Path
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    await talk(d, d.alice, d.CHANNEL_ID, "I live in MARKERVILLE")
    await talk_dm(d, d.alice, "my dog is MARKERDOG")
    await talk(d, d.bob, d.CHANNEL_ID, "I live in Bobtown")
    await bot.engine.jobs.idle()
    assert len(await bot.storage.facts.current(d.alice.id, d.GUILD_ID)) == 1
    interaction = await d.slash(d.alice, "memory", "clear", {"scope": "everywhere"})
    await interaction.response()
    await press(d, d.alice, interaction, "Erase")
    assert await final_content(interaction) == "Done. Deleted 4 messages, 0 summaries and 2 facts."
    await bots.stop(bot)
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith("mnemo"))
    assert b"MARKERVILLE" not in raw and b"MARKERDOG" not in raw
    assert b"Bobtown" in raw


async def test_clear_racing_a_summary_leaves_nothing(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(summary_trigger_tokens=100, summary_keep_recent_tokens=10)
    started, release = asyncio.Event(), asyncio.Event()

    async def responder(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            started.set()
            await release.wait()
            return "SUMMARY-OF-CLEARED-MARKER"
        return "ok"

    fake_llm.responder = responder
    for i in range(4):
        await talk(d, d.alice, d.CHANNEL_ID, f"MARKER-race {i} " + "words " * 30)
    await asyncio.wait_for(started.wait(), 5)
    interaction = await d.slash(d.alice, "memory", "clear")
    await interaction.response()
    await press(d, d.alice, interaction, "Erase")
    await final_content(interaction)
    release.set()
    await bot.engine.jobs.idle()
    export = await bot.storage.users.export(d.alice.id)
    assert "MARKER" not in json.dumps(export)


async def test_export_is_a_json_file(bots: Bots, fake_discord: FakeDiscord) -> None:
    d = fake_discord
    await bots.start()
    await talk(d, d.alice, d.CHANNEL_ID, "export me")
    interaction = await d.slash(d.alice, "memory", "export")
    await interaction.wait_text()
    [(name, data)] = interaction.attachments
    assert name == "mnemo-export.json"
    export = json.loads(data)
    assert [m["content"] for m in export["messages"]] == ["export me", "echo: export me"]
    assert interaction.ephemeral


async def test_a_big_export_comes_gzipped_in_parts_within_the_upload_limit(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    """An export bigger than Discord's upload limit (which the loopback Discord enforces and
    tells in each interaction, lowered here) comes gzipped, cut into parts that fit."""
    d = fake_discord
    d.upload_limit = 200_000
    bot = await bots.start()
    random = Random(19)
    key = SessionKey(d.GUILD_ID, d.CHANNEL_ID, d.alice.id)
    for n in range(60):  # ~1 MB of JSON that compresses poorly
        text = f"big-{n} " + base64.b64encode(random.randbytes(12_000)).decode()
        await bot.storage.messages.add(
            key, role="user", content=text, tokens=10, discord_id=None, now=1.0 + n
        )
    interaction = await d.slash(d.alice, "memory", "export")
    first = await interaction.wait_text(timeout=30)
    parts = int(first.split("gzipped in ")[1].split()[0])
    assert parts >= 4
    await d.wait_for(lambda: len(interaction.attachments) == parts or None, 30, "every part")
    names = [name for name, _ in interaction.attachments]
    assert names == [f"mnemo-export.json.gz.{n:03d}" for n in range(1, parts + 1)]
    assert all(len(data) <= d.upload_limit for _, data in interaction.attachments)
    export = json.loads(gzip.decompress(b"".join(data for _, data in interaction.attachments)))
    assert [m["content"].split()[0] for m in export["messages"]] == [f"big-{n}" for n in range(60)]
    assert "token_usage_by_day" in export and "blocked_in_servers" in export
    assert interaction.ephemeral and all(m.ephemeral for m in interaction.messages)


async def test_facts_show_forget_and_scopes(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    await talk(d, d.alice, d.CHANNEL_ID, "I live in Lisbon")
    await talk(d, d.alice, d.CHANNEL_ID, "my dog is Rex")
    await talk_dm(d, d.alice, "I live in Secretburg")
    await bot.engine.jobs.idle()

    shown = await (await d.slash(d.alice, "facts", "show")).wait_text()
    assert "**city**: Lisbon" in shown and "**dog_name**: Rex" in shown
    assert "Secretburg" not in shown  # DM facts stay in DMs
    assert f"https://discord.com/channels/{d.GUILD_ID}/{d.CHANNEL_ID}/" in shown
    assert f"in <#{d.CHANNEL_ID}>" in shown
    dm_shown = await (await d.slash(d.alice, "facts", "show", dm=True)).wait_text()
    assert "Secretburg" in dm_shown and "Lisbon" not in dm_shown and "in DMs" in dm_shown
    assert "https://discord.com/channels/@me/" in dm_shown
    bob_shown = await (await d.slash(d.bob, "facts", "show")).wait_text()
    assert "haven't learned any facts" in bob_shown

    choices = await d.autocomplete(d.alice, "facts", "forget", "fact", "ci")
    assert [c["name"] for c in choices] == ["city: Lisbon"]
    assert await d.autocomplete(d.bob, "facts", "forget", "fact", "") == []

    fact_id = choices[0]["value"]
    stolen = await d.slash(d.bob, "facts", "forget", {"fact": fact_id})
    assert "couldn't find" in await stolen.wait_text()
    forget = await d.slash(d.alice, "facts", "forget", {"fact": fact_id})
    await forget.response()
    await press(d, d.alice, forget, "Forget")
    assert (await final_content(forget)).startswith("Forgotten")
    remaining = await bot.storage.facts.current(d.alice.id, d.GUILD_ID)
    assert [f.attribute for f in remaining] == ["dog_name"]


async def test_admin_forget_member_and_stats(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot: MemoryBot = await bots.start()
    await talk(d, d.alice, d.CHANNEL_ID, "in server one")
    await talk(d, d.alice, d.GUILD2_CHANNEL_ID, "in server two")

    denied = await d.slash(d.bob, "mnemo-admin", "stats")
    assert "Manage Server" in await denied.wait_text()
    stats = await (await d.slash(d.admin, "mnemo-admin", "stats")).wait_text()
    assert "Messages stored: 2" in stats and "in server one" not in stats

    refused = await d.slash(d.bob, "mnemo-admin", "forget", {"member": d.alice})
    assert "Manage Server" in await refused.wait_text()
    interaction = await d.slash(d.admin, "mnemo-admin", "forget", {"member": d.alice})
    await interaction.response()
    await press(d, d.admin, interaction, "Erase")
    assert "Deleted 2 messages" in await final_content(interaction)
    export = await bot.storage.users.export(d.alice.id)
    assert [m["content"] for m in export["messages"]] == ["in server two", "echo: in server two"]
    await settled(d, d.CHANNEL_ID)


async def test_help_lists_every_command_and_is_never_cut(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    from cogs.help import command_list, pages

    d = fake_discord
    bot = await bots.start()
    every = command_list(bot.tree)
    assert ("/memory why" in [name for name, _ in every]) and len(every) > 15
    expected = [f"`{name}` · {description}" for name, description in every]

    def all_shown() -> list[str] | None:  # each command on a whole line of its own
        texts = [message.content for message in interaction.messages]
        lines = "\n".join(texts).split("\n")
        return texts if all(line in lines for line in expected) else None

    interaction = await d.slash(d.admin, "help")
    texts = await d.wait_for(all_shown, 5.0, "every command in /help")
    assert all(0 < len(text) <= 2000 for text in texts), [len(t) for t in texts]
    assert all(message.ephemeral for message in interaction.messages)
    assert len(texts) >= 2  # the admin help is longer than one message: paged
    member = await d.slash(d.bob, "help")
    await member.wait_text()
    seen = "\n".join(m.content for m in member.messages)
    assert "`/memory why` ·" in seen and "/mnemo-admin" not in seen
    # A text longer than one message is paged between lines, never cut inside one.
    long = ["x" * 1500, "\n".join(f"line {i} " + "y" * 90 for i in range(30))]
    paged = pages(long)
    assert all(len(p) <= 2000 for p in paged) and len(paged) >= 2
    assert "\n".join(paged).split("\n") == "\n\n".join(long).split("\n")


async def test_erasures_are_one_per_cooldown_per_user(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """Each erasure rewrites the search index: a user cannot run them in a loop. A second
    `/memory clear` or a `/facts forget` right after is refused with a short note, asks no
    confirmation and deletes nothing; another user is not held back."""
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1, erasure_cooldown_seconds=600)
    fake_llm.json_responder = facts_responder
    await talk(d, d.alice, d.CHANNEL_ID, "I live in Lisbon")
    await bot.engine.jobs.idle()
    first = await d.slash(d.alice, "memory", "clear")
    await first.response()
    await press(d, d.alice, first, "Erase")
    assert (await final_content(first)).startswith("Done.")

    await talk(d, d.alice, d.CHANNEL_ID, "KEEP-ME-7")
    again = await d.slash(d.alice, "memory", "clear")
    assert "you can erase again in" in await again.wait_text()
    [fact] = await bot.storage.facts.current(d.alice.id, d.GUILD_ID)
    forget = await d.slash(d.alice, "facts", "forget", {"fact": str(fact.id)})
    assert "you can erase again in" in await forget.wait_text()
    export = await bot.storage.users.export(d.alice.id)
    assert any("KEEP-ME-7" in m["content"] for m in export["messages"])
    assert len(await bot.storage.facts.current(d.alice.id, d.GUILD_ID)) == 1

    await talk(d, d.bob, d.CHANNEL_ID, "hello")
    bobs = await d.slash(d.bob, "memory", "clear")
    await bobs.response()
    await press(d, d.bob, bobs, "Erase")
    assert (await final_content(bobs)).startswith("Done.")
