"""The comparators Mnemo is measured against, side by side in the same run.

* `FullHistoryChat` resends every message of the conversation on every turn, with no budget:
  what a bot without memory management costs.
* `BlockingSummaryEngine` is Mnemo's own engine, except that a reply returns only after the
  summary and fact extraction it triggered have finished: memory work on the reply path.
* `keyword_validator_keeps` is the fact validator as it was before benchmark 8 (commit
  03edc2b): grounding, one keyword list for instructions, any "you"/"bot" for the bot.
"""

from __future__ import annotations

import re

import aiohttp

from bench.harness import AUTHOR_NAME
from bot.config import Settings
from bot.engine.engine import (
    DeliverCallback,
    IncomingMessage,
    MemoryEngine,
    ProgressCallback,
    ReplyResult,
)
from bot.model.llm import ChatMessage
from bot.model.tokens import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, Tokenizer

AUTHOR_LINE = f"You are talking with the Discord user {AUTHOR_NAME}."  # as the engine words it


class BlockingSummaryEngine(MemoryEngine):
    """Awaits the background work a turn scheduled before handing back the reply."""

    async def reply(
        self,
        incoming: IncomingMessage,
        on_progress: ProgressCallback | None = None,
        deliver: DeliverCallback | None = None,
    ) -> ReplyResult:
        result = await super().reply(incoming, on_progress, deliver)
        await self.jobs.idle()  # the due-work check, then the summary and extraction it starts
        return result


class FullHistoryChat:
    """A chat that sends the system prompt and the whole conversation every turn.

    Token counts use the same tokenizer and the same per-message overheads as Mnemo's
    `Prompt.tokens`; each message is counted once, when it is added. The prompts go to the
    loopback LLM as plain HTTP posts (aiohttp) rather than through the
    openai SDK, whose request transform costs ~0.2 ms per message per call: with prompts of up
    to 2,000 messages that alone took three minutes per run, and measures nothing we compare.
    """

    def __init__(self, base_url: str, tokenizer: Tokenizer, settings: Settings) -> None:
        self._url = f"{base_url}/chat/completions"
        timeout = aiohttp.ClientTimeout(total=settings.llm_timeout_seconds)
        self._http = aiohttp.ClientSession(timeout=timeout)
        self._tokenizer = tokenizer
        self._settings = settings
        self._messages: list[ChatMessage] = []
        self._tokens = REPLY_PRIMING_TOKENS
        self._add("system", f"{settings.system_prompt}\n\n{AUTHOR_LINE}")

    async def close(self) -> None:
        await self._http.close()

    async def reply(self, text: str) -> int:
        """Answer `text`; return the prompt tokens this turn sent."""
        self._add("user", text)
        prompt_tokens = self._tokens
        body = {
            "model": self._settings.chat_model,
            "messages": self._messages,
            "max_tokens": self._settings.max_reply_tokens,
        }
        async with self._http.post(self._url, json=body, raise_for_status=True) as response:
            answer = await response.json()
        self._add("assistant", answer["choices"][0]["message"]["content"])
        return prompt_tokens

    def _add(self, role: str, content: str) -> None:
        self._messages.append({"role": role, "content": content})
        self._tokens += self._tokenizer.count(content) + MESSAGE_OVERHEAD_TOKENS


_OLD_INSTRUCTION = re.compile(
    r"\b(from now on|(?:always|never) (?:answer|respond|reply|say|add|include|use|call|mention"
    r"|talk|write|speak|end|start)|ignore (?:all|any|the|previous|prior|above|your|earlier)"
    r"|disregard|forget (?:everything|all|what|your)|you (?:must|should|will|have to|need to)"
    r"|system prompt|instructions?|pretend|act as|(?:answer|respond|reply) (?:only|with|in)"
    r"|make sure (?:you|to))\b",
    re.IGNORECASE,
)
_OLD_ABOUT_THE_BOT = re.compile(r"\b(you|your|yours|assistant|bot|mnemo)\b", re.IGNORECASE)
_OLD_WORD = re.compile(r"[\w'’-]{3,}")


def keyword_validator_keeps(attribute: str, value: str, source: str) -> bool:
    """Whether the validator before benchmark 8 kept this fact (its rules, for comparison)."""
    words_cited = {w.casefold() for w in re.findall(r"[\w'’-]+", source)}
    if any(n not in re.findall(r"\d+", source) for n in re.findall(r"\d+", value)):
        return False
    if any(w.casefold() not in words_cited for w in re.findall(r"\b[A-Z][\w'’-]*", value)):
        return False
    spaced = attribute.replace("_", " ")
    if any(p.search(t) for p in (_OLD_INSTRUCTION, _OLD_ABOUT_THE_BOT) for t in (value, spaced)):
        return False
    value_words = {w.casefold() for w in _OLD_WORD.findall(value)}
    sentences = [
        s
        for s in re.split(r"(?<=[.!?;\n])\s+", source)
        if value_words & {w.casefold() for w in _OLD_WORD.findall(s)}
    ]
    return not (value_words and sentences and all(_OLD_INSTRUCTION.search(s) for s in sentences))
