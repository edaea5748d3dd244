"""The one client for any OpenAI-compatible server, and what its failures mean to a user.

The SDK's defaults (a 600 s timeout, 2 retries) could keep a user waiting half an hour, so the
timeout and retries are explicit settings, and each reply also runs under an overall deadline.
Every failure becomes an `LLMError` carrying a short message fit to show the user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from bot.text import clean_text

log = logging.getLogger(__name__)

ChatMessage = dict[str, str]
QUOTA_BACKOFF_SECONDS = 60.0
QUOTA_LOG_INTERVAL_SECONDS = 300.0


class LLMError(Exception):
    """A model call failed. `user_message` says what happened and whether to retry."""

    def __init__(self, user_message: str, *, retryable: bool = True, kind: str = "error") -> None:
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

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class LLMClient:
    """Wraps one `AsyncOpenAI` for the whole process; close it on shutdown."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        reply_deadline: float,
    ) -> None:
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        self._reply_deadline = reply_deadline
        # After "quota exhausted", calls fail fast for a while instead of hammering the API.
        self._quota_blocked_until = 0.0
        self._quota_logged_at = float("-inf")

    async def close(self) -> None:
        await self._client.close()

    async def stream_chat(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int, state: StreamState
    ) -> AsyncIterator[str]:
        """Yield the answer's text deltas, filling `state` as they arrive.

        Raises LLMError on any failure, also after some text was yielded (the caller decides
        what to do with a partial answer), and when the stream ends without a finish reason.
        """
        self._check_quota()
        raw = ""
        try:
            async with asyncio.timeout(self._reply_deadline):
                # The SDK's generic `post` (its documented way to send a custom request):
                # `chat.completions.create` first walks every message against its type
                # definitions, ~6 ms for a 40-message prompt on the reply path, for plain
                # dicts we already built. Retries, timeout and errors are the same.
                stream = await self._client.post(
                    "/chat/completions",
                    body={
                        "model": model,
                        "messages": list(messages),
                        "max_tokens": max_tokens,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    },
                    cast_to=ChatCompletion,
                    stream=True,
                    stream_cls=AsyncStream[ChatCompletionChunk],
                )
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            state.usage = Usage(
                                chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                            )
                        for choice in chunk.choices:
                            if choice.finish_reason:
                                state.finish_reason = choice.finish_reason
                            if choice.delta.content:
                                raw += choice.delta.content
                                # Cleaned as a whole: a surrogate pair split over two chunks
                                # joins up again instead of turning into two U+FFFD.
                                state.text = clean_text(raw)
                                yield choice.delta.content
        except TimeoutError:
            raise LLMError(
                "The model took too long to answer. Please try again in a moment.",
                kind="timeout",
            ) from None
        except openai.OpenAIError as error:
            if state.text:
                raise _interrupted() from error
            raise self._note(describe_error(error)) from error
        except Exception as error:
            # The SDK lets transport errors of a broken stream through unwrapped (its HTTP
            # library's own classes); to the user they all mean the answer was cut.
            log.debug("Chat stream broke", exc_info=True)
            raise _interrupted() from error
        if state.finish_reason is None:
            raise LLMError(
                "The model's answer was cut off before it finished. Please try again.",
                kind="interrupted",
            )

    async def complete_json(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> tuple[Any, Usage | None]:
        """One JSON-mode call for background work; broken or cut-off JSON raises LLMError."""
        text, finish_reason, usage = await self._complete(
            model, messages, max_tokens=max_tokens, json_mode=True
        )
        if finish_reason == "length":
            raise LLMError("JSON answer was cut off", kind="bad_json")
        try:
            return json.loads(text), usage
        except ValueError:
            raise LLMError("the answer was not valid JSON", kind="bad_json") from None

    async def complete_text(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> tuple[str, str | None, Usage | None]:
        """One plain call for background work: (text, finish_reason, usage)."""
        return await self._complete(model, messages, max_tokens=max_tokens, json_mode=False)

    async def _complete(
        self, model: str, messages: Sequence[ChatMessage], *, max_tokens: int, json_mode: bool
    ) -> tuple[str, str | None, Usage | None]:
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
        self._check_quota()
        try:
            async with asyncio.timeout(self._reply_deadline):
                response = await self._client.chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),
                    max_tokens=max_tokens,
                    **extra,
                )
        except TimeoutError:
            raise LLMError("the model call timed out", kind="timeout") from None
        except openai.OpenAIError as error:
            raise self._note(describe_error(error)) from error
        if not response.choices:
            raise LLMError("the model returned no answer", kind="empty")
        choice = response.choices[0]
        usage = (
            Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
            if response.usage
            else None
        )
        return clean_text(choice.message.content or ""), choice.finish_reason, usage

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


def quota_error() -> LLMError:
    return LLMError(
        "The model's API quota is used up, so I can't answer right now. "
        "A server admin needs to check the API account.",
        retryable=False,
        kind="quota",
    )


def _interrupted() -> LLMError:
    return LLMError(
        "The connection to the model broke mid-answer. Please try again.", kind="interrupted"
    )


def describe_error(error: Exception) -> LLMError:
    """Turn an SDK or transport error into a message for the user."""
    if isinstance(error, openai.APITimeoutError):
        return LLMError("The model took too long to answer. Please try again.", kind="timeout")
    if isinstance(error, openai.APIConnectionError):
        return LLMError(
            "I couldn't reach the language model. Please try again in a minute.",
            kind="connection",
        )
    if isinstance(error, openai.RateLimitError):
        if error.code == "insufficient_quota":
            return quota_error()
        return LLMError(
            "The model is rate-limited right now. Please try again in a minute.", kind="rate_limit"
        )
    if isinstance(error, openai.InternalServerError):
        return LLMError(
            "The model service had an error. Please try again in a moment.", kind="server"
        )
    if isinstance(error, openai.BadRequestError) and error.code == "context_length_exceeded":
        return LLMError(
            "The conversation was too long for the model. Please try again.",
            kind="context_length",
        )
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMError(
            "The model service refused my credentials. A server admin needs to check the API key.",
            retryable=False,
            kind="auth",
        )
    if isinstance(error, openai.APIStatusError):
        return LLMError(
            f"The model service refused the request (HTTP {error.status_code}).",
            retryable=False,
            kind="refused",
        )
    return LLMError("Something went wrong while talking to the model.", kind="error")
