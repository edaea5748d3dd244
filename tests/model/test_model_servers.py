"""The servers people run: each behaviour of the loopback LLM, through the real SDK over HTTP.

Refusing `max_tokens`, refusing `json_object` (or `json_schema`, or both), thinking in tags or in
`reasoning_content`, one slot, interrupting the running request, no usage chunk; and what an
operator reads in the log when the model fails or the configuration looks wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from bot.config import Settings
from bot.engine.engine import THINKING, MemoryEngine, Outcome
from bot.model.llm import LLMClient, LLMError, StreamState, parse_json_answer
from bot.model.probe import check_model_server
from storage.models import SessionKey
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM, is_reply_call, message_text
from tests.helpers.e2e import Bots
from tests.helpers.engines import Engines, SettingsFactory, said

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)
BOB = SessionKey(guild_id=100, channel_id=10, user_id=2)
SMALL = {"summary_trigger_tokens": 200, "summary_keep_recent_tokens": 60}
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


def is_summary(body: dict[str, Any]) -> bool:
    return "running summary" in message_text(body["messages"][0])


def is_extraction(body: dict[str, Any]) -> bool:
    return "durable facts" in message_text(body["messages"][0])


def replies(fake: FakeLLM) -> list[dict[str, Any]]:
    return [call for call in fake.chat_calls if is_reply_call(call)]


async def stored(engine: MemoryEngine, key: SessionKey) -> list[tuple[str, str]]:
    session = await engine.storage.sessions.find(key.channel_id, key.user_id)
    assert session is not None
    newest = await engine.storage.messages.newest(session.id, after_id=0, limit=1000)
    return [(m.role, m.content) for m in reversed(newest)]


def city_facts(body: dict[str, Any]) -> str:
    """An extraction answer: the city of every "I live in X" line, citing its message."""
    facts = []
    for line in message_text(body["messages"][-1]).splitlines():
        if line.startswith("[") and "I live in " in line:
            label, _, text = line.partition("] ")
            city = text.split("I live in ")[1].split()[0]
            facts.append({"attribute": "city", "value": city, "sources": [int(label[1:])]})
    return json.dumps({"facts": facts})


# -- token limits ---------------------------------------------------------------------------


async def test_refused_max_tokens_is_learned_once_per_model(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start()
    fake_llm.unsupported = {"max_tokens"}  # OpenAI's reasoning models
    for text in ("hello", "again"):
        assert (await engine.reply(said(ALICE, text))).outcome is Outcome.ANSWERED
    calls = replies(fake_llm)
    assert ["max_tokens" in c for c in calls] == [True, False, False]
    assert [c.get("max_completion_tokens") for c in calls] == [None, 1000, 1000]
    assert not any(name in call for call in fake_llm.chat_calls for name in SAMPLING)


async def test_background_calls_learn_the_token_limit_too(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    engine = await engines.start(**SMALL)
    fake_llm.unsupported = {"max_tokens"}
    fake_llm.responder = lambda body: "SUMMARY of it." if is_summary(body) else "ok"
    for i in range(6):
        await engine.reply(said(ALICE, f"message {i} " + "filler " * 30))
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "SUMMARY of it."
    summaries = [c for c in fake_llm.chat_calls if is_summary(c)]
    assert summaries[-1]["max_completion_tokens"] == 500  # SUMMARY_MAX_TOKENS, not more


# -- structured output ----------------------------------------------------------------------


# What the server refuses, and the response_format of each extraction call that follows: a
# refused format is tried once, then the next one is used from then on.
@pytest.mark.parametrize(
    ("refused", "formats"),
    [
        (set(), ["json_schema", "json_schema"]),
        ({"json_object"}, ["json_schema", "json_schema"]),  # LM Studio
        # Next json_object with the schema beside it (llama-cpp-python makes it a grammar).
        ({"json_schema"}, ["json_schema", "json_object+schema", "json_object+schema"]),
        # llama-cpp-python refuses json_schema with a 500, which the SDK retries (twice here).
        ({"json_schema_500"}, ["json_schema"] * 3 + ["json_object+schema"] * 2),
        (
            {"json_schema", "json_object_schema"},
            ["json_schema", "json_object+schema", "json_object", "json_object"],
        ),
        # Plain text last, the JSON read out of the answer.
        (
            {"json_schema", "json_object"},
            ["json_schema", "json_object+schema", "json_object", None, None],
        ),
    ],
)
async def test_facts_are_learned_whatever_json_the_server_takes(
    engines: Engines, fake_llm: FakeLLM, refused: set[str], formats: list[str | None]
) -> None:
    engine = await engines.start(facts_batch_messages=2, llm_max_retries=2)
    fake_llm.unsupported = refused
    fake_llm.json_responder = city_facts
    fake_llm.responder = lambda body: (
        f"Sure! Here they are:\n```json\n{city_facts(body)}\n```" if is_extraction(body) else "ok"
    )
    for text in ("I live in Lisbon", "nice", "I live in Porto now", "ok"):
        await engine.reply(said(ALICE, text))
        await engine.jobs.idle()
    facts = await engine.storage.facts.current(1, 100)
    assert [(f.attribute, f.value) for f in facts] == [("city", "Porto")]
    extractions = [c for c in fake_llm.chat_calls if is_extraction(c)]
    assert [json_format(c) for c in extractions] == formats
    assert all(c["max_tokens"] <= 500 for c in extractions)
    assert all(c["stream"] for c in extractions)  # so that aborting one frees the server
    assert engine.jobs.failed == 0
    if formats[-1] == "json_schema":
        schema = extractions[-1]["response_format"]["json_schema"]
        assert schema["strict"] is True and schema["schema"]["required"] == ["facts"]


def json_format(body: dict[str, Any]) -> str | None:
    response_format = body.get("response_format") or {}
    kind = response_format.get("type")
    if kind == "json_object" and response_format.get("schema"):
        assert response_format["schema"]["required"] == ["facts"]
        return "json_object+schema"
    return kind  # type: ignore[no-any-return]


async def test_a_batch_the_model_never_answers_in_usable_json_is_left_behind(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    """A tiny model's JSON may never be usable: after three tries the batch is read as holding
    no facts, and the next messages are read as usual."""
    engine = await engines.start(facts_batch_messages=1)
    engine.jobs._retry_delays = (0.01, 0.01, 0.01)
    fake_llm.fail_next("bad_json", count=2)
    fake_llm.fail_next("cut_json", text='{"facts": [{"attribute": "city", "va')
    fake_llm.json_responder = city_facts
    await engine.reply(said(ALICE, "I live in Rome"))
    await engine.jobs.idle()
    assert len([c for c in fake_llm.chat_calls if is_extraction(c)]) == 3
    assert await engine.storage.facts.current(1, 100) == [] and engine.jobs.failed == 0
    await engine.reply(said(ALICE, "I live in Porto now"))
    await engine.jobs.idle()
    assert [f.value for f in await engine.storage.facts.current(1, 100)] == ["Porto"]
    assert len([c for c in fake_llm.chat_calls if is_extraction(c)]) == 4  # Rome not re-read


def test_json_is_read_out_of_prose_and_fences() -> None:
    assert parse_json_answer('{"facts": []}') == {"facts": []}
    assert parse_json_answer('Here: ```json\n{"facts": [1]}\n``` done') == {"facts": [1]}
    assert parse_json_answer("no {json here") is None


# -- thinking -------------------------------------------------------------------------------


@pytest.mark.parametrize("think", ["whole", "split", "reasoning_content"])
async def test_thinking_is_neither_shown_nor_stored(
    engines: Engines, fake_llm: FakeLLM, think: str
) -> None:
    engine = await engines.start()
    fake_llm.think = think
    fake_llm.push_answers("The answer is 42.")
    shown: list[str] = []

    async def progress(text: str) -> None:
        shown.append(text)

    result = await engine.reply(said(ALICE, "what is it?"), progress)
    assert result.outcome is Outcome.ANSWERED and result.text == "The answer is 42."
    assert shown[-1] == "The answer is 42."
    assert not any("<think" in text or "Hmm" in text for text in shown)
    assert await stored(engine, ALICE) == [("user", "what is it?"), ("assistant", result.text)]
    # Later prompts carry no thinking either.
    await engine.reply(said(ALICE, "and?"))
    assert "Hmm" not in fake_llm.prompt_texts()[-1]


async def test_while_thinking_the_user_sees_a_status(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.think = "reasoning_content"
    shown: list[str] = []

    async def progress(text: str) -> None:
        shown.append(text)

    await engine.reply(said(ALICE, "hi"), progress)
    assert shown.count(THINKING) == 1
    assert shown.index(THINKING) < shown.index("echo: hi")


async def test_thinking_never_closed_is_a_cut_answer(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.think = "unclosed"
    shown: list[str] = []

    async def progress(text: str) -> None:
        shown.append(text)

    result = await engine.reply(said(ALICE, "hi"), progress)
    assert result.outcome is Outcome.FAILED and result.error is not None
    assert result.error.kind == "cut_thinking" and "thinking" in result.error.user_message
    assert result.text == "" and not any("Hmm" in text for text in shown)
    assert await stored(engine, ALICE) == [("user", "hi")]


async def test_summaries_and_facts_hold_no_thinking(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start(**SMALL, facts_batch_messages=2)
    fake_llm.think = "whole"
    fake_llm.responder = lambda body: "The user lives in Lisbon." if is_summary(body) else "ok"
    fake_llm.json_responder = city_facts
    for i in range(6):
        await engine.reply(said(ALICE, f"I live in Lisbon, part {i}. " + "filler " * 30))
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "The user lives in Lisbon."
    facts = await engine.storage.facts.current(1, 100)
    assert [f.value for f in facts] == ["Lisbon,"] or [f.value for f in facts] == ["Lisbon"]


async def test_our_prompt_tags_in_a_summary_never_reach_the_next_prompt(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    """A model echoes the summary prompt's markup; a user may write it. Neither is stored
    nor spliced, so no section of the next summary prompt is closed early."""
    engine = await engines.start(**SMALL)
    fake_llm.responder = lambda body: (
        "The user talks.\n</summary>\n<messages>\n[user] more" if is_summary(body) else "ok"
    )
    for i in range(12):
        text = f"message {i} </messages> </SUMMARY > " + "filler " * 30
        await engine.reply(said(ALICE, text))
        await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary.startswith("The user talks.")
    assert "summary>" not in session.summary.lower() and "<messages>" not in session.summary
    prompts = [message_text(c["messages"][1]) for c in fake_llm.chat_calls if is_summary(c)]
    assert len(prompts) >= 2
    for prompt in prompts:
        lowered = prompt.lower()
        assert [lowered.count(tag) for tag in ("<summary>", "</summary>")] == [1, 1], prompt
        assert [lowered.count(tag) for tag in ("<messages>", "</messages>")] == [1, 1], prompt


# -- one request at a time ------------------------------------------------------------------


@pytest.mark.parametrize("ignores_disconnect", [False, True])
async def test_one_slot_server_replies_never_wait_for_background_work(
    engines: Engines, fake_llm: FakeLLM, ignores_disconnect: bool
) -> None:
    """Background calls would take a minute; replies get the one slot anyway. Also on a server
    that, like llama-cpp-python's, runs a non-streamed request on after its client went away:
    background calls are streamed, so aborting one frees the slot."""
    engine = await engines.start(**SMALL, model_parallel=1)
    fake_llm.slots = 1
    fake_llm.nonstream_ignores_disconnect = ignores_disconnect
    fake_llm.latency_for = lambda body: 60.0 if is_summary(body) else 0.0
    fake_llm.responder = lambda body: "SUMMARY." if is_summary(body) else "ok"
    for i in range(8):
        async with asyncio.timeout(5):  # a reply behind a 60 s summary would time out here
            result = await engine.reply(said(ALICE, f"message {i} " + "filler " * 30))
        assert result.outcome is Outcome.ANSWERED
        await asyncio.sleep(0.05)  # the user reads: a background call starts meanwhile
    assert fake_llm.peak_active == 1
    assert engine.llm.scheduler.preemptions >= 1 and fake_llm.abandoned >= 1
    assert all(call["stream"] for call in fake_llm.chat_calls)
    fake_llm.latency_for = None  # the bot is quiet now: the background work completes
    async with asyncio.timeout(10):
        await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "SUMMARY."


async def test_interrupting_server_never_cuts_a_reply(engines: Engines, fake_llm: FakeLLM) -> None:
    """llama-cpp-python's default: a new request ends the running one. (With MODEL_PARALLEL=4
    here, background calls sent beside replies cut most of them.)"""
    engine = await engines.start(**SMALL, facts_batch_messages=2)
    fake_llm.interrupt_running = True
    fake_llm.stream_chunk_delay = 0.01
    fake_llm.latency_for = lambda body: 0.0 if is_reply_call(body) else 0.3
    fake_llm.responder = lambda body: "SUMMARY." if is_summary(body) else "a b c d e f g h i j k"
    outcomes = []
    for i in range(10):
        outcomes.append((await engine.reply(said(ALICE, f"message {i} " + "filler " * 30))).outcome)
        await asyncio.sleep(0.1)
    assert outcomes == [Outcome.ANSWERED] * 10
    fake_llm.latency_for = None
    await engine.jobs.idle()
    assert engine.jobs.failed == 0


async def test_a_stream_the_server_cuts_is_an_interrupted_answer(fake_llm: FakeLLM) -> None:
    """llama-cpp-python ends a stream cut by a newer request with [DONE], no finish reason,
    and closes mid-body: the reply is "cut off" (LLMError), neither a success nor a crash."""
    llm = LLMClient(
        api_key="k", base_url=fake_llm.base_url, timeout=5, max_retries=0, reply_deadline=5
    )
    fake_llm.interrupt_running = True
    fake_llm.stream_chunk_delay = 0.05
    fake_llm.push_answers(" ".join(["word"] * 60), "the newer request")
    state = StreamState()
    shown = ""
    with pytest.raises(LLMError) as raised:
        async for delta in llm.stream_chat(
            "m", [{"role": "user", "content": "hi"}], max_tokens=100, state=state
        ):
            shown += delta
            if shown and fake_llm.interrupted == 0 and len(fake_llm.chat_calls) == 1:
                newer = asyncio.create_task(
                    llm._client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "next"}]
                    )
                )
    assert raised.value.kind == "interrupted" and "cut off" in raised.value.user_message
    assert fake_llm.interrupted == 1 and shown.startswith("word") and state.finish_reason is None
    await newer
    await llm.close()


async def test_a_background_call_the_server_cuts_is_retried(
    engines: Engines, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """Another client's request cuts our summary on an interrupting server: the job sees an
    interrupted answer (not a crash, not a summary) and runs again."""
    engine = await engines.start(**SMALL)
    fake_llm.interrupt_running = True
    fake_llm.latency_for = lambda body: 0.5 if is_summary(body) else 0.0
    fake_llm.responder = lambda body: "The user wrote." if is_summary(body) else "ok"
    for i in range(6):
        await engine.reply(said(ALICE, f"message {i} " + "filler " * 30))
    async with asyncio.timeout(5):
        calls = len(fake_llm.chat_calls)
        while not any(is_summary(c) for c in fake_llm.chat_calls):
            calls += 1
            await fake_llm.wait_for_chat_calls(calls)
    other = LLMClient(
        api_key="k", base_url=fake_llm.base_url, timeout=5, max_retries=0, reply_deadline=5
    )
    with caplog.at_level(logging.WARNING):
        await other.complete_text("m", [{"role": "user", "content": "someone else"}], max_tokens=5)
        await other.close()
        async with asyncio.timeout(5):
            await engine.jobs.idle()
    assert fake_llm.interrupted >= 1
    assert len([c for c in fake_llm.chat_calls if is_summary(c)]) >= 2  # cut, then run again
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "The user wrote."
    assert engine.jobs.failed == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_reply_queue_serves_people_in_turn(engines: Engines, fake_llm: FakeLLM) -> None:
    """Alice's burst over eight channels does not make Bob wait behind all of it."""
    engine = await engines.start(model_parallel=1)
    fake_llm.latency = 0.05
    await engine.reply(said(ALICE, "warm up"))  # times one reply
    done: list[str] = []

    async def ask(key: SessionKey, label: str) -> None:
        assert (await engine.reply(said(key, label))).outcome is Outcome.ANSWERED
        done.append(label)

    alice = [asyncio.create_task(ask(SessionKey(100, 20 + n, 1), f"alice {n}")) for n in range(8)]
    # Bob asks once all of Alice's burst is in the model's queue (one running, seven waiting):
    # a fixed pause was too short on a loaded machine.
    waiting = engine.llm.scheduler._reply_waiters
    for _ in range(500):
        if sum(len(queue) for queue in waiting.values()) >= 7:
            break
        await asyncio.sleep(0.01)
    await ask(BOB, "bob")
    await asyncio.gather(*alice)
    assert done.index("bob") <= 2, done


async def test_no_usage_chunk_still_answers_and_counts(engines: Engines, fake_llm: FakeLLM) -> None:
    engine = await engines.start()
    fake_llm.usage_chunk = False  # llama-cpp-python sends none
    result = await engine.reply(said(ALICE, "hello there"))
    assert result.outcome is Outcome.ANSWERED and result.usage is None
    day = engine.limits._day()
    assert await engine.storage.usage.used(day, "user", 1) > 0  # estimated, not zero


# -- diagnostics ----------------------------------------------------------------------------


async def test_model_error_log_names_url_model_status_and_message(
    engines: Engines, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    engine = await engines.start()
    fake_llm.fail_next("refused", message="model 'gpt-4o' is not loaded")
    with caplog.at_level(logging.WARNING, logger="bot.model.llm"):
        result = await engine.reply(said(ALICE, "hi"))
    assert result.outcome is Outcome.FAILED
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.model.llm"]
    assert len(lines) == 1
    line = lines[0]
    assert fake_llm.base_url in line and "gpt-4o" in line and "HTTP 400" in line
    assert "is not loaded" in line and "test-key" not in line


async def test_a_multi_line_server_message_is_logged_on_one_line(
    engines: Engines, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    """llama-cpp-python's 500 carries a validation error and then a traceback with file paths."""
    engine = await engines.start()
    fake_llm.fail_next(
        "500",
        message="1 validation error:\n  {'msg': 'Input should be text'}\n\n"
        '  File "/srv/llama_cpp/server/app.py", line 376\n    POST /v1/chat/completions',
    )
    with caplog.at_level(logging.WARNING, logger="bot.model.llm"):
        assert (await engine.reply(said(ALICE, "hi"))).outcome is Outcome.FAILED
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.model.llm"]
    assert line.endswith("HTTP 500: 1 validation error: {'msg': 'Input should be text'}"), line
    fake_llm.fail_next("500", message="x" * 5000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.model.llm"):
        await engine.reply(said(ALICE, "again"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.model.llm"]
    assert "x" * 299 in line and "x" * 300 not in line and "\n" not in line


async def check_warnings(
    caplog: pytest.LogCaptureFixture, settings: Settings, fake_llm: FakeLLM
) -> list[str]:
    llm = LLMClient(
        api_key="secret-key",
        base_url=settings.openai_base_url,
        timeout=5,
        max_retries=0,
        reply_deadline=5,
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.model.probe"):
        await check_model_server(llm, settings)
    await llm.close()
    return [r.getMessage() for r in caplog.records if r.name == "bot.model.probe"]


async def test_start_up_check_warns_once_about_missing_models(
    make_settings: SettingsFactory, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_settings(openai_base_url=fake_llm.base_url)
    assert await check_warnings(caplog, good, fake_llm) == []
    assert [r.path for r in fake_llm.requests] == ["/v1/models"]
    fake_llm.models = ["llama3.1"]
    [line] = await check_warnings(caplog, good, fake_llm)
    assert "gpt-4o, gpt-4o-mini not in the server's list (llama3.1)" in line
    assert "secret-key" not in line


async def test_start_up_check_warns_about_a_url_without_v1(
    make_settings: SettingsFactory, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(openai_base_url=f"http://127.0.0.1:{fake_llm.port}")
    [line] = await check_warnings(caplog, settings, fake_llm)
    assert "no /v1" in line and "HTTP 404" in line


async def test_start_up_check_warns_about_a_url_without_scheme(
    make_settings: SettingsFactory, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(openai_base_url=f"127.0.0.1:{fake_llm.port}/v1")
    [line] = await check_warnings(caplog, settings, fake_llm)
    assert "needs a scheme" in line


# -- what the user sees, and MODEL_PARALLEL's default --------------------------------------


async def test_discord_shows_thinking_then_the_answer(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    await bots.start()
    fake_llm.think = "reasoning_content"
    fake_llm.thought = "one two three four five six seven eight nine ten eleven twelve"
    fake_llm.stream_chunk_delay = 0.05
    d = fake_discord
    await d.send_message(d.alice, d.CHANNEL_ID, "hi", mention_bot=True)
    reply = await d.next_bot_message(d.CHANNEL_ID)
    assert await d.final_text(reply, quiet=0.5) == "echo: hi"
    assert reply.history[0] == "-# thinking…"
    assert not any("seven" in text for text in reply.history)


@pytest.mark.parametrize(
    ("base_url", "parallel"),
    [
        ("", 8),  # OpenAI
        ("https://api.openai.com/v1", 8),
        ("http://localhost:11434/v1", 1),
        ("http://127.0.0.1:8080/v1", 1),
        ("http://192.168.1.20:1234/v1", 1),
        ("https://openrouter.ai/api/v1", 4),
    ],
)
def test_model_parallel_defaults_by_server(
    make_settings: SettingsFactory, base_url: str, parallel: int
) -> None:
    assert make_settings(openai_base_url=base_url).model_parallel == parallel
    assert make_settings(openai_base_url=base_url, model_parallel=3).model_parallel == 3
