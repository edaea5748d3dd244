"""A fake OpenAI-compatible HTTP server for tests.

`FakeLLM` runs an aiohttp server on 127.0.0.1 (on a free port) that speaks enough of the
OpenAI REST API for the real ``openai`` SDK to talk to it::

    fake = FakeLLM()
    await fake.start()
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0)
    ...
    await client.close()
    await fake.close()

Routes
------
* ``POST /v1/chat/completions``: plain JSON answers, or SSE streams when ``stream`` is true
  (with a trailing usage chunk when ``stream_options.include_usage`` is set).
* ``GET /v1/models`` and ``GET /v1/models/{id}``.
* ``POST /v1/embeddings``: deterministic unit vectors derived from a hash of each input, in
  ``float`` or ``base64`` encoding (the SDK asks for base64 unless told otherwise).
* Anything else: 404 in OpenAI's error shape.

Answers
-------
For a chat call the answer text comes from, in order:

1. a queued scripted answer (`push_answers` for ordinary calls, `push_json_answers` for
   JSON-mode calls, i.e. ``response_format`` of type ``json_object`` or ``json_schema``);
2. ``responder`` (ordinary calls) or ``json_responder`` (JSON-mode calls), if set; either may
   be a plain function or a coroutine function taking the request body;
3. the defaults: ``"echo: <last user message[:200]>"`` and ``'{"facts": []}'``.

``max_tokens`` / ``max_completion_tokens`` are honoured loosely: an answer longer than
``4 * max_tokens`` characters is cut to that length and gets ``finish_reason="length"``.

Token counts in ``usage`` are a rough approximation, not a tokenizer: each message (or
embedding input, or answer) counts ``len(text) // 4 + 1`` tokens.

Server behaviours
-----------------
Attributes that make the fake behave like servers in the field (see RELIABILITY.md):

* ``unsupported``: a set of names the server refuses with HTTP 400: ``"max_tokens"`` or
  ``"max_completion_tokens"`` (OpenAI's ``unsupported_parameter``), ``"json_object"`` (LM
  Studio's answer to ``response_format`` ``json_object``), ``"json_schema"``; and
  ``"json_schema_500"``: ``json_schema`` refused with llama-cpp-python's HTTP 500 (its
  validation error, a multi-line message ending in a traceback); ``"json_object_schema"``:
  a ``json_object`` that carries a ``schema`` key refused with a 422 (a strict validator).
* ``think``: the answer comes after a thought: ``"whole"`` (``<think>…</think>`` in one chunk),
  ``"split"`` (the tags split over chunks), ``"unclosed"`` (``<think>…`` never closed, the
  stream ends at ``length``), ``"reasoning_content"`` (the thought in ``reasoning_content``
  deltas, or in the message's ``reasoning_content`` field when not streaming).
* ``slots``: at most this many chat requests are served at once; the others queue (Ollama,
  llama.cpp). A client that disconnects frees its slot at once, unless:
* ``nonstream_ignores_disconnect``: a non-streamed request, once started, runs to its end
  even when its client went away, keeping its slot (llama-cpp-python checks for a disconnect
  only before generating; streamed requests are checked after every chunk).
* ``interrupt_running``: a new chat request ends the running ones at once, their streams
  sending ``[DONE]`` without a finish reason and then closing mid-body, without the final
  empty chunk (llama-cpp-python's server by default).
* ``usage_chunk``: False sends no usage chunk even when asked (llama-cpp-python).
* ``latency_for``: a function of the request body giving its latency, instead of ``latency``.

* ``sees_images``: False makes the server refuse image content parts as a text-only model
  does, in the words of ``image_refusal``: ``"openai"`` (400, "Invalid content type. image_url
  is only supported by certain models."), ``"vllm"`` (400, "… is not a multimodal model"),
  ``"llama.cpp"`` (500, llama-server without ``--mmproj``), ``"ollama"`` (400, "this model
  does not support image input"), ``"lmstudio"`` (400, a bare string under "error").
  ``images`` records each image part a seeing server took: `SeenImage` (type, decoded size,
  bytes); ``image_refusals`` counts refused requests.

``peak_active`` is the most chat requests the fake served at once; ``interrupted`` counts the
requests cut by ``interrupt_running``; ``abandoned`` counts those the client closed early.

Failures
--------
`fail_next` queues failures. Each chat call that reaches the server takes the first queued
failure that applies to it (see the ``json_mode`` option), so failures are consumed in order,
one per call. **Retries made by the SDK are separate HTTP calls and consume failures too**:
with ``max_retries=2`` a single ``fail_next("500")`` is absorbed by the SDK's first retry and
the caller sees a normal answer. Use ``count > max_retries`` (or ``max_retries=0``) to make
an error reach the caller. Every HTTP request, retries included, is recorded in `requests`
(the SDK sends an ``x-stainless-retry-count`` header on each).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import itertools
import json
import math
import re
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_JSON_ANSWER",
    "FAILURE_KINDS",
    "FakeLLM",
    "RecordedCall",
    "SeenImage",
    "approx_tokens",
    "default_responder",
    "is_reply_call",
    "message_text",
]

Responder = Callable[[dict[str, Any]], "str | Awaitable[str]"]
"""Computes an answer text from a chat request body; may be sync or async."""

DEFAULT_JSON_ANSWER = '{"facts": []}'
"""What JSON-mode calls answer when neither a scripted answer nor `json_responder` is set."""

FAILURE_KINDS = frozenset(
    {
        "429",
        "429_retry_after",
        "quota",
        "500",
        "503",
        "hang",
        "stream_cut",
        "no_finish",
        "bad_json",
        "cut_json",
        "context_length",
        "refused",
    }
)
"""The kinds accepted by `FakeLLM.fail_next`."""

_FAILURE_OPTIONS = frozenset({"seconds", "message", "retryable", "json_mode", "text", "after"})
_JSON_ONLY_KINDS = frozenset({"bad_json", "cut_json"})
_DEFAULT_BAD_JSON = "Sure! Here are the facts I found: {facts: [oops"
_WORDS_PER_CHUNK = 3
_DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
# How the bot's background calls open their instructions (bot/memory/summary.py,
# bot/memory/facts.py, bot/memory/describe.py; tests/fakes/test_fake_llm.py checks they still do).
BACKGROUND_INSTRUCTIONS = (
    "You keep the running summary",
    "You read messages a Discord user",
    "You describe one image",
)


@dataclass(frozen=True, slots=True)
class SeenImage:
    """An image part the fake took: its data URL's type, decoded size and bytes."""

    mime: str
    width: int
    height: int
    size: int


IMAGE_REFUSALS: dict[str, tuple[int, Any]] = {
    "openai": (
        400,
        {
            "error": {
                "message": "Invalid content type. image_url is only supported by certain models.",
                "type": "invalid_request_error",
                "param": "messages.[1].content.[1].type",
                "code": None,
            }
        },
    ),
    "vllm": (
        400,
        {
            "object": "error",
            "message": "facebook/opt-125m is not a multimodal model None",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
    ),
    "llama.cpp": (
        500,
        {
            "error": {
                "code": 500,
                "message": "image input is not supported - hint: if this is unexpected, you may"
                " need to provide the mmproj",
                "type": "server_error",
            }
        },
    ),
    "ollama": (
        400,
        {
            "error": {
                "message": "this model does not support image input",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        },
    ),
    "lmstudio": (400, {"error": "Model does not support images. Please use a model that does."}),
}


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The image_url content parts of a chat request."""
    return [
        part
        for message in body.get("messages") or []
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def decode_image_part(part: dict[str, Any]) -> SeenImage:
    """Decode a data URL image part as a seeing server would (ValueError when it is not one)."""
    import io

    from PIL import Image

    url = str((part.get("image_url") or {}).get("url", ""))
    match = re.fullmatch(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)", url)
    if match is None:
        raise ValueError("not a base64 data URL")
    data = base64.b64decode(match.group(2), validate=True)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return SeenImage(match.group(1), image.width, image.height, len(data))


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP request received by the fake, whatever its route or outcome."""

    method: str
    path: str
    json: Any
    """The parsed JSON body, or None when the body is empty or not JSON."""
    headers: dict[str, str]
    """Request headers, with lower-cased names."""
    time: float
    """`time.monotonic()` when the request arrived."""


@dataclass
class _Failure:
    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def applies_to(self, json_mode: bool) -> bool:
        wanted = self.options.get("json_mode", True if self.kind in _JSON_ONLY_KINDS else None)
        return wanted is None or bool(wanted) == json_mode


@dataclass(frozen=True)
class _Answer:
    completion_id: str
    model: str
    text: str
    finish_reason: str | None
    usage: dict[str, int]
    headers: dict[str, str]


def approx_tokens(text: str) -> int:
    """The fake's token estimate for a piece of text: ``len(text) // 4 + 1``."""
    return len(text) // 4 + 1


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string, a list of parts, or None."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def default_responder(body: dict[str, Any]) -> str:
    """Answer ``"echo: "`` followed by the first 200 characters of the last user message."""
    messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return f"echo: {message_text(message)[:200]}"
    return "echo: "


def is_reply_call(body: dict[str, Any]) -> bool:
    """A chat call answering a user, not one of the bot's summaries or extractions (all three
    are streamed): told apart by the instructions of the background calls."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return False
    return not message_text(messages[0]).startswith(BACKGROUND_INSTRUCTIONS)


async def _json_body(request: web.Request) -> Any:
    """The request body parsed as JSON, or None (aiohttp caches the raw bytes)."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _is_json_mode(body: dict[str, Any]) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )


def _split_for_stream(text: str) -> list[str]:
    """Split text into pieces of a few words whose concatenation is exactly `text`."""
    words = re.findall(r"\s*\S+\s*", text)
    if not words:
        return [text] if text else []
    step = _WORDS_PER_CHUNK
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def _split_tags(pieces: list[str]) -> list[str]:
    """Re-split stream pieces so that every <think> and </think> tag spans two chunks."""
    text = "".join(pieces)
    cuts = sorted(
        {m.start() + 3 for m in re.finditer(r"</?think>", text)}
        | {sum(len(p) for p in pieces[:i]) for i in range(1, len(pieces))}
    )
    bounds = [0, *[c for c in cuts if 0 < c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector of `dimensions` floats derived from SHA-256 of `text`."""
    raw = b""
    for counter in itertools.count():
        if len(raw) >= dimensions:
            break
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
    values = [byte / 127.5 - 1.0 for byte in raw[:dimensions]]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so "float" and "base64" encodings give identical numbers.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


class FakeLLM:
    """An OpenAI-compatible HTTP server on 127.0.0.1 for tests (see the module docstring).

    Attributes that tests may change at any time:

    * ``latency``: seconds slept before the first byte of every chat response.
    * ``stream_chunk_delay``: seconds slept between SSE chunks.
    * ``responder`` / ``json_responder``: compute answers from the request body; None means
      the default (`default_responder` / `DEFAULT_JSON_ANSWER`).
    * ``models``: the ids listed by ``GET /v1/models``.
    * ``embedding_dimensions``: vector size when the request gives no ``dimensions``.

    Sleeps and hangs are interrupted by `close`, which then drops those connections, so
    `close` returns promptly even with requests in flight.
    """

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        json_responder: Responder | None = None,
        latency: float = 0.0,
        stream_chunk_delay: float = 0.0,
        models: Sequence[str] = _DEFAULT_MODELS,
        embedding_dimensions: int = 8,
    ) -> None:
        self.responder: Responder | None = responder
        self.json_responder: Responder | None = json_responder
        self.latency: float = latency
        self.stream_chunk_delay: float = stream_chunk_delay
        self.models: list[str] = list(models)
        self.embedding_dimensions: int = embedding_dimensions
        self.unsupported: set[str] = set()
        self.think: str | None = None
        self.thought: str = "Let me think about what they asked. Hmm, maybe <b>tags</b>."
        self.slots: int | None = None
        # What `GET /props` answers, as llama.cpp's server does ({"total_slots": 4, ...});
        # None: 404, as every other server.
        self.props: dict[str, Any] | None = None
        self.interrupt_running: bool = False
        self.nonstream_ignores_disconnect: bool = False
        self.usage_chunk: bool = True
        self.sees_images: bool = True
        self.image_refusal: str = "openai"
        self.images: list[SeenImage] = []
        self.image_refusals = 0
        self.latency_for: Callable[[dict[str, Any]], float] | None = None
        self.active = 0
        self.peak_active = 0
        self.interrupted = 0
        self.abandoned = 0
        self._slot_lock = asyncio.Condition()
        self._slot_users = 0
        self._running: list[asyncio.Event] = []

        self.requests: list[RecordedCall] = []
        self.chat_calls: list[dict[str, Any]] = []
        self.embedding_calls: list[dict[str, Any]] = []
        self.responder_errors: list[BaseException] = []
        """Exceptions raised by a responder; each was answered with a 500."""

        self._answers: list[str] = []
        self._json_answers: list[str] = []
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._closing = asyncio.Event()
        self._chat_arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening on 127.0.0.1 on a free port."""
        if self._runner is not None:
            raise RuntimeError("FakeLLM already started")
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._record_middleware])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model}", self._get_model)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/props", self._props)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop the server, dropping hanging or delayed requests at once. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()

    async def __aenter__(self) -> FakeLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._port is None:
            raise RuntimeError("FakeLLM not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, to pass as ``base_url`` to the openai client."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- scripting

    def push_answers(self, *texts: str) -> None:
        """Queue answers for the next ordinary (non-JSON-mode) chat calls, first in first out.

        They take precedence over ``responder``.
        """
        self._answers.extend(texts)

    def push_json_answers(self, *texts: str) -> None:
        """Queue answers for the next JSON-mode chat calls; they take precedence over
        ``json_responder``. Kept apart from `push_answers` so that background JSON-mode
        calls (e.g. fact extraction) cannot steal answers meant for the conversation.
        """
        self._json_answers.extend(texts)

    def fail_next(self, kind: str, count: int = 1, **options: Any) -> None:
        """Make the next `count` chat calls fail in the way named by `kind`.

        Kinds (statuses and bodies mimic OpenAI's):

        * ``"429"``: rate limit, no Retry-After header (code ``rate_limit_exceeded``).
        * ``"429_retry_after"``: the same with ``Retry-After: <seconds>`` (option ``seconds``,
          default 1).
        * ``"quota"``: 429 with type and code ``insufficient_quota``.
        * ``"500"``, ``"503"``: server errors.
        * ``"hang"``: no answer until `close` (then the connection is dropped) or until
          option ``seconds`` has passed (then the normal answer is sent).
        * ``"stream_cut"``: part of the answer is sent, then the connection is closed without
          completing the body (no ``[DONE]``). Option ``after``: content chunks sent first
          (default: half of them, at least one).
        * ``"no_finish"``: a normal answer whose ``finish_reason`` is missing (null).
        * ``"bad_json"``: an answer that is not JSON (option ``text`` replaces the default).
        * ``"cut_json"``: the JSON answer (or option ``text``) cut in half, with
          ``finish_reason="length"``.
        * ``"context_length"``: 400 with code ``context_length_exceeded``.
        * ``"refused"``: 400 generic ``invalid_request_error``.

        Other options: ``message`` overrides an error's message; ``retryable`` (bool) sends
        ``x-should-retry: true/false``, which the SDK obeys; ``json_mode`` (bool) restricts
        the failure to JSON-mode or to ordinary calls. ``bad_json`` and ``cut_json`` default
        to ``json_mode=True`` and wait for the next JSON-mode call; other kinds apply to
        whichever chat call comes next.

        Failures are consumed one per chat call in order; SDK retries are calls too.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(
                f"unknown failure kind {kind!r}; expected one of {sorted(FAILURE_KINDS)}"
            )
        if count < 1:
            raise ValueError("count must be at least 1")
        unknown = set(options) - _FAILURE_OPTIONS
        if unknown:
            raise TypeError(f"unknown fail_next options: {sorted(unknown)}")
        self._failures.extend(_Failure(kind, dict(options)) for _ in range(count))

    @property
    def pending_failures(self) -> list[str]:
        """The kinds of the failures not yet consumed, in order."""
        return [failure.kind for failure in self._failures]

    def reset(self) -> None:
        """Forget recorded calls, queued answers and queued failures (settings are kept)."""
        self.requests.clear()
        self.chat_calls.clear()
        self.embedding_calls.clear()
        self.responder_errors.clear()
        self._answers.clear()
        self._json_answers.clear()
        self._failures.clear()

    # ----------------------------------------------------------------- inspection

    def prompts(self) -> list[list[dict[str, Any]]]:
        """The ``messages`` of each chat call, in order."""
        return [list(call.get("messages") or []) for call in self.chat_calls]

    def prompt_texts(self) -> list[str]:
        """Each chat call's message contents joined with newlines into one string."""
        return [
            "\n".join(message_text(m) for m in messages if isinstance(m, dict))
            for messages in self.prompts()
        ]

    async def wait_for_chat_calls(self, count: int) -> None:
        """Wait until at least `count` chat calls have arrived (SDK retries included).

        Wrap it in ``asyncio.timeout(...)`` to bound the wait.
        """
        async with self._chat_arrived:
            await self._chat_arrived.wait_for(lambda: len(self.chat_calls) >= count)

    # ----------------------------------------------------------------- plumbing

    @web.middleware
    async def _record_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        parsed = await _json_body(request)
        self.requests.append(
            RecordedCall(
                method=request.method,
                path=request.path,
                json=parsed,
                headers={name.lower(): value for name, value in request.headers.items()},
                time=time.monotonic(),
            )
        )
        return await handler(request)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, but wake early when the server closes. Return True if it is closing."""
        if seconds <= 0:
            return self._closing.is_set()
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _work(
        self,
        request: web.Request,
        seconds: float,
        interrupt: asyncio.Event | None,
        *,
        deaf: bool = False,
    ) -> str | None:
        """Sleep like generating for `seconds`; say why it stopped early, or None.

        Polls the connection, as a real server does between tokens, so a client that gave up
        frees its slot at once (unless `deaf`); "interrupted" when a newer request cut this one.
        """
        deadline = time.monotonic() + seconds
        while True:
            if self._closing.is_set():
                return "closing"
            if interrupt is not None and interrupt.is_set() and not deaf:
                return "interrupted"
            if not deaf and (request.transport is None or request.transport.is_closing()):
                self.abandoned += 1
                return "gone"
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(left, 0.01))

    async def _take_slot(self, request: web.Request) -> bool:
        """Wait for a free slot (`slots`); False when the client went away meanwhile."""
        if self.slots is None:
            return True
        async with self._slot_lock:
            while self._slot_users >= self.slots:
                if request.transport is None or request.transport.is_closing():
                    self.abandoned += 1
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_lock.wait(), timeout=0.01)
            self._slot_users += 1
        return True

    async def _give_slot(self) -> None:
        if self.slots is None:
            return
        async with self._slot_lock:
            self._slot_users -= 1
            self._slot_lock.notify_all()

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-fake{next(self._ids)}"

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the connection without a (complete) response."""
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)

    @staticmethod
    def _error(
        status: int,
        message: str,
        err_type: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = {"error": {"message": message, "type": err_type, "param": param, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _failure_response(self, failure: _Failure, body: dict[str, Any]) -> web.Response | None:
        """The error response for an HTTP-error failure kind, or None for other kinds."""
        opts = failure.options
        headers: dict[str, str] = {"x-request-id": self._next_id("req")}
        if "retryable" in opts:
            headers["x-should-retry"] = "true" if opts["retryable"] else "false"
        model = body.get("model", "gpt-4o-mini")
        kind = failure.kind
        if kind in ("429", "429_retry_after"):
            if kind == "429_retry_after":
                headers["retry-after"] = str(opts.get("seconds", 1))
            message = (
                f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, "
                "Requested 1. Please try again in 20s."
            )
            return self._error(
                429,
                opts.get("message", message),
                "requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if kind == "quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            return self._error(
                429,
                opts.get("message", message),
                "insufficient_quota",
                code="insufficient_quota",
                headers=headers,
            )
        if kind == "500":
            message = "The server had an error while processing your request. Sorry about that!"
            return self._error(500, opts.get("message", message), "server_error", headers=headers)
        if kind == "503":
            message = "The engine is currently overloaded, please try again later."
            return self._error(503, opts.get("message", message), "server_error", headers=headers)
        if kind == "context_length":
            used = sum(approx_tokens(message_text(m)) for m in body.get("messages") or [])
            message = (
                "This model's maximum context length is 128000 tokens. However, your messages "
                f"resulted in {max(used, 128001)} tokens. Please reduce the length of the messages."
            )
            return self._error(
                400,
                opts.get("message", message),
                "invalid_request_error",
                code="context_length_exceeded",
                param="messages",
                headers=headers,
            )
        if kind == "refused":
            message = "Invalid request: the request could not be processed."
            return self._error(
                400, opts.get("message", message), "invalid_request_error", headers=headers
            )
        return None

    def _take_failure(self, json_mode: bool) -> _Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.applies_to(json_mode):
                return self._failures.pop(index)
        return None

    async def _answer_text(self, body: dict[str, Any], json_mode: bool) -> str:
        queue = self._json_answers if json_mode else self._answers
        if queue:
            return queue.pop(0)
        responder = self.json_responder if json_mode else self.responder
        if responder is None:
            return DEFAULT_JSON_ANSWER if json_mode else default_responder(body)
        result = responder(body)
        if inspect.isawaitable(result):
            result = await result
        return str(result)

    # ----------------------------------------------------------------- routes

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return self._error(400, "We could not parse the JSON body.", "invalid_request_error")
        self.chat_calls.append(body)
        async with self._chat_arrived:
            self._chat_arrived.notify_all()
        refusal = self._unsupported_response(body) or self._image_response(body)
        if refusal is not None:
            return refusal
        if self.interrupt_running:
            for running in self._running:
                running.set()
        if not await self._take_slot(request):
            return self._drop(request)
        interrupt = asyncio.Event()
        self._running.append(interrupt)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            return await self._serve_chat(request, body, interrupt)
        finally:
            self.active -= 1
            self._running.remove(interrupt)
            await self._give_slot()

    def _image_response(self, body: dict[str, Any]) -> web.Response | None:
        """A text-only server's refusal of image parts; a seeing one records them (and answers
        400 to an image part that is not a decodable data URL)."""
        parts = image_parts(body)
        if not parts:
            return None
        if not self.sees_images:
            self.image_refusals += 1
            status, payload = IMAGE_REFUSALS[self.image_refusal]
            return web.json_response(payload, status=status)
        for part in parts:
            try:
                self.images.append(decode_image_part(part))
            except (ValueError, OSError) as error:
                return self._error(400, f"Invalid image: {error}", "invalid_request_error")
        return None

    def _unsupported_response(self, body: dict[str, Any]) -> web.Response | None:
        """The 400 a server answers to a parameter it does not take (see `unsupported`)."""
        for name in ("max_tokens", "max_completion_tokens"):
            if name in self.unsupported and name in body:
                other = "max_completion_tokens" if name == "max_tokens" else "max_tokens"
                return self._error(
                    400,
                    f"Unsupported parameter: '{name}' is not supported with this model. "
                    f"Use '{other}' instead.",
                    "invalid_request_error",
                    code="unsupported_parameter",
                    param=name,
                )
        response_format = body.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_object" and "json_object" in self.unsupported:
            # LM Studio's answer: a bare string under "error".
            return web.json_response(
                {"error": "'response_format.type' must be 'json_schema' or 'text'"}, status=400
            )
        if (
            kind == "json_object"
            and "schema" in response_format
            and ("json_object_schema" in self.unsupported)
        ):
            return self._error(
                422, "response_format.schema: extra fields not permitted", "invalid_request_error"
            )
        if kind == "json_schema" and "json_schema_500" in self.unsupported:
            # llama-cpp-python: its request model allows only 'text' or 'json_object'.
            message = (
                "1 validation error:\n  {'type': 'literal_error', 'loc': ('body',"
                " 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\","
                " 'input': 'json_schema'}\n\n  File \"/srv/venv/lib/python3.11/site-packages/"
                'llama_cpp/server/app.py", line 376, in create_chat_completion\n'
                "    POST /v1/chat/completions"
            )
            return self._error(500, message, "internal_server_error")
        if kind == "json_schema" and "json_schema" in self.unsupported:
            return self._error(
                400,
                "response_format of type json_schema is not supported",
                "invalid_request_error",
                param="response_format",
            )
        return None

    async def _serve_chat(
        self, request: web.Request, body: dict[str, Any], interrupt: asyncio.Event
    ) -> web.StreamResponse:
        json_mode = _is_json_mode(body)
        failure = self._take_failure(json_mode)
        kind = failure.kind if failure else None
        options = failure.options if failure else {}

        latency = self.latency if self.latency_for is None else self.latency_for(body)
        deaf = self.nonstream_ignores_disconnect and not body.get("stream")
        stopped = await self._work(request, latency, interrupt, deaf=deaf)
        if stopped in ("closing", "gone"):
            return self._drop(request)
        if stopped == "interrupted":
            self.interrupted += 1
            return await self._interrupted_answer(request, body)
        if failure is not None:
            error = self._failure_response(failure, body)
            if error is not None:
                return error
        if kind == "hang":
            seconds = options.get("seconds")
            if await self._sleep(math.inf if seconds is None else float(seconds)):
                return self._drop(request)
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return self._error(400, "'messages' and 'model' are required.", "invalid_request_error")

        try:
            text = await self._answer_text(body, json_mode)
        except Exception as exc:
            self.responder_errors.append(exc)
            return self._error(500, f"fake responder raised {exc!r}", "server_error")

        finish_reason: str | None = "stop"
        if kind == "bad_json":
            text = str(options.get("text", _DEFAULT_BAD_JSON))
        elif kind == "cut_json":
            full = str(options.get("text", text))
            text = full[: max(1, len(full) // 2)]
            finish_reason = "length"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0 and len(text) > max_tokens * 4:
            text = text[: max_tokens * 4]
            finish_reason = "length"
        if kind == "no_finish":
            finish_reason = None
        thought = ""
        if self.think in ("whole", "split"):
            text = f"<think>{self.thought}</think>\n\n{text}"
        elif self.think == "unclosed":
            text, finish_reason = f"<think>{self.thought} and more thinking", "length"
        elif self.think == "reasoning_content":
            thought = self.thought

        prompt_tokens = sum(
            approx_tokens(message_text(m)) for m in body["messages"] if isinstance(m, dict)
        )
        completion_tokens = approx_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        answer = _Answer(
            completion_id=self._next_id("chatcmpl"),
            model=str(body["model"]),
            text=text,
            finish_reason=finish_reason,
            usage=usage,
            headers={"x-request-id": self._next_id("req")},
        )
        # For "stream_cut": how many content chunks to send before dropping (-1: half).
        cut_after: int | None = int(options.get("after", -1)) if kind == "stream_cut" else None
        if body.get("stream"):
            return await self._stream_answer(request, body, answer, cut_after, thought, interrupt)
        payload = {
            "id": answer.completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        **({"reasoning_content": thought} if thought else {}),
                    },
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }
        if cut_after is not None:
            return await self._cut_body(request, json.dumps(payload).encode(), answer.headers)
        return web.json_response(payload, headers=answer.headers)

    async def _cut_body(
        self, request: web.Request, data: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Announce the full body length, send half of it, then drop the connection."""
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
        response.content_length = len(data)
        try:
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
        except ConnectionResetError:
            return response
        self._drop(request)
        return response

    async def _stream_answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        answer: _Answer,
        cut_after: int | None,
        thought: str = "",
        interrupt: asyncio.Event | None = None,
    ) -> web.StreamResponse:
        """Send `answer` as SSE chunks; with `cut_after` set, drop the connection early."""
        stream_options = body.get("stream_options")
        include_usage = (
            isinstance(stream_options, dict)
            and bool(stream_options.get("include_usage"))
            and self.usage_chunk
        )
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": answer.completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return data

        pieces = _split_for_stream(answer.text)
        if self.think == "split":
            pieces = _split_tags(pieces)
        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""}, None)]
        events += [
            chunk({"content": None, "reasoning_content": piece}, None)
            for piece in _split_for_stream(thought)
        ]
        events += [chunk({"content": piece}, None) for piece in pieces]
        if cut_after is not None:
            keep = max(1, len(pieces) // 2) if cut_after < 0 else cut_after
            events = events[: 1 + keep]
        else:
            if answer.finish_reason is not None:
                events.append(chunk({}, answer.finish_reason))
            if include_usage:
                usage_chunk = chunk({}, None)
                usage_chunk["choices"] = []
                usage_chunk["usage"] = answer.usage
                events.append(usage_chunk)

        response = web.StreamResponse(
            headers={
                **answer.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            }
        )
        try:
            await response.prepare(request)
            for index, event in enumerate(events):
                if index and await self._sleep(self.stream_chunk_delay):
                    return self._drop(request)
                if interrupt is not None and interrupt.is_set():
                    # Cut by a newer request: [DONE] without a finish reason, then the
                    # connection closes before the chunked body's end (llama-cpp-python).
                    self.interrupted += 1
                    await response.write(b"data: [DONE]\n\n")
                    return self._drop(request)
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            if cut_after is not None:
                return self._drop(request)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing more to do
        return response

    async def _interrupted_answer(
        self, request: web.Request, body: dict[str, Any]
    ) -> web.StreamResponse:
        """What a request cut before its first token gets: nothing, and no finish reason."""
        completion_id, model = self._next_id("chatcmpl"), str(body.get("model", ""))
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": ""},
                "finish_reason": None,
            }
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice],
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await response.prepare(request)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:
            return response
        return self._drop(request)  # closed mid-body, as llama-cpp-python does

    async def _props(self, request: web.Request) -> web.Response:
        if self.props is None:
            return await self._not_found(request)
        return web.json_response(self.props)

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [self._model_object(model) for model in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _get_model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            return self._error(
                404,
                f"The model '{model}' does not exist",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        return web.json_response(self._model_object(model))

    @staticmethod
    def _model_object(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": "fake"}

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return self._error(400, "We could not parse the JSON body.", "invalid_request_error")
        self.embedding_calls.append(body)
        raw_input = body.get("input")
        inputs: list[str]
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif (
            isinstance(raw_input, list)
            and raw_input
            and all(isinstance(item, int) for item in raw_input)
        ):
            inputs = [json.dumps(raw_input)]  # a single array of tokens
        elif isinstance(raw_input, list) and raw_input:
            inputs = [item if isinstance(item, str) else json.dumps(item) for item in raw_input]
        else:
            return self._error(
                400,
                "'input' must be a non-empty string or array.",
                "invalid_request_error",
                param="input",
            )
        dimensions = body.get("dimensions") or self.embedding_dimensions
        base64_format = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = _embedding_vector(text, int(dimensions))
            embedding: list[float] | str = vector
            if base64_format:
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(approx_tokens(text) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error(
            404,
            f"Invalid URL ({request.method} {request.path})",
            "invalid_request_error",
        )
