"""The memory engine over a real SQLite file and the real openai SDK to the loopback LLM."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from bot.engine.engine import MemoryEngine, Outcome
from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM, is_reply_call
from tests.helpers.engines import Engines, said

pytestmark = pytest.mark.both_backends

ALICE_HERE = SessionKey(guild_id=100, channel_id=10, user_id=1)
BOB_HERE = SessionKey(guild_id=100, channel_id=10, user_id=2)
ALICE_ELSEWHERE = SessionKey(guild_id=100, channel_id=11, user_id=1)


async def stored_texts(engine: MemoryEngine, key: SessionKey) -> list[tuple[str, str]]:
    session = await engine.storage.sessions.find(key.channel_id, key.user_id)
    assert session is not None
    newest = await engine.storage.messages.newest(session.id, after_id=0, limit=1000)
    return [(m.role, m.content) for m in reversed(newest)]


async def test_reply_streams_and_stores_both_sides(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.push_answers("Nice to meet you, Alice. " * 10)
    seen: list[str] = []

    async def progress(text: str) -> None:
        seen.append(text)

    result = await engine.reply(said(ALICE_HERE, "hi, I'm Alice"), progress)
    assert result.outcome is Outcome.ANSWERED
    assert result.text == "Nice to meet you, Alice. " * 10
    assert seen[0] == ""  # accepted before the model answered
    assert len(seen) > 3 and seen[-1] == result.text  # grew chunk by chunk
    assert await stored_texts(engine, ALICE_HERE) == [
        ("user", "hi, I'm Alice"),
        ("assistant", result.text),
    ]
    call = fake_llm.chat_calls[-1]
    assert call["stream"] is True and call["max_tokens"] == 1000


async def test_memory_survives_restart(engines: Engines, fake_llm: FakeLLM) -> None:
    first = await engines.start()
    await first.reply(said(ALICE_HERE, "my locker code is MARKER-4412"))
    await engines.stop(first)
    second = await engines.start()
    await second.reply(said(ALICE_HERE, "what is my locker code?"))
    assert "MARKER-4412" in fake_llm.prompt_texts()[-1]


async def test_sessions_never_share_messages(engines: Engines, fake_llm: FakeLLM) -> None:
    # The windows of sessions: recall (which may quote Alice's own messages from her other
    # channel in this server) is off here and proven in tests/memory/test_recall.py.
    engine = await engines.start(recall_max_tokens=0)
    await engine.reply(said(ALICE_HERE, "alice-secret-AAA"))
    await engine.reply(said(BOB_HERE, "bob-secret-BBB", name="Bob"))
    await engine.reply(said(ALICE_ELSEWHERE, "alice-other-channel-CCC"))
    await engine.reply(said(BOB_HERE, "what do you know about alice?", name="Bob"))
    await engine.reply(said(ALICE_HERE, "and now?"))
    prompts = fake_llm.prompt_texts()
    assert "bob-secret-BBB" not in prompts[-1] and "alice-other-channel-CCC" not in prompts[-1]
    assert "alice-secret-AAA" in prompts[-1]
    assert "alice-secret-AAA" not in prompts[-2] and "bob-secret-BBB" in prompts[-2]
    assert "alice-secret-AAA" not in prompts[2]


async def test_duplicate_event_is_answered_once(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    message = said(ALICE_HERE, "hello once")
    first, second = await asyncio.gather(engine.reply(message), engine.reply(message))
    assert sorted(r.outcome.value for r in (first, second)) == ["answered", "duplicate"]
    assert len(fake_llm.chat_calls) == 1


async def test_one_session_is_handled_in_order(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.stream_chunk_delay = 0.01
    messages = [said(ALICE_HERE, f"message number {i}") for i in range(6)]
    await asyncio.gather(*(engine.reply(m) for m in messages))
    stored = await stored_texts(engine, ALICE_HERE)
    assert [text for role, text in stored if role == "user"] == [m.content for m in messages]
    # Each answer follows its own question.
    for index in range(0, len(stored), 2):
        assert stored[index + 1][1] == f"echo: {stored[index][1]}"


async def test_llm_failure_keeps_message_and_next_turn_remembers(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start()
    for kind in ("500", "429", "refused", "503"):
        fake_llm.fail_next(kind)
        result = await engine.reply(said(ALICE_HERE, f"before-{kind}"))
        assert result.outcome is Outcome.FAILED and result.error is not None
        assert result.error.user_message
    ok = await engine.reply(said(ALICE_HERE, "are you back?"))
    assert ok.outcome is Outcome.ANSWERED
    last_prompt = fake_llm.prompt_texts()[-1]
    assert all(f"before-{k}" in last_prompt for k in ("500", "429", "refused", "503"))


async def test_cut_or_unfinished_stream_is_not_stored(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.push_answers("part one part two part three part four", "no finish reason here")
    fake_llm.fail_next("stream_cut")
    cut = await engine.reply(said(ALICE_HERE, "tell me a story"))
    fake_llm.fail_next("no_finish")
    unfinished = await engine.reply(said(ALICE_HERE, "again"))
    assert cut.outcome is Outcome.FAILED and cut.error and cut.error.kind == "interrupted"
    assert cut.text  # what arrived is handed back to show, marked as interrupted
    assert unfinished.outcome is Outcome.FAILED
    assert [role for role, _ in await stored_texts(engine, ALICE_HERE)] == ["user", "user"]


async def test_hang_hits_the_deadline(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(llm_timeout_seconds=5, reply_deadline_seconds=0.5)
    fake_llm.fail_next("hang")
    result = await engine.reply(said(ALICE_HERE, "hello?"))
    assert result.outcome is Outcome.FAILED and result.error and result.error.kind == "timeout"


async def test_oversize_message_truncated_in_prompt_stored_whole(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start()
    huge = "lorem ipsum " * 3000
    await engine.reply(said(ALICE_HERE, huge))
    assert await stored_texts(engine, ALICE_HERE) == [
        ("user", huge),
        ("assistant", f"echo: {huge[:200]}"),
    ]
    prompt = fake_llm.prompts()[-1]
    assert "message cut here" in prompt[-1]["content"]
    assert len(prompt[-1]["content"]) < len(huge)


async def test_prompt_never_exceeds_budget(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(
        max_prompt_tokens=800, max_message_tokens=200, summary_max_tokens=100, facts_max_tokens=50
    )
    fake_llm.responder = lambda body: "answer " * 150
    sizes = []
    for turn in range(25):
        result = await engine.reply(said(ALICE_HERE, f"turn {turn} " + "word " * 60))
        assert result.prompt is not None
        sizes.append(result.prompt.tokens)
    assert max(sizes) <= 800
    assert result.prompt.window_messages >= 1


async def test_quota_exhausted_fails_fast_without_retry_storm(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(llm_max_retries=2)
    fake_llm.fail_next("quota", count=3)  # the SDK retries the first call twice
    first = await engine.reply(said(ALICE_HERE, "hello"))
    calls_after_first = len(fake_llm.requests)
    second = await engine.reply(said(ALICE_HERE, "hello again"))
    assert first.error and first.error.kind == "quota"
    assert second.error and second.error.kind == "quota"
    assert "quota" in second.error.user_message
    assert len(fake_llm.requests) == calls_after_first  # no call at all during the backoff


async def test_context_length_error_trims_harder_and_retries_once(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(summary_trigger_tokens=100_000)
    for turn in range(12):
        await engine.reply(said(ALICE_HERE, f"turn {turn} " + "words " * 300))
    # The failure is the reply's: a fact extraction that the turns started (a JSON-mode call)
    # may reach the server first, and must not take it.
    fake_llm.fail_next("context_length", json_mode=False)
    calls_before = len(fake_llm.chat_calls)
    result = await engine.reply(said(ALICE_HERE, "still there?"))
    assert result.outcome is Outcome.ANSWERED
    assert fake_llm.pending_failures == []
    # This reply's two answering calls: the one refused and its retry.
    replies = [
        list(call["messages"]) for call in fake_llm.chat_calls[calls_before:] if is_reply_call(call)
    ]
    first, retry = replies
    assert len(str(retry)) < len(str(first)) * 0.7
    assert retry[-1]["content"] == "still there?"


@pytest.mark.sqlite_only
async def test_every_reply_path_query_uses_an_index(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    await engine.reply(said(ALICE_HERE, "warm up"))  # the session exists from here on
    statements: list[str] = []
    connection = engine.storage.db._conn
    await connection.set_trace_callback(statements.append)
    await engine.reply(said(ALICE_HERE, "a turn on the reply path"))
    await connection.set_trace_callback(None)
    queries = [
        s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))
    ]
    assert len(queries) >= 4
    for query in queries:
        plan = await engine.storage.db.fetch_all(f"EXPLAIN QUERY PLAN {query}")
        details = " ".join(row["detail"] for row in plan)
        # Allowed: the FTS5 index answering a MATCH (its plan says SCAN … VIRTUAL TABLE INDEX
        # n:M…), and the recall query's few best-by-text candidates ("hit") read back.
        details = re.sub(r"SCAN messages_fts VIRTUAL TABLE INDEX \d+:M\S*", "", details)
        details = details.replace("SCAN hit", "").replace("SCAN CONSTANT ROW", "")
        assert "SCAN" not in details, (query, details)


async def test_a_queued_message_erased_before_a_restart_is_not_answered_after_it(
    engines: Engines,
) -> None:
    """The queue row carries the fence read on arrival: an erasure that committed just before
    the row was written (so did not delete it) still drops the message after a restart."""
    first = await engines.start()
    storage = first.storage
    arrived_fence = await storage.erasures.fence(ALICE_HERE)
    await storage.users.clear_session(ALICE_HERE.channel_id, ALICE_HERE.user_id)  # the erasure
    arrived = time.time() - 5
    await storage.queued.add(ALICE_HERE, 777, fence=arrived_fence, now=arrived)  # written after
    bob_fence = await storage.erasures.fence(BOB_HERE)
    await storage.queued.add(BOB_HERE, 778, fence=bob_fence, now=arrived)  # not erased
    await engines.stop(first)
    second = await engines.start()
    assert [m.discord_id for m in await second.left_in_queue()] == [778]
    left = await second.storage.queued.left_behind(since=0, before=time.time() + 60)
    assert [m.discord_id for m in left] == [778]  # the erased one's row is gone too
