"""Edits, deletions and retention of stored messages, through the engine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.memory import IncomingMessage, MemoryEngine
from storage.models import SessionKey
from tests.conftest import Engines
from tests.fakes.llm_server import FakeLLM, message_text
from tests.test_background_memory import is_summary_call, labelled_ids

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
