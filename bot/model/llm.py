"""The one client for any OpenAI-compatible server, and what its failures mean to a user.

The SDK's defaults (a 600 s timeout, 2 retries) could keep a user waiting half an hour, so the
timeout and retries are explicit settings, and each reply also runs under an overall deadline.
Every failure becomes an `LLMError` carrying a short message fit to show the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from bot.config import OPENAI_DEFAULT_BASE_URL, default_parallel, is_local, is_openai
from bot.model.parallel import ParallelLimit, server_slots
from bot.model.reasoning import visible_answer
from bot.model.scheduler import ModelScheduler
from bot.model.text import clean_text
from storage.url import redact

log = logging.getLogger(__name__)

ChatMessage = dict[str, Any]  # "content" is a string, or a list of content parts (images)
QUOTA_BACKOFF_SECONDS = 60.0
QUOTA_LOG_INTERVAL_SECONDS = 300.0
MAX_TOKENS, MAX_COMPLETION_TOKENS = "max_tokens", "max_completion_tokens"
# How to ask for JSON, best first; a server that refuses one (see `_refuses_format`) gets the next.
# "json_object_schema" is `json_object` carrying the schema beside it, the shape that
# llama-cpp-python (which refuses `json_schema`) turns into a grammar: the answer then has the
# facts' shape even from a tiny model. A server that refuses that extra key gets plain
# `json_object`.
JSON_MODES = ("json_schema", "json_object_schema", "json_object", "text")
MODELS_CHECK_TIMEOUT_SECONDS = 5.0
SERVER_MESSAGE_CHARS = 300  # of a server's error message in our log line


class ErrorKind(StrEnum):
    """Why a model call failed: logged, and decides what the engine does next."""

    AUTH = "auth"
    BAD_JSON = "bad_json"
    CONNECTION = "connection"
    CONTEXT_LENGTH = "context_length"
    CUT_THINKING = "cut_thinking"  # the answer ran out of tokens while thinking
    EMPTY = "empty"  # the model answered nothing
    ERROR = "error"
    IMAGES_REFUSED = "images_refused"  # the model does not take image input
    INTERRUPTED = "interrupted"
    QUOTA = "quota"
    RATE_LIMIT = "rate_limit"
    REFUSED = "refused"
    SERVER = "server"
    TIMEOUT = "timeout"


class LLMError(Exception):
    """A model call failed. `user_message` says what happened and whether to retry."""

    def __init__(
        self, user_message: str, *, retryable: bool = True, kind: str = ErrorKind.ERROR
    ) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.retryable = retryable
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class StreamState:
    """What a streamed answer has produced so far."""

    text: str = ""  # the visible answer: thinking removed
    finish_reason: str | None = None
    usage: Usage | None = None
    thinking: bool = False  # the model is (or was, when cut) thinking with nothing visible


class LLMClient:
    """Wraps one `AsyncOpenAI` for the whole process; close it on shutdown.

    What each model accepts is learned from its first refusal and remembered for the process:
    the name of the token limit (`max_tokens`, or `max_completion_tokens` for OpenAI's
    reasoning models) and how to ask for JSON (`JSON_MODES`). Sampling parameters such as
    temperature are never sent: some models refuse any non-default value.
    Every call goes through `scheduler`: replies first, background calls when the server is free.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        reply_deadline: float,
        parallel: int | None = None,
        parallel_auto: bool = False,
        parallel_max: int = 16,
        embedding_base_url: str | None = None,
    ) -> None:
        # Always an explicit URL: given None, the SDK would read OPENAI_BASE_URL from the
        # environment itself, and an empty one there (as `.env.example` ships) is its URL.
        self._client = AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or OPENAI_DEFAULT_BASE_URL,
            timeout=timeout,
            max_retries=max_retries,
        )
        self.base_url = loggable_url(str(self._client.base_url))
        # EMBEDDING_BASE_URL: embeddings from a server of their own (else this one's).
        self._embed_client = (
            AsyncOpenAI(
                api_key=api_key,
                base_url=embedding_base_url,
                timeout=timeout,
                max_retries=max_retries,
            )
            if embedding_base_url
            else self._client
        )
        self._reply_deadline = reply_deadline
        guess = parallel or default_parallel(base_url)
        self.scheduler = ModelScheduler(min(guess, parallel_max), reply_deadline)
        # MODEL_PARALLEL=auto: the limit is learned (bot.model.parallel); None when fixed.
        self.parallel_limit = (
            ParallelLimit(
                guess,
                parallel_max,
                may_probe=not is_local(base_url),
                on_change=self.scheduler.set_parallel,
            )
            if parallel_auto
            else None
        )
        self._slots_asked: asyncio.Task[None] | None = None
        # After "quota exhausted", calls fail fast for a while instead of hammering the API.
        self._quota_blocked_until = 0.0
        self._quota_logged_at = float("-inf")
        # OpenAI accepts max_completion_tokens for every current model; others may not know it.
        self._openai = is_openai(base_url)
        self._default_limit = MAX_COMPLETION_TOKENS if self._openai else MAX_TOKENS
        self._limit_names: dict[str, str] = {}
        self._json_modes: dict[str, str] = {}

    def set_parallel(self, parallel: int) -> None:
        """How many requests the server runs at once (MODEL_PARALLEL; with auto, a new guess
        the server's own number still overrides)."""
        if self.parallel_limit is not None:
            self.parallel_limit.reset(parallel)
        else:
            self.scheduler.set_parallel(parallel)

    async def close(self) -> None:
        if self._slots_asked is not None:
            self._slots_asked.cancel()
            await asyncio.gather(self._slots_asked, return_exceptions=True)
        await self._client.close()
        if self._embed_client is not self._client:
            await self._embed_client.close()

    def _ask_for_slots_once(self) -> None:
        """With MODEL_PARALLEL=auto, ask the server for its slots beside the first call."""
        if self.parallel_limit is not None and self._slots_asked is None and not self._openai:
            self._slots_asked = asyncio.create_task(self._ask_for_slots(), name="mnemo-slots")

    async def slots_asked(self) -> None:
        """Wait until the server's answer about its slots is in (asked beside the first call
        with MODEL_PARALLEL=auto; at once otherwise)."""
        if self._slots_asked is not None:
            await asyncio.shield(self._slots_asked)

    async def _ask_for_slots(self) -> None:
        slots = await server_slots(self._client.base_url, self._client.api_key)
        if slots is not None and self.parallel_limit is not None:
            self.parallel_limit.server_says(slots)

    async def list_models(self) -> list[str]:
        """The model ids the server lists (GET /models), one quick request without retries."""
        client = self._client.with_options(timeout=MODELS_CHECK_TIMEOUT_SECONDS, max_retries=0)
        page = await client.models.list()
        return [model.id for model in page.data]

    def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int, state: StreamState
    ) -> AsyncIterator[str]:
        """Yield the answer's visible text deltas, filling `state` as they arrive.

        Thinking (`<think>` blocks, `reasoning_content` deltas) is never yielded nor kept; while
        the model thinks, an empty delta is yielded with `state.thinking` set.
        Raises LLMError on any failure, also after some text was yielded (the caller decides
        what to do with a partial answer), and when the stream ends without a finish reason
        (a server that cut the stream: llama-cpp-python sends `[DONE]` and closes mid-body).
        """
        return self._stream(model, messages, max_tokens, state, None)

    async def _stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        state: StreamState,
        json_format: _JsonFormat | None,
    ) -> AsyncIterator[str]:
        self._check_quota()
        self._ask_for_slots_once()
        answer = _Answer(state)
        timing = _FirstToken(self.scheduler, self.parallel_limit)
        try:
            async with asyncio.timeout(self._reply_deadline):
                stream = await self._open_stream(model, messages, max_tokens, json_format)
                async with stream:
                    async for chunk in stream:
                        timing.arrived()
                        for delta in answer.take(chunk):
                            yield delta
        except TimeoutError:
            raise LLMError(
                "The model took too long to answer. Please try again in a moment.",
                kind=ErrorKind.TIMEOUT,
            ) from None
        except openai.OpenAIError as error:
            self._log_failure(model, error)
            if self.parallel_limit is not None and _busy(error):
                self.parallel_limit.overloaded()
            if state.text:
                raise _interrupted() from error
            if has_images(messages) and refuses_images(error):
                raise LLMError(
                    "This model cannot see images.", retryable=False, kind=ErrorKind.IMAGES_REFUSED
                ) from error
            raise self._note(describe_error(error)) from error
        except Exception as error:
            # The SDK lets transport errors of a broken stream through unwrapped (its HTTP
            # library's own classes); to the user they all mean the answer was cut.
            log.warning("Model stream broke: %s, model %s: %r", self.base_url, model, error)
            log.debug("Model stream broke", exc_info=True)
            raise _interrupted() from error
        answer.finish()
        if state.finish_reason is None:
            raise LLMError(
                "The model's answer was cut off before it finished. Please try again.",
                kind=ErrorKind.INTERRUPTED,
            )

    async def _open_stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        json_format: _JsonFormat | None,
    ) -> AsyncStream[ChatCompletionChunk]:
        while True:
            mode = self._json_mode(model, json_format)
            body: dict[str, Any] = {
                "model": model,
                "messages": list(messages),
                self._limit_name(model): max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            if json_format is not None and mode != "text":
                body["response_format"] = json_format.response_format(mode)
            try:
                # The SDK's generic `post` (its documented way to send a custom request):
                # `chat.completions.create` first walks every message against its type
                # definitions, ~6 ms for a 40-message prompt on the reply path, for plain
                # dicts we already built. Retries, timeout and errors are the same.
                return await self._client.post(
                    "/chat/completions",
                    body=body,
                    cast_to=ChatCompletion,
                    stream=True,
                    stream_cls=AsyncStream[ChatCompletionChunk],
                )
            except openai.APIStatusError as error:
                if error.status_code in (400, 422) and self._learn_limit_name(model, error):
                    continue
                if "response_format" in body and _refuses_format(error, mode):
                    self._json_modes[model] = JSON_MODES[JSON_MODES.index(mode) + 1]
                    log.info(
                        "%s refused response_format %s for model %s (HTTP %s: %s); using %s"
                        " from now on",
                        self.base_url,
                        mode,
                        model,
                        error.status_code,
                        server_message(error),
                        self._json_modes[model],
                    )
                    continue
                raise

    async def embed(
        self, model: str, texts: Sequence[str], *, within: float | None = None
    ) -> list[list[float]]:
        """The vectors of `texts` (one `/v1/embeddings` request, in order). For the query on
        the reply path, `within` seconds: one try bounded by it (no retries), and not through
        the scheduler (a short call beside a reply; the caller goes on without it when it
        fails). Raises LLMError."""
        client = self._embed_client
        if within is not None:
            client = client.with_options(timeout=within, max_retries=0)
        try:
            async with asyncio.timeout(within):
                response = await client.embeddings.create(model=model, input=list(texts))
        except TimeoutError:
            raise LLMError("The embeddings call took too long.", kind=ErrorKind.TIMEOUT) from None
        except openai.OpenAIError as error:
            self._log_failure(model, error)
            raise describe_error(error) from error
        vectors = [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]
        if len(vectors) != len(texts):
            raise LLMError("The embeddings server answered the wrong number of vectors.")
        return vectors

    async def embed_background(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """`embed` for background work: when the server is free, yielding to replies."""
        return await self.scheduler.background(lambda: self.embed(model, texts))

    async def complete_json(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        schema_name: str = "answer",
    ) -> tuple[Any, Usage | None]:
        """One JSON call for background work; broken or cut-off JSON raises LLMError.

        With `schema` (a strict JSON schema) servers that support it are held to that shape;
        others are asked for any JSON object, or, last, for text that the JSON is parsed from.
        """
        format_ = _JsonFormat(schema, schema_name)
        text, finish_reason, usage = await self.scheduler.background(
            lambda: self._complete(model, messages, max_tokens=max_tokens, json_format=format_)
        )
        if finish_reason == "length":
            raise LLMError("JSON answer was cut off", kind=ErrorKind.BAD_JSON)
        payload = parse_json_answer(text)
        if payload is None:
            raise LLMError("the answer was not valid JSON", kind=ErrorKind.BAD_JSON)
        return payload, usage

    async def complete_text(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> tuple[str, str | None, Usage | None]:
        """One plain call for background work: (text, finish_reason, usage)."""
        return await self.scheduler.background(
            lambda: self._complete(model, messages, max_tokens=max_tokens, json_format=None)
        )

    async def _complete(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        json_format: _JsonFormat | None,
    ) -> tuple[str, str | None, Usage | None]:
        """A background call, streamed and collected: (visible text, finish_reason, usage).

        Streamed so that aborting it for a reply frees the server: llama-cpp-python checks a
        streamed request for a closed connection after every token, a non-streamed one only
        before it starts generating, so it would keep the slot and make the reply wait.
        Thinking is dropped here too: neither summaries nor facts may hold it.
        """
        state = StreamState()
        async for _ in self._stream(model, messages, max_tokens, state, json_format):
            pass
        finish_reason = state.finish_reason
        if state.thinking and not state.text:
            finish_reason = "length"  # it never got past thinking: a cut answer
        return state.text, finish_reason, state.usage

    def _limit_name(self, model: str) -> str:
        return self._limit_names.get(model, self._default_limit)

    def _learn_limit_name(self, model: str, error: openai.APIStatusError) -> bool:
        """True when the server refused our token-limit parameter; the other one is used next.

        OpenAI's answer names it: code "unsupported_parameter", param "max_tokens". Each
        model switches once, so a server that refuses both cannot make us loop.
        """
        if model in self._limit_names:
            return False
        current = self._limit_name(model)
        mentioned = error.param == current or current in server_message(error)
        if not mentioned or error.code not in (None, "unsupported_parameter"):
            return False
        other = MAX_TOKENS if current == MAX_COMPLETION_TOKENS else MAX_COMPLETION_TOKENS
        self._limit_names[model] = other
        log.info("Model %s refuses %s; sending %s from now on", model, current, other)
        return True

    def _json_mode(self, model: str, json_format: _JsonFormat | None) -> str:
        if json_format is None:
            return "text"
        learned = self._json_modes.get(model)
        first = "json_schema" if json_format.schema is not None else "json_object"
        if learned is None or JSON_MODES.index(learned) < JSON_MODES.index(first):
            return first
        return learned

    def _log_failure(self, model: str, error: openai.OpenAIError) -> None:
        """One line an operator can act on: where, which model, the status, the server's words."""
        if isinstance(error, openai.APIStatusError):
            detail = f"HTTP {error.status_code}: {server_message(error)}"
        elif isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            detail = f"{error.message} ({cause!r})" if cause else error.message
        else:
            detail = repr(error)
        log.warning("Model call failed: %s, model %s: %s", self.base_url, model, detail)

    def _check_quota(self) -> None:
        if time.monotonic() < self._quota_blocked_until:
            raise quota_error()

    def _note(self, error: LLMError) -> LLMError:
        """Remember a quota failure: fail fast for a while, log one line every few minutes."""
        if error.kind == "quota":
            now = time.monotonic()
            self._quota_blocked_until = now + QUOTA_BACKOFF_SECONDS
            if now - self._quota_logged_at >= QUOTA_LOG_INTERVAL_SECONDS:
                self._quota_logged_at = now
                log.error("The model API reports its quota is exhausted; check the API account")
        return error


class _Answer:
    """A streamed answer as it arrives: its raw text, and `state` kept to what may be shown
    (thinking is never shown nor kept)."""

    def __init__(self, state: StreamState) -> None:
        self._state = state
        self._raw = ""

    def take(self, chunk: ChatCompletionChunk) -> list[str]:
        """The new visible text of `chunk` (one delta per choice; empty while thinking)."""
        state = self._state
        if chunk.usage is not None:
            state.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        deltas = []
        for choice in chunk.choices:
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
            reasoning = _reasoning_delta(choice.delta)
            if not choice.delta.content and not reasoning:
                continue
            self._raw += choice.delta.content or ""
            # Cleaned as a whole: a surrogate pair or a <think> tag split over two chunks
            # joins up again.
            visible = visible_answer(clean_text(self._raw), final=False)
            state.thinking = not visible.text and (visible.thinking or reasoning)
            deltas.append(visible.text[len(state.text) :])
            state.text = visible.text
        return deltas

    def finish(self) -> None:
        final = visible_answer(clean_text(self._raw))
        self._state.text = final.text
        self._state.thinking = final.thinking and not final.text


class _FirstToken:
    """Times one call's first chunk for MODEL_PARALLEL=auto, with how many calls held a
    slot when it was sent (itself included) and whether replies waited for one."""

    def __init__(self, scheduler: ModelScheduler, limit: ParallelLimit | None) -> None:
        self._limit = limit
        self._in_flight = scheduler.running
        self._queued = scheduler.replies_waiting
        self._sent_at = time.monotonic()
        self._done = limit is None

    def arrived(self) -> None:
        if self._done:
            return
        self._done = True
        assert self._limit is not None
        self._limit.sample(time.monotonic() - self._sent_at, self._in_flight, self._queued)


def _busy(error: openai.OpenAIError) -> bool:
    """429 or 503: the server has no room for another request now."""
    return isinstance(error, openai.APIStatusError) and error.status_code in (429, 503)


@dataclass(frozen=True, slots=True)
class _JsonFormat:
    schema: dict[str, Any] | None
    name: str

    def response_format(self, mode: str) -> dict[str, Any]:
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
            }
        if mode == "json_object_schema" and self.schema is not None:
            return {"type": "json_object", "schema": self.schema}
        return {"type": "json_object"}


def _reasoning_delta(delta: Any) -> bool:
    """True when a stream delta carries thinking in a field of its own (ignored, not shown)."""
    extra = getattr(delta, "model_extra", None) or {}
    return bool(extra.get("reasoning_content") or extra.get("reasoning"))


def parse_json_answer(text: str) -> Any:
    """The JSON value in a model's answer, also when wrapped in prose or a ``` fence; or None."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def server_message(error: openai.APIStatusError) -> str:
    """The server's own error message (OpenAI's shape, or whatever text it sent), as one line."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        return one_line(str(message) if message else json.dumps(body))
    if isinstance(body, str) and body.strip():
        return one_line(body)
    return one_line(error.message)


def one_line(message: str, limit: int = SERVER_MESSAGE_CHARS) -> str:
    """A server's message fit for one log line: its first paragraph, whitespace collapsed, cut
    to `limit` characters. llama-cpp-python appends a traceback (file paths) after a blank line."""
    first = re.split(r"\n\s*\n", message.strip(), maxsplit=1)[0]
    line = " ".join(first.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def has_images(messages: Sequence[ChatMessage]) -> bool:
    """Whether a request carries image content parts."""
    return any(
        isinstance(part, dict) and part.get("type") == "image_url"
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
    )


# What servers answer to image parts sent to a model that cannot see (their words, found in
# their docs and issue trackers):
# - OpenAI: 400 "Invalid content type. image_url is only supported by certain models."
# - vLLM: 400 "<model> is not a multimodal model"
# - llama.cpp's llama-server without --mmproj: 500 "image input is not supported by this
#   server" / "image input is not supported - hint: if this is unexpected, you may need to
#   provide the mmproj"
# - Ollama: 400 "this model does not support image input"; older versions, that take no
#   content parts at all on /v1: 400 "json: cannot unmarshal array into Go struct field
#   Message.messages.content of type string"
# - LM Studio: 400 {"error": "Model does not support images. Please use a model that does."}
_REFUSES_IMAGES = re.compile(
    r"image_url is only supported"
    r"|not a multimodal model"
    r"|image input is not supported"
    r"|(does not|doesn't|do not|cannot|can't) (support|accept|take|handle|process) (image|vision)"
    r"|(image|vision|multimodal) (input|content|parts?)? ?(is |are )?(not supported|unsupported)"
    r"|cannot unmarshal array into .*content"
    r"|mmproj",
    re.IGNORECASE,
)


def refuses_images(error: openai.OpenAIError) -> bool:
    """True when the server's answer says the model takes no image input (400 or 422; a 500
    from llama.cpp's server, which answers so without a projector)."""
    if not isinstance(error, openai.APIStatusError) or error.status_code not in (400, 422, 500):
        return False
    return _REFUSES_IMAGES.search(server_message(error)) is not None


def _refuses_format(error: openai.APIStatusError, mode: str) -> bool:
    """True when the server refused our response_format, so the next JSON mode should be tried.

    Most servers answer 400 or 422; llama-cpp-python answers 500 (its request validation,
    "Input should be 'text' or 'json_object'"), so a 5xx counts when it names the format.
    """
    if error.status_code in (400, 422):
        return error.code != "context_length_exceeded"
    if error.status_code >= 500:
        message = server_message(error).lower()
        return "response_format" in message or mode in message
    return False


def loggable_url(url: str) -> str:
    """The URL fit for a log line or `mnemo health`: no user:password part, and credentials in
    its query string (`?api-key=…`, `?token=…`) replaced by `***` (storage.url.redact)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit(parts._replace(netloc=netloc))
    return redact(url)


def connection_cause(error: BaseException) -> str:
    """What a connection error comes down to (the innermost cause's message), in one line:
    "[Errno 111] Connection refused" rather than the SDK's "Connection error."."""
    seen: BaseException | None = error
    text = str(error) or type(error).__name__
    while seen is not None:
        if str(seen):
            text = str(seen)
        seen = seen.__cause__ or seen.__context__
    return " ".join(text.split())


def quota_error() -> LLMError:
    return LLMError(
        "The model's API quota is used up, so I can't answer right now. "
        "A server admin needs to check the API account.",
        retryable=False,
        kind=ErrorKind.QUOTA,
    )


def _interrupted() -> LLMError:
    return LLMError(
        "The connection to the model broke mid-answer. Please try again.",
        kind=ErrorKind.INTERRUPTED,
    )


def describe_error(error: Exception) -> LLMError:
    """Turn an SDK or transport error into a message for the user."""
    if isinstance(error, openai.APITimeoutError):
        return LLMError(
            "The model took too long to answer. Please try again.", kind=ErrorKind.TIMEOUT
        )
    if isinstance(error, openai.APIConnectionError):
        return LLMError(
            "I couldn't reach the language model. Please try again in a minute.",
            kind=ErrorKind.CONNECTION,
        )
    if isinstance(error, openai.RateLimitError):
        if error.code == "insufficient_quota":
            return quota_error()
        return LLMError(
            "The model is rate-limited right now. Please try again in a minute.",
            kind=ErrorKind.RATE_LIMIT,
        )
    if isinstance(error, openai.InternalServerError):
        return LLMError(
            "The model service had an error. Please try again in a moment.", kind=ErrorKind.SERVER
        )
    if isinstance(error, openai.BadRequestError) and error.code == "context_length_exceeded":
        return LLMError(
            "The conversation was too long for the model. Please try again.",
            kind=ErrorKind.CONTEXT_LENGTH,
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMError(
            "The model service refused my credentials. A server admin needs to check the API key.",
            retryable=False,
            kind=ErrorKind.AUTH,
        )
    if isinstance(error, openai.APIStatusError):
        return LLMError(
            f"The model service refused the request (HTTP {error.status_code}).",
            retryable=False,
            kind=ErrorKind.REFUSED,
        )
    return LLMError("Something went wrong while talking to the model.", kind=ErrorKind.ERROR)
