"""What the real server says to the requests Mnemo makes, asked directly (no bot).

These pin down how llama-cpp-python's server differs from OpenAI, and so what the loopback fake
(tests/fakes/llm_server.py) has to model: no usage chunk in a stream, the JSON formats it takes,
the token-limit parameter it reads, its error statuses and bodies, and a stream cut by the next
request. Each probe prints what it saw; the asserts fail when a server upgrade changes it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests_real.servers import LlamaServer

FACTS_SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "object"}}},
    "required": ["facts"],
}


async def chat(
    http: aiohttp.ClientSession, server: LlamaServer, **body: Any
) -> tuple[int, Any, list[dict[str, Any]]]:
    """(status, JSON answer or error body, stream chunks) of one chat call."""
    payload = {
        "model": server.model_id,
        "messages": [{"role": "user", "content": "Say hello."}],
        **body,
    }
    async with http.post(f"{server.base_url}/chat/completions", json=payload) as response:
        if not body.get("stream") or response.status != 200:
            text = await response.text()
            try:
                return response.status, json.loads(text), []
            except ValueError:
                return response.status, text, []
        chunks: list[dict[str, Any]] = []
        ending = "complete"
        try:
            async for line in response.content:
                data = line.decode().strip().removeprefix("data:").strip()
                if data == "[DONE]":
                    ending = "[DONE]"
                elif data and not line.startswith(b":"):
                    chunks.append(json.loads(data))
        except aiohttp.ClientPayloadError:
            # An interrupted stream: the server closes without the final empty chunk.
            ending += ", then the connection closed mid-response"
        return response.status, ending, chunks


@pytest.mark.timeout(600)
async def test_what_the_real_server_answers(llama: LlamaServer) -> None:
    seen: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=240)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        # A stream asked for usage: llama-cpp-python sends no usage chunk.
        status, _, chunks = await chat(
            http, llama, stream=True, max_tokens=8, stream_options={"include_usage": True}
        )
        finishes = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
        seen["stream usage chunk"] = any(c.get("usage") for c in chunks)
        seen["stream finish reasons"] = [f for f in finishes if f]
        assert status == 200 and finishes[-1] == "length"

        # The token limit: max_tokens is read; max_completion_tokens is accepted and ignored.
        status, answer, _ = await chat(http, llama, max_completion_tokens=4)
        seen["max_completion_tokens=4"] = (status, answer["usage"]["completion_tokens"])
        assert status == 200

        # JSON formats.
        status, answer, _ = await chat(
            http, llama, max_tokens=40, response_format={"type": "json_object"}
        )
        seen["json_object"] = (status, answer["choices"][0]["message"]["content"][:80])
        assert status == 200
        schema_format = {
            "type": "json_schema",
            "json_schema": {"name": "facts", "schema": FACTS_SCHEMA, "strict": True},
        }
        status, answer, _ = await chat(http, llama, max_tokens=40, response_format=schema_format)
        seen["json_schema (OpenAI's shape)"] = (status, str(answer)[:300])
        status, answer, _ = await chat(
            http,
            llama,
            max_tokens=40,
            response_format={"type": "json_object", "schema": FACTS_SCHEMA},
        )
        seen["json_object with schema (its own shape)"] = (
            status,
            answer["choices"][0]["message"]["content"][:80],
        )
        assert status == 200

        # A prompt larger than the context window (n_ctx 2048 by default).
        long_prompt = [{"role": "user", "content": "word " * 3000}]
        status, answer, _ = await chat(http, llama, max_tokens=4, messages=long_prompt)
        seen["prompt over n_ctx"] = (status, str(answer)[:300])
        assert status >= 400

        # A stream interrupted by the next request: [DONE] without a finish reason.
        story = [{"role": "user", "content": "Write a long story about a cat in Lisbon."}]
        first = asyncio.create_task(chat(http, llama, stream=True, max_tokens=300, messages=story))
        await asyncio.sleep(0.5)
        await chat(http, llama, max_tokens=2)
        status, ending, chunks = await first
        finishes = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
        seen["stream interrupted by the next request"] = (
            status,
            f"{len(chunks)} chunks, finish reasons {[f for f in finishes if f]}, ended: {ending}",
        )
        assert status == 200 and not [f for f in finishes if f], "the stream was not cut"

    print("\nwhat llama-cpp-python's server answered:")
    for probe, result in seen.items():
        print(f"  {probe}: {result}")
    assert seen["stream usage chunk"] is False
    assert seen["json_schema (OpenAI's shape)"][0] >= 400
