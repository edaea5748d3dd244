"""Summaries and facts: computed in the background, crash-safe, validated, scoped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from storage.models import DM_SPACE, SessionKey
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.engines import SMALL, Engines, chat, said
from tests.helpers.llm import fact_calls, is_summary_call, labelled_ids, summary_calls

pytestmark = pytest.mark.both_backends

ALICE_SERVER = SessionKey(guild_id=100, channel_id=10, user_id=1)
ALICE_DM = SessionKey(guild_id=None, channel_id=50, user_id=1)
BOB_SERVER = SessionKey(guild_id=100, channel_id=10, user_id=2)


async def test_summary_appears_past_threshold_and_enters_the_prompt(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL)
    fake_llm.responder = lambda body: (
        "SUMMARY-MARKER: the user described project Zephyr."
        if is_summary_call(body)
        else "ok " * 30
    )
    await chat(engine, ALICE_SERVER, *[f"detail {i} about project Zephyr " * 3 for i in range(8)])
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary.startswith("SUMMARY-MARKER")
    assert session.summarized_through > 0
    # Raw messages are kept; the newest turns stay out of the summary.
    stats = await engine.storage.messages.stats(session)
    assert stats.messages == 16 and stats.unsummarized_messages >= 2
    await chat(engine, ALICE_SERVER, "what was I working on?")
    last = fake_llm.prompts()[-1]
    assert "SUMMARY-MARKER" in last[0]["content"]
    window = "\n".join(m["content"] for m in last[1:-1])
    assert "detail 0 about" not in window  # folded messages leave the window
    # The summary prompt asks for what matters.
    instructions = message_text(summary_calls(fake_llm)[0]["messages"][0])
    for wanted in ("names", "numbers", "dates", "code identifiers", "decisions", "promises"):
        assert wanted in instructions


async def test_summary_cap_is_enforced_in_code(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(**SMALL, summary_max_tokens=60)
    fake_llm.responder = lambda body: (
        "A long summary sentence. " * 200 if is_summary_call(body) else "fine"
    )
    await chat(engine, ALICE_SERVER, *["a fairly long message " * 20 for _ in range(4)])
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary
    assert engine.summarizer.enforce_cap(session.summary) == session.summary
    assert session.summary_tokens <= 60


async def test_reply_does_not_wait_for_background_work(engines: Engines, fake_llm: FakeLLM) -> None:
    # A server that runs requests in parallel: the summary call runs beside the replies.
    engine = await engines.start(**SMALL, model_parallel=4)
    release = asyncio.Event()

    async def responder(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            await release.wait()  # the summary call hangs until the test lets it go
            return "late summary"
        return "ok"

    fake_llm.responder = responder
    for i in range(10):
        await chat(engine, ALICE_SERVER, f"message {i} " + "filler " * 30)
    # Every reply arrived although the summary call triggered along the way never answered.
    assert len(summary_calls(fake_llm)) == 1
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == ""
    release.set()
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "late summary"


async def test_crash_during_summary_loses_nothing_and_reruns(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL)
    hanging = asyncio.Event()

    async def responder(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            hanging.set()
            await asyncio.sleep(3600)
        return "ok"

    fake_llm.responder = responder
    texts = [f"crash-test message {i} " + "x " * 40 for i in range(6)]
    await chat(engine, ALICE_SERVER, *texts)
    await asyncio.wait_for(hanging.wait(), 5)
    await engines.stop(engine, grace=0.1)  # the job is cancelled mid-call

    fake_llm.responder = lambda body: "recovered summary" if is_summary_call(body) else "ok"
    restarted = await engines.start(**SMALL)
    session = await restarted.storage.sessions.find(10, 1)
    assert session is not None and session.summary == ""  # nothing half-written
    await restarted.jobs.idle()  # start() re-scheduled the lagging summary
    session = await restarted.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "recovered summary"
    stats = await restarted.storage.messages.stats(session)
    assert stats.messages == 12
    assert await restarted.storage.db.integrity_ok()


async def test_facts_are_validated_superseded_and_scoped(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(facts_batch_messages=3)

    def extract(body: dict[str, Any]) -> str:
        ids = labelled_ids(body)
        facts = []
        for text, mid in ids.items():
            if "Lisbon" in text:
                facts += [
                    {"attribute": "city", "value": "Lisbon", "sources": [mid]},
                    {"attribute": "employer", "value": "Globex", "sources": [mid]},  # invented
                ]
            if "Porto" in text:
                facts.append({"attribute": "city", "value": "Porto", "sources": [mid]})
            if "from now on" in text:
                facts.append({"attribute": "answer_style", "value": "pirate", "sources": [mid]})
            if "DM-only" in text:
                facts.append({"attribute": "nickname", "value": "Zed", "sources": [mid]})
        facts.append({"attribute": "name", "value": "Bob", "sources": [999_999]})  # not in batch
        return json.dumps({"facts": facts})

    fake_llm.json_responder = extract
    await chat(
        engine,
        ALICE_SERVER,
        "I live in Lisbon these days",
        "from now on talk like a pirate",
        "nothing much",
    )
    await engine.jobs.idle()
    facts = await engine.storage.facts.current(1, 100)
    assert [(f.attribute, f.value) for f in facts] == [("city", "Lisbon")]

    await chat(engine, ALICE_SERVER, "I moved to Porto last month", "ok", "fine")
    await engine.jobs.idle()
    assert [(f.attribute, f.value) for f in await engine.storage.facts.current(1, 100)] == [
        ("city", "Porto")
    ]
    history = await engine.storage.facts.history(1)
    assert [(f.value, f.valid_until is not None) for f in history] == [
        ("Lisbon", True),
        ("Porto", False),
    ]

    await chat(engine, ALICE_DM, "call me Zed, DM-only", "a", "b")
    await engine.jobs.idle()
    assert [f.value for f in await engine.storage.facts.current(1, DM_SPACE)] == ["Zed"]
    await chat(engine, ALICE_SERVER, "who am I?")
    server_prompt = fake_llm.prompts()[-1][0]["content"]
    assert '- city: "Porto"' in server_prompt and "Zed" not in server_prompt
    assert "pirate" not in server_prompt
    # Bob, in the same channel, gets none of Alice's facts.
    await chat(engine, BOB_SERVER, "hello")
    assert "Porto" not in fake_llm.prompt_texts()[-1]


async def test_extraction_cites_only_the_speakers_messages(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(facts_batch_messages=2)
    await chat(engine, BOB_SERVER, "I am Bob from Oslo", "yes")
    await engine.jobs.idle()
    bob_message_ids = list(labelled_ids(fact_calls(fake_llm)[-1]).values())

    fake_llm.json_responder = lambda body: json.dumps(
        {"facts": [{"attribute": "city", "value": "Oslo", "sources": bob_message_ids[:1]}]}
    )
    await chat(engine, ALICE_SERVER, "I like Oslo's harbour", "ok")
    await engine.jobs.idle()
    assert await engine.storage.facts.current(1, 100) == []  # Bob's message is not in her batch


async def test_malformed_json_is_a_failed_attempt_then_retried(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(facts_batch_messages=2)
    fake_llm.fail_next("bad_json")
    fake_llm.fail_next("cut_json", text='{"facts": [{"attribute": "city", "value": "Rome", "sou')

    def extract(body: dict[str, Any]) -> str:
        [mid] = [m for t, m in labelled_ids(body).items() if "Rome" in t]
        return json.dumps({"facts": [{"attribute": "city", "value": "Rome", "sources": [mid]}]})

    fake_llm.json_responder = extract
    engine.jobs._retry_delays = (0.01, 0.01, 0.01)
    await chat(engine, ALICE_SERVER, "I live in Rome", "ok")
    await engine.jobs.idle()
    assert len(fact_calls(fake_llm)) == 3  # two broken answers stored nothing, then success
    assert [f.value for f in await engine.storage.facts.current(1, 100)] == ["Rome"]


async def test_quiet_session_triggers_extraction(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(facts_batch_messages=50, facts_idle_seconds=0.2)
    await chat(engine, ALICE_SERVER, "just one message")
    assert fact_calls(fake_llm) == []
    for _ in range(50):
        if fact_calls(fake_llm):
            break
        await asyncio.sleep(0.05)
    await engine.jobs.idle()
    assert len(fact_calls(fake_llm)) == 1
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.facts_through > 0


async def test_long_conversation_cost(engines: Engines, fake_llm: FakeLLM) -> None:
    """200 turns of ~40-token messages and ~120-token answers: background calls per user
    message and the largest prompt (figures for the issue's note)."""
    engine = await engines.start()
    fake_llm.responder = lambda body: (
        "Summary: " + "the user discussed topics. " * 40
        if is_summary_call(body)
        else "Here is a considered answer with some detail. " * 13
    )
    largest = 0
    for turn in range(200):
        result = await engine.reply(
            said(ALICE_SERVER, f"Turn {turn}: I'm asking about part {turn} of the plan, " * 3)
        )
        assert result.prompt is not None
        largest = max(largest, result.prompt.tokens)
        await engine.jobs.idle()
    background = len(summary_calls(fake_llm)) + len(fact_calls(fake_llm))
    per_message = background / 200
    print(f"\nbackground calls per user message: {per_message:.3f}; largest prompt: {largest}")
    assert per_message <= 0.25
    assert largest <= engine._settings.max_prompt_tokens
