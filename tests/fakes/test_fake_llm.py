"""Self-tests for tests/fakes/llm_server.py, driven by the real openai SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionContentPartTextParam, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONObject

from bot.memory.describe import DESCRIBE_INSTRUCTIONS
from bot.memory.facts import EXTRACTION_INSTRUCTIONS
from bot.memory.summary import SUMMARY_INSTRUCTIONS
from tests.fakes.llm_server import DEFAULT_JSON_ANSWER, FakeLLM, is_reply_call

USER_TEXT = "hello there my good friend, how are you today?"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": USER_TEXT}]
JSON_MODE: ResponseFormatJSONObject = {"type": "json_object"}

ClientFactory = Callable[..., openai.AsyncOpenAI]


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeLLM]:
    """A started FakeLLM, closed afterwards; fails the test if aiohttp logged an error."""
    caplog.set_level(logging.WARNING, logger="aiohttp")
    server = FakeLLM()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
    # Give cancelled client/server tasks one loop turn to finish, then look for leftovers.
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftovers, f"tasks left running: {leftovers}"
    errors = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def make_client(fake: FakeLLM) -> AsyncIterator[ClientFactory]:
    """Build AsyncOpenAI clients pointed at the fake; all are closed before the fake."""
    clients: list[openai.AsyncOpenAI] = []

    def factory(
        *, max_retries: int = 0, timeout: float = 5.0, server: FakeLLM | None = None
    ) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=(server or fake).base_url,
            api_key="test",
            timeout=timeout,
            max_retries=max_retries,
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> openai.AsyncOpenAI:
    """A client that does not retry."""
    return make_client()


def chat_times(fake: FakeLLM) -> list[float]:
    return [r.time for r in fake.requests if r.path == "/v1/chat/completions"]


# --------------------------------------------------------------------------- answers


async def test_non_stream_answer(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": "be nice"}, *USER]
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"echo: {USER_TEXT}"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    # len(text) // 4 + 1 per message.
    assert completion.usage.prompt_tokens == (len("be nice") // 4 + 1) + (len(USER_TEXT) // 4 + 1)
    assert completion.usage.completion_tokens == len(choice.message.content) // 4 + 1
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert fake.chat_calls[0]["messages"] == messages
    assert fake.prompts() == [messages]
    assert fake.prompt_texts() == [f"be nice\n{USER_TEXT}"]


async def test_echo_truncates_and_handles_content_parts(client: openai.AsyncOpenAI) -> None:
    long_text = "x" * 500
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": long_text}], max_tokens=1000
    )
    assert completion.choices[0].message.content == "echo: " + "x" * 200

    parts: list[ChatCompletionContentPartTextParam] = [
        {"type": "text", "text": "part one "},
        {"type": "text", "text": "part two"},
    ]
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": parts}]
    )
    assert completion.choices[0].message.content == "echo: part one part two"


async def test_stream_answer_with_usage(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    choice_chunks = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    content_pieces = [
        c.choices[0].delta.content for c in choice_chunks if c.choices[0].delta.content
    ]
    assert len(content_pieces) >= 3, "the answer should arrive in several pieces"
    assert "".join(content_pieces) == f"echo: {USER_TEXT}"
    assert [c.choices[0].finish_reason for c in choice_chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in choice_chunks[:-1])

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert fake.chat_calls[0]["stream"] is True


async def test_stream_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_scripted_answers_then_responder(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.push_answers("first", "second answer, streamed")
    seen: list[dict[str, Any]] = []

    async def responder(body: dict[str, Any]) -> str:
        seen.append(body)
        return "from responder"

    fake.responder = responder

    first = await client.chat.completions.create(model="m", messages=USER)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    second = "".join([c.choices[0].delta.content or "" async for c in stream])
    third = await client.chat.completions.create(model="m", messages=USER)

    assert first.choices[0].message.content == "first"
    assert second == "second answer, streamed"
    assert third.choices[0].message.content == "from responder"
    assert len(seen) == 1

    fake.responder = lambda body: f"sync {len(body['messages'])}"
    fourth = await client.chat.completions.create(model="m", messages=USER)
    assert fourth.choices[0].message.content == "sync 1"


async def test_responder_exception_becomes_500(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    def broken(body: dict[str, Any]) -> str:
        raise RuntimeError("boom")

    fake.responder = broken
    with pytest.raises(openai.InternalServerError, match="boom"):
        await client.chat.completions.create(model="m", messages=USER)
    assert [type(e) for e in fake.responder_errors] == [RuntimeError]


async def test_json_mode(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.push_answers("for the conversation")
    fake.push_json_answers('{"facts": ["scripted"]}')

    scripted = await client.chat.completions.create(
        model="m", messages=USER, response_format=JSON_MODE
    )
    default = await client.chat.completions.create(
        model="m", messages=USER, response_format=JSON_MODE
    )
    fake.json_responder = lambda body: json.dumps({"facts": [body["messages"][-1]["content"]]})
    computed = await client.chat.completions.create(
        model="m", messages=USER, response_format=JSON_MODE
    )
    plain = await client.chat.completions.create(model="m", messages=USER)

    assert json.loads(scripted.choices[0].message.content or "") == {"facts": ["scripted"]}
    assert default.choices[0].message.content == DEFAULT_JSON_ANSWER
    assert json.loads(computed.choices[0].message.content or "") == {"facts": [USER_TEXT]}
    assert plain.choices[0].message.content == "for the conversation"


async def test_max_tokens_cuts_answer(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.push_answers("a" * 100, "b" * 100)
    completion = await client.chat.completions.create(model="m", messages=USER, max_tokens=5)
    assert completion.choices[0].message.content == "a" * 20
    assert completion.choices[0].finish_reason == "length"

    stream = await client.chat.completions.create(
        model="m", messages=USER, max_completion_tokens=5, stream=True
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "b" * 20
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_latency_and_chunk_delay(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.latency = 0.2
    start = time.monotonic()
    await client.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - start >= 0.2

    fake.latency = 0.0
    fake.stream_chunk_delay = 0.05
    start = time.monotonic()
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [c async for c in stream]
    # One delay between each pair of chunks.
    assert time.monotonic() - start >= 0.05 * (len(chunks) - 1)


# --------------------------------------------------------------------------- failures


async def test_429_is_retried_by_the_sdk(fake: FakeLLM, make_client: ClientFactory) -> None:
    client = make_client(max_retries=2)
    fake.fail_next("429")
    completion = await client.chat.completions.create(model="m", messages=USER)

    assert completion.choices[0].message.content == f"echo: {USER_TEXT}"
    assert len(fake.chat_calls) == 2, "the retry is a second chat call"
    retry_counts = [r.headers.get("x-stainless-retry-count") for r in fake.requests]
    assert retry_counts == ["0", "1"]
    assert fake.pending_failures == []


async def test_429_retry_after_is_honoured(fake: FakeLLM, make_client: ClientFactory) -> None:
    client = make_client(max_retries=1)
    # Longer than the SDK's own first backoff (at most 0.5 s), so the gap proves it.
    fake.fail_next("429_retry_after", seconds=0.8)
    await client.chat.completions.create(model="m", messages=USER)
    first, second = chat_times(fake)
    assert second - first >= 0.75


async def test_429_surfaces_when_retries_run_out(fake: FakeLLM, make_client: ClientFactory) -> None:
    client = make_client(max_retries=1)
    fake.fail_next("429", count=2)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert "retry-after" not in info.value.response.headers
    assert len(fake.chat_calls) == 2

    fake.fail_next("429_retry_after", count=2, seconds=0.01)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.response.headers["retry-after"] == "0.01"


async def test_quota_error(fake: FakeLLM, make_client: ClientFactory) -> None:
    client = make_client(max_retries=0)
    fake.fail_next("quota")
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.code == "insufficient_quota"
    assert info.value.type == "insufficient_quota"
    assert "quota" in info.value.message

    # The SDK retries any 429, quota included, unless told not to.
    retrying = make_client(max_retries=2)
    fake.fail_next("quota", retryable=False)
    with pytest.raises(openai.RateLimitError):
        await retrying.chat.completions.create(model="m", messages=USER)
    assert len(fake.chat_calls) == 2


@pytest.mark.parametrize("kind", ["500", "503"])
async def test_server_errors(fake: FakeLLM, client: openai.AsyncOpenAI, kind: str) -> None:
    fake.fail_next(kind)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == int(kind)
    assert info.value.type == "server_error"
    assert info.value.request_id is not None


async def test_context_length_and_refused(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("context_length")
    fake.fail_next("refused", message="nope")
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"
    assert "maximum context length" in info.value.message

    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert info.value.code is None
    assert info.value.type == "invalid_request_error"
    assert "nope" in info.value.message

    ok = await client.chat.completions.create(model="m", messages=USER)
    assert ok.choices[0].finish_reason == "stop"


async def test_hang_times_out(fake: FakeLLM, make_client: ClientFactory) -> None:
    client = make_client(timeout=0.5)
    fake.fail_next("hang")
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert 0.4 <= time.monotonic() - start < 2
    assert type(info.value.__cause__).__name__ == "ReadTimeout"


async def test_hang_with_seconds_answers_late(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("hang", seconds=0.3)
    start = time.monotonic()
    completion = await client.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - start >= 0.3
    assert completion.choices[0].finish_reason == "stop"


async def test_stream_cut(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("stream_cut")
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert type(info.value.__cause__).__name__ == "RemoteProtocolError"
    partial = "".join(received)
    assert partial and f"echo: {USER_TEXT}".startswith(partial)
    assert partial != f"echo: {USER_TEXT}"


async def test_stream_cut_non_stream_is_retried(fake: FakeLLM, make_client: ClientFactory) -> None:
    fake.fail_next("stream_cut")
    with pytest.raises(openai.APIConnectionError) as info:
        await make_client().chat.completions.create(model="m", messages=USER)
    assert type(info.value.__cause__).__name__ == "RemoteProtocolError"

    fake.fail_next("stream_cut")
    completion = await make_client(max_retries=1).chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].finish_reason == "stop"
    assert len(fake.chat_calls) == 3


async def test_no_finish(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("no_finish", count=2)
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"echo: {USER_TEXT}"
    assert all(c.choices[0].finish_reason is None for c in chunks)

    completion = await client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].finish_reason is None


async def test_bad_json_and_cut_json(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("bad_json")
    fake.fail_next("cut_json")

    # JSON-only failures wait for a JSON-mode call.
    plain = await client.chat.completions.create(model="m", messages=USER)
    assert plain.choices[0].message.content == f"echo: {USER_TEXT}"

    bad = await client.chat.completions.create(model="m", messages=USER, response_format=JSON_MODE)
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.choices[0].message.content or "")
    assert bad.choices[0].finish_reason == "stop"

    fake.json_responder = lambda body: '{"facts": ["likes tea", "lives in Oslo"]}'
    cut = await client.chat.completions.create(model="m", messages=USER, response_format=JSON_MODE)
    content = cut.choices[0].message.content or ""
    assert cut.choices[0].finish_reason == "length"
    assert '{"facts": ["likes tea", "lives in Oslo"]}'.startswith(content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)


async def test_failures_are_consumed_in_order(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    fake.fail_next("500")
    fake.fail_next("refused")
    assert fake.pending_failures == ["500", "refused"]
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="m", messages=USER)
    await client.chat.completions.create(model="m", messages=USER)
    assert fake.pending_failures == []


async def test_fail_next_rejects_typos(fake: FakeLLM) -> None:
    with pytest.raises(ValueError, match="unknown failure kind"):
        fake.fail_next("429s")
    with pytest.raises(TypeError, match="secs"):
        fake.fail_next("hang", secs=1)
    with pytest.raises(ValueError):
        fake.fail_next("500", count=0)
    assert fake.pending_failures == []


# --------------------------------------------------------------------------- other routes


async def test_embeddings(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    # The SDK asks for base64 by default and decodes it itself.
    batch = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b", "a"])
    vectors = [item.embedding for item in batch.data]
    assert [item.index for item in batch.data] == [0, 1, 2]
    assert len(vectors[0]) == fake.embedding_dimensions
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert batch.usage.prompt_tokens == 3
    assert fake.embedding_calls[0]["encoding_format"] == "base64"

    single = await client.embeddings.create(model="e", input="a", encoding_format="float")
    assert single.data[0].embedding == vectors[0]

    sized = await client.embeddings.create(model="e", input="a", dimensions=32)
    assert len(sized.data[0].embedding) == 32


async def test_embeddings_raw_base64(fake: FakeLLM) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{fake.base_url}/embeddings",
            json={"model": "e", "input": "a", "encoding_format": "base64"},
        ) as response:
            data = await response.json()
        async with session.post(f"{fake.base_url}/embeddings", json={"input": []}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "input"
    raw = base64.b64decode(data["data"][0]["embedding"])
    assert len(struct.unpack(f"<{len(raw) // 4}f", raw)) == fake.embedding_dimensions


async def test_models(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert ids == fake.models
    assert len(ids) >= 2
    model = await client.models.retrieve(ids[0])
    assert model.id == ids[0]
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


async def test_requests_are_recorded(fake: FakeLLM, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="m", messages=USER)
    await client.embeddings.create(model="e", input="x")
    [_ async for _ in client.models.list()]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/nowhere", data=b"not json") as response,
    ):
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "invalid_request_error"

    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/nowhere"),
    ]
    assert fake.requests[0].json == fake.chat_calls[0]
    assert fake.requests[0].headers["authorization"] == "Bearer test"
    assert fake.requests[2].json is None
    assert fake.requests[3].json is None
    times = [r.time for r in fake.requests]
    assert times == sorted(times)

    fake.reset()
    assert fake.requests == [] and fake.chat_calls == [] and fake.embedding_calls == []


# --------------------------------------------------------------------------- shutdown


async def test_close_releases_hanging_request_promptly(make_client: ClientFactory) -> None:
    server = FakeLLM()
    await server.start()
    client = make_client(timeout=30, server=server)
    server.stream_chunk_delay = 10
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    server.fail_next("hang")
    hanging = asyncio.create_task(client.chat.completions.create(model="m", messages=USER))
    async with asyncio.timeout(5):
        await server.wait_for_chat_calls(2)

    start = time.monotonic()
    await server.close()
    assert time.monotonic() - start < 0.5
    await server.close()  # idempotent

    with pytest.raises(openai.APIConnectionError):
        await hanging
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


async def test_async_context_manager() -> None:
    async with FakeLLM() as server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


def test_reply_calls_are_told_from_background_calls_by_the_bots_instructions() -> None:
    def call(system: str) -> dict[str, object]:
        return {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "x"}]
        }

    assert not is_reply_call(call(SUMMARY_INSTRUCTIONS))
    assert not is_reply_call(call(EXTRACTION_INSTRUCTIONS))
    assert not is_reply_call(call(DESCRIBE_INSTRUCTIONS))
    assert is_reply_call(call("You are a helpful assistant."))
    assert not is_reply_call({})  # not a chat call at all
