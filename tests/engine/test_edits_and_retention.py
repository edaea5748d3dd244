"""Edits, deletions and retention of stored messages, through the engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.engine.engine import IncomingMessage, MemoryEngine
from bot.engine.pending import LateChange, UnstoredChanges
from bot.policy.access import ChannelView
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.engines import Engines, hold_in_one_rate_window
from tests.helpers.llm import is_summary_call, labelled_ids
from tests.helpers.storage import file_contains

pytestmark = pytest.mark.both_backends

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)
SMALL = {"summary_trigger_tokens": 200, "summary_keep_recent_tokens": 60}


async def say(engine: MemoryEngine, discord_id: int, text: str) -> None:
    await engine.reply(IncomingMessage(ALICE, discord_id, text, "Alice"))


async def test_edit_updates_text_and_tokens(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.responder = lambda body: "noted"
    await say(engine, 1, "I live in Lisbon")
    assert await engine.message_edited(1, "I live in Porto, actually, since last spring")
    assert not await engine.message_edited(999, "unknown message")
    [stored] = await engine.storage.messages.by_ids([1])
    assert stored.content == "I live in Porto, actually, since last spring"
    assert stored.tokens == engine._tokenizer.count(stored.content)
    await say(engine, 2, "where do I live?")
    prompt = fake_llm.prompt_texts()[-1]
    assert "Porto" in prompt and "Lisbon" not in prompt


async def test_delete_removes_message_sole_source_facts_and_rebuilds_summary(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL, facts_batch_messages=2)

    def extract(body: dict[str, Any]) -> str:
        facts = [
            {"attribute": "pet_name", "value": "Pixel", "sources": [mid]}
            for text, mid in labelled_ids(body).items()
            if "Pixel" in text
        ]
        return json.dumps({"facts": facts})

    def respond(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            return "summary: " + " | ".join(
                line for line in message_text(body["messages"][-1]).splitlines() if "[user]" in line
            )
        return "ok"

    fake_llm.json_responder = extract
    fake_llm.responder = respond
    await say(engine, 1, "my cat is called Pixel " + "and she is lovely " * 10)
    for i in range(2, 8):
        await say(engine, i, f"filler message {i} " * 10)
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session and "Pixel" in session.summary
    assert [f.value for f in await engine.storage.facts.current(1, 100)] == ["Pixel"]

    assert await engine.message_deleted(1)
    assert await engine.storage.facts.current(1, 100) == []
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and "Pixel" not in session.summary
    assert session.summary  # rebuilt from what remains
    assert not await engine.message_deleted(1)


async def test_retention_deletes_only_summarized_old_messages(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL, retention_days=30)
    fake_llm.responder = lambda body: "a summary" if is_summary_call(body) else "ok"
    for i in range(1, 9):
        await say(engine, i, f"message {i} " * 12)
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summarized_through > 0
    # Age every message past the retention period.
    async with engine.storage.db.transaction() as tx:
        await tx.execute("UPDATE messages SET created_at = created_at - 40 * 86400")
    deleted = await engine.purge_expired()
    remaining = await engine.storage.messages.newest(session.id, after_id=0, limit=100)
    assert deleted > 0
    assert all(m.id > session.summarized_through for m in remaining)  # unsummarized kept
    assert len(remaining) == 16 - deleted


def city_facts(body: dict[str, Any]) -> str:
    facts = [
        {"attribute": "city", "value": text.split("I live in ")[1], "sources": [mid]}
        for text, mid in labelled_ids(body).items()
        if "I live in " in text
    ]
    return json.dumps({"facts": facts})


async def test_an_edit_during_an_extraction_in_flight_wins(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(facts_batch_messages=1)
    fake_llm.responder = lambda body: "noted"
    arrived, release = asyncio.Event(), asyncio.Event()

    async def extract(body: dict[str, Any]) -> str:
        arrived.set()
        await release.wait()
        return city_facts(body)

    fake_llm.json_responder = extract
    await say(engine, 1, "I live in Lyon")
    await asyncio.wait_for(arrived.wait(), 5)  # the extraction has read the old text
    assert await engine.message_edited(1, "I live in Grenoble")
    release.set()
    await engine.jobs.idle()
    assert [f.value for f in await engine.storage.facts.current(1, 100)] == ["Grenoble"]


async def test_a_deletion_during_a_summary_in_flight_wins(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL)
    arrived, release = asyncio.Event(), asyncio.Event()

    async def respond(body: dict[str, Any]) -> str:
        if not is_summary_call(body):
            return "ok"
        arrived.set()
        await release.wait()
        lines = message_text(body["messages"][-1]).splitlines()
        return "summary: " + " | ".join(line for line in lines if "[user]" in line)

    fake_llm.responder = respond
    for i in range(1, 8):
        await say(engine, i, f"MARKER-{i} " + "filler words " * 20)
    await asyncio.wait_for(arrived.wait(), 5)  # the summary has read message 1
    assert await engine.message_deleted(1)
    release.set()
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary  # rebuilt from what remains
    assert "MARKER-1 " not in session.summary


def test_changes_of_unstored_messages_are_remembered_in_bounded_memory() -> None:
    now = [0.0]
    changes = UnstoredChanges(ttl=60.0, max_entries=3, clock=lambda: now[0])
    changes.deleted(1)
    changes.edited(1, "an edit after the deletion")  # a deletion is final
    changes.edited(2, "first edit")
    changes.edited(2, "second edit")
    assert changes.take(1) == LateChange(deleted=True)
    assert changes.take(2) == LateChange(content="second edit")
    assert changes.take(2) is None  # taken once
    for discord_id in range(10, 20):
        changes.deleted(discord_id)
    assert len(changes) == 3  # the oldest are dropped past the cap
    now[0] = 61.0
    assert changes.take(19) is None and len(changes) == 0  # and all expire after the ttl


def extraction_calls(fake_llm: FakeLLM) -> list[dict[str, Any]]:
    return [call for call in fake_llm.chat_calls if "response_format" in call]


async def test_relearning_after_edits_is_debounced(engines: Engines, fake_llm: FakeLLM) -> None:
    """The first edit of a conversation is learned from at once; the next ones within
    EDIT_RELEARN_SECONDS wait for one pass at the end of the period, whatever their number."""
    engine = await engines.start(facts_batch_messages=1, edit_relearn_seconds=3600)
    fake_llm.responder = lambda body: "noted"
    await say(engine, 1, "I live in Lisbon")
    await engine.jobs.idle()
    before = len(extraction_calls(fake_llm))
    assert await engine.message_edited(1, "I live in Porto", user_id=ALICE.user_id, admit=True)
    await engine.jobs.idle()
    assert len(extraction_calls(fake_llm)) == before + 1  # read again at once
    calls = len(fake_llm.chat_calls)
    for i in range(20):
        await engine.message_edited(1, f"I live in City{i}", user_id=ALICE.user_id, admit=True)
    await engine.jobs.idle()
    assert len(fake_llm.chat_calls) == calls  # folded into one pass, an hour from now
    [stored] = await engine.storage.messages.by_ids([1])
    assert stored.content == "I live in City19"  # the text itself is stored at once
    session = await engine.storage.sessions.find(ALICE.channel_id, ALICE.user_id)
    assert session is not None and ("edit-relearn", session.id) in engine.jobs._timers


async def test_edits_count_against_the_per_minute_rate(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(user_messages_per_minute=2)
    hold_in_one_rate_window(engine)
    fake_llm.responder = lambda body: "noted"
    await say(engine, 1, "I live in Lisbon")  # 1 of 2
    assert await engine.message_edited(1, "I live in Porto", user_id=ALICE.user_id, admit=True)
    assert not await engine.message_edited(1, "I live in Oslo", user_id=ALICE.user_id, admit=True)
    [stored] = await engine.storage.messages.by_ids([1])
    assert stored.content == "I live in Porto"  # the edit past the rate was not taken


@pytest.mark.sqlite_only
async def test_an_edit_takes_the_old_words_out_of_the_files(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    """The old text of an edited message leaves the search index's pages and the WAL, as a
    deleted message's does (the index merge is scheduled, then the WAL checkpointed)."""
    engine = await engines.start()
    fake_llm.responder = lambda body: "noted"
    await say(engine, 1, "my locker code word is quixotelantern")
    assert file_contains(engine.storage.db.path, "quixotelantern")  # type: ignore[attr-defined]
    assert await engine.message_edited(1, "never mind that")
    await engine.jobs.idle()
    assert not file_contains(engine.storage.db.path, "quixotelantern")  # type: ignore[attr-defined]


@pytest.mark.sqlite_only
async def test_memory_off_deletions_take_the_words_out_of_the_files(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    """With memory off a conversation keeps only its recent window: what falls out of it
    leaves the search index's pages too, not only the table."""
    engine = await engines.start(max_prompt_tokens=2400)
    fake_llm.responder = lambda body: "ok"
    off = ChannelView(memory=False)

    async def say_unremembered(discord_id: int, text: str) -> None:
        await engine.reply(IncomingMessage(ALICE, discord_id, text, "Alice", view=off))

    await say_unremembered(1, "the first thing I said was quixotelantern")
    for n in range(2, 40):
        await say_unremembered(n, f"filler message number {n} " + "words " * 80)
    await engine.jobs.idle()
    assert await engine.storage.messages.by_ids([1]) == []
    assert not file_contains(engine.storage.db.path, "quixotelantern")  # type: ignore[attr-defined]
