"""What users see is well formed: notes outside code blocks, command pages within Discord's
limits. The real discord.py client against the loopback Discord, which enforces those limits."""

from __future__ import annotations

import json
import re
from typing import Any

import discord

from bot.client.splitter import utf16_len
from cogs.facts import paginate
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, press
from tests.helpers.llm import labelled_ids

LENGTH_NOTE = "-# (the answer reached the reply length limit)"


async def test_length_note_is_not_inside_an_open_code_block(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    await bots.start(max_reply_tokens=40)  # the loopback LLM cuts at 4 characters a token
    code = "\n".join(f"    total += item_{i}" for i in range(40))
    fake_llm.push_answers(f"Here is the loop:\n```python\nfor item in items:\n{code}\n```")
    await d.send_message(d.alice, d.CHANNEL_ID, "write me a loop", mention_bot=True)
    shown = await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.5)
    assert shown.endswith("\n```\n\n" + LENGTH_NOTE), shown
    before_note = shown[: -len(LENGTH_NOTE)]
    assert before_note.count("```") % 2 == 0  # the block is closed before the note


def long_value(number: int) -> str:
    """200 characters heavy in markdown (each escape doubles a character on screen)."""
    return ("my *vintage* _tape_ ~deck~ `set` |no| " * 8)[: 200 - 4] + f" {number:03d}"


def long_facts_responder(body: dict[str, Any]) -> str:
    facts = []
    for text, mid in labelled_ids(body).items():
        for number in (int(n) for n in re.findall(r"#(\d+)", text)):
            attribute = f"hobby_collection_of_vintage_things_{number:04d}"  # 40 characters
            facts.append({"attribute": attribute, "value": long_value(number), "sources": [mid]})
    return json.dumps({"facts": facts})


async def test_facts_show_pages_fit_whatever_the_facts_lengths(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = long_facts_responder
    for first in range(0, 24, 4):
        said = " ".join(f"#{n} {long_value(n)}" for n in range(first, first + 4))
        await d.send_message(d.alice, d.CHANNEL_ID, said, mention_bot=True)
        await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.2)
    await bot.engine.jobs.idle()
    assert len(await bot.storage.facts.current(d.alice.id, d.GUILD_ID)) == 24

    shown = await d.slash(d.alice, "facts", "show")
    pages = [await shown.wait_text()]
    assert "Something went wrong" not in pages[0]
    assert pages[0].endswith(f"of {pages[0].rsplit(' of ', 1)[1]}")  # the pager is shown
    pages_count = int(pages[0].rsplit(" of ", 1)[1])
    assert pages_count > 1
    while len(pages) < pages_count:
        await press(d, d.alice, shown, "Next ▶")
        await d.wait_for(
            lambda: (shown.original and shown.original.content != pages[-1]) or None, 5, "next page"
        )
        assert shown.original is not None
        pages.append(shown.original.content)
    for page in pages:
        assert utf16_len(page) <= 2000
        assert "Something went wrong" not in page
    seen = "\n".join(pages)
    for number in range(24):  # every fact is on a page, whole
        assert f"hobby_collection_of_vintage_things_{number:04d}**:" in seen
        assert discord.utils.escape_markdown(long_value(number)) in seen


def test_paginate_cuts_by_size_and_keeps_lines_whole() -> None:
    lines = [f"• fact {n} " + "é😀" * (n * 7 % 100) for n in range(60)]
    pages = paginate("**Title**", lines, 500)
    assert all(utf16_len(page) <= 500 and page.startswith("**Title**\n") for page in pages)
    assert [line for page in pages for line in page.split("\n")[1:]] == lines
    [page] = paginate("**Title**", ["x" * 900], 500)  # a line too long for any page
    assert utf16_len(page) <= 500 and page.endswith("x…")
