"""End to end: edits, deletions, limits, a full disk, command errors and paging."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, ask, eventually, press, stored, take_tracebacks
from tests.helpers.engines import hold_in_one_rate_window
from tests.helpers.llm import facts_responder


async def test_edited_and_deleted_messages_follow_discord(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)
    fake_llm.json_responder = facts_responder
    sent = await d.send_message(d.alice, d.CHANNEL_ID, "I live in Lisbon", mention_bot=True)
    await d.final_text(await d.next_bot_message(d.CHANNEL_ID), quiet=0.3)
    await bot.engine.jobs.idle()
    assert [f.value for f in await bot.storage.facts.current(d.alice.id, d.GUILD_ID)] == ["Lisbon"]

    await d.edit_user_message(sent, "I live in Porto")

    async def edited() -> bool:
        return ("user", "I live in Porto") in await stored(bot, d.alice)

    await eventually(edited, "the edit to be stored")

    await d.delete_user_message(sent)

    async def deleted() -> bool:
        # The answer to it goes too (issue 19, item 13): it may repeat what was deleted.
        return await stored(bot, d.alice) == []

    await eventually(deleted, "the deletion")
    await d.wait_for(
        lambda: all(m.deleted for m in d.bot_messages(d.CHANNEL_ID)) or None,
        5,
        "the answer deleted",
    )
    # The fact learned only from the deleted message is gone too.
    assert await bot.storage.facts.current(d.alice.id, d.GUILD_ID) == []


async def test_rate_limited_user_is_told_when_to_come_back(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    hold_in_one_rate_window((await bots.start(user_messages_per_minute=2)).engine)
    assert (await ask(d, d.alice, d.CHANNEL_ID, "one")).startswith("echo:")
    assert (await ask(d, d.alice, d.CHANNEL_ID, "two")).startswith("echo:")
    refusal = await ask(d, d.alice, d.CHANNEL_ID, "three")
    assert refusal.startswith("⏳") and "2 a minute" in refusal and "<t:" in refusal
    assert (await ask(d, d.bob, d.CHANNEL_ID, "bob is fine")).startswith("echo:")
    assert len(fake_llm.chat_calls) == 3


async def test_the_start_up_objects_stay_out_of_full_collections_while_the_bot_runs(
    bots: Bots, fake_discord: FakeDiscord
) -> None:
    d = fake_discord
    bot = await bots.start()
    # discord.py, the openai SDK, the cogs: a full collection no longer walks them.
    assert gc.get_freeze_count() > 10_000
    assert (await ask(d, d.alice, d.CHANNEL_ID, "still answering")).startswith("echo:")
    await bots.stop(bot)
    assert gc.get_freeze_count() == 0  # given back once the bot is closed


async def test_full_disk_is_reported_and_recovered_from(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    assert (await ask(d, d.alice, d.CHANNEL_ID, "before the disk filled")).startswith("echo:")
    connection = bot.storage.db._conn
    # SQLite's own "database or disk is full" (SQLITE_FULL), as a full disk raises it.
    pages = (await bot.storage.db.fetch_one("PRAGMA page_count"))[0]  # type: ignore[index]
    await connection.execute(f"PRAGMA max_page_count = {pages}")
    answer = await ask(d, d.alice, d.CHANNEL_ID, "x" * 60_000 + " while the disk is full")
    assert answer == "⚠️ I couldn't save this (the database is unavailable). Please try again soon."
    await connection.execute("PRAGMA max_page_count = 1073741823")
    assert (await ask(d, d.alice, d.CHANNEL_ID, "after")).startswith("echo:")
    contents = [text for _, text in await stored(bot, d.alice)]
    assert contents == [
        "before the disk filled",
        "echo: before the disk filled",
        "after",
        "echo: after",
    ]
    assert take_tracebacks() == []


async def test_a_failing_command_answers_briefly_and_privately(
    bots: Bots, fake_discord: FakeDiscord, db_path: Path
) -> None:
    d = fake_discord
    await bots.start()
    with sqlite3.connect(db_path) as side:  # the facts table vanishes under the bot
        side.execute("ALTER TABLE facts RENAME TO facts_elsewhere")
    interaction = await d.slash(d.alice, "facts", "show")
    text = await interaction.wait_text()
    assert interaction.ephemeral
    assert text == "The database is unavailable right now; nothing was changed. Try again soon."
    with sqlite3.connect(db_path) as side:
        side.execute("ALTER TABLE facts_elsewhere RENAME TO facts")
    again = await d.slash(d.alice, "facts", "show")
    assert "haven't learned any facts" in await again.wait_text()


async def test_long_fact_lists_are_paged_for_their_owner_only(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(facts_batch_messages=1)

    def many_facts(body: dict[str, Any]) -> str:
        from tests.helpers.llm import labelled_ids

        [(text, mid)] = labelled_ids(body).items()
        facts = [
            {"attribute": f"project_{word.lower()}", "value": word, "sources": [mid]}
            for word in text.split()
            if word.istitle()
        ]
        return json.dumps({"facts": facts})

    fake_llm.json_responder = many_facts
    names = " ".join(f"Alpha{chr(97 + i)}" for i in range(12))
    await ask(d, d.alice, d.CHANNEL_ID, f"my projects are {names}")
    await bot.engine.jobs.idle()
    shown = await d.slash(d.alice, "facts", "show")
    first_page = await shown.wait_text()
    assert "Page 1 of 2" in first_page and "Alphaa" in first_page and "Alphal" not in first_page
    intruder = await press(d, d.bob, shown, "Next ▶")
    assert "someone else" in (await intruder.response())["data"]["content"]
    turn = await press(d, d.alice, shown, "Next ▶")
    await turn.response()

    async def second_page() -> bool:
        return shown.original is not None and "Page 2 of 2" in shown.original.content

    await eventually(second_page, "page 2")
    assert shown.original is not None and "Alphal" in shown.original.content
