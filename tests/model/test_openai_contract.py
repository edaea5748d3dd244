"""What bot/model/llm.py relies on in the openai SDK, checked on the installed version over HTTP to
the loopback LLM. pyproject.toml bounds openai below its next major; when a new major comes,
these tests say whether the bound can move.

The reply path sends its request through the SDK's generic `post(..., stream=True,
stream_cls=AsyncStream[ChatCompletionChunk])` (skipping the per-message type walk of
`chat.completions.create`), so this is the SDK surface to keep.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.fakes.llm_server import FakeLLM


@pytest.fixture
async def client(fake_llm: FakeLLM) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key="test", base_url=fake_llm.base_url, timeout=2.0, max_retries=0)
    yield sdk
    await sdk.close()


async def post_stream(client: AsyncOpenAI, text: str) -> AsyncStream[ChatCompletionChunk]:
    """The request exactly as LLMClient.stream_chat sends it."""
    return await client.post(
        "/chat/completions",
        body={
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 50,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=AsyncStream[ChatCompletionChunk],
    )


def test_post_takes_the_arguments_we_pass() -> None:
    parameters = inspect.signature(AsyncOpenAI.post).parameters
    assert {"path", "cast_to", "body", "stream", "stream_cls"} <= set(parameters)


async def test_generic_post_streams_typed_chunks(client: AsyncOpenAI) -> None:
    stream = await post_stream(client, "hello there")
    assert isinstance(stream, AsyncStream)
    text, finish, usage = "", None, None
    async with stream:  # the reply path closes the stream with `async with`
        async for chunk in stream:
            assert isinstance(chunk, ChatCompletionChunk)
            if chunk.usage is not None:
                usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                text += choice.delta.content or ""
    assert text == "echo: hello there"
    assert finish == "stop"
    assert usage is not None and usage[0] > 0 and usage[1] > 0


@pytest.mark.parametrize(
    ("kind", "error_type", "attributes"),
    [
        ("500", openai.InternalServerError, {"status_code": 500}),
        ("429", openai.RateLimitError, {"status_code": 429}),
        ("quota", openai.RateLimitError, {"code": "insufficient_quota"}),
        ("context_length", openai.BadRequestError, {"code": "context_length_exceeded"}),
    ],
)
async def test_failures_raise_the_classes_llm_py_maps(
    client: AsyncOpenAI,
    fake_llm: FakeLLM,
    kind: str,
    error_type: type[openai.APIStatusError],
    attributes: dict[str, Any],
) -> None:
    fake_llm.fail_next(kind)
    with pytest.raises(error_type) as caught:
        await post_stream(client, "hi")
    assert isinstance(caught.value, openai.APIStatusError)
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value


async def test_timeout_and_connection_errors(fake_llm: FakeLLM) -> None:
    fake_llm.fail_next("hang", seconds=5)
    slow = AsyncOpenAI(api_key="t", base_url=fake_llm.base_url, timeout=0.3, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        await post_stream(slow, "hi")
    await slow.close()
    nowhere = AsyncOpenAI(api_key="t", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        await post_stream(nowhere, "hi")
    await nowhere.close()
    assert issubclass(openai.APITimeoutError, openai.APIConnectionError)  # llm.py checks first


async def test_models_list_for_the_health_check(client: AsyncOpenAI, fake_llm: FakeLLM) -> None:
    page = await client.models.list()
    assert [model.id for model in page.data] == list(fake_llm.models)
