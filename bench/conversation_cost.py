"""Benchmarks 3 and 4: what a long conversation costs in prompt tokens and in LLM calls.

One scripted conversation (1000 turns in the full run) goes through Mnemo and, side by side,
through the full-history baseline, both against the same loopback LLM with no latency. After
each Mnemo turn its background work is allowed to finish, so every call is counted.

3. The largest prompt Mnemo sent (goal: never above MAX_PROMPT_TOKENS), and Mnemo's total chat
   prompt tokens divided by the full-history baseline's total (goal ≤ 0.08).
4. LLM calls per user message, chat and background together (goal ≤ 1.25).

These figures are counts, the same on every run of the same script, so one run is enough.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench import script
from bench.baselines import FullHistoryChat
from bench.core import BenchResult, Figure, Goal, Scale
from bench.harness import (
    NO_RATE_LIMIT,
    Speaker,
    answered,
    bench_settings,
    bench_tokenizer,
    call_kind,
    loopback_llm,
)
from bot.app import running_engine
from bot.config import Settings
from bot.model.tokens import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, Tokenizer
from tests.fakes.llm_server import FakeLLM, message_text

TOKEN_RATIO_GOAL = Goal(0.08)
CALLS_GOAL = Goal(1.25)
FULL_TURNS = 1000


@dataclass(slots=True)
class Tally:
    """Prompt tokens and calls, as the loopback LLM received them."""

    turns: int = 0
    seconds: float = 0.0
    chat_prompt_tokens: int = 0
    largest_prompt: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    sent_tokens: Counter[str] = field(default_factory=Counter)

    def record_calls(self, fake: FakeLLM, tokenizer: Tokenizer) -> None:
        for body in fake.chat_calls:
            kind = call_kind(body)
            self.calls[kind] += 1
            self.sent_tokens[kind] += _prompt_tokens(body, tokenizer)
        fake.reset()  # keep memory flat: the bodies are counted and dropped


async def run(scale: Scale) -> BenchResult:
    turns = script.conversation(scale.conversation_turns)
    tokenizer = await bench_tokenizer()
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        async with loopback_llm() as fake:
            settings = bench_settings(fake.base_url, Path(tmp) / "mnemo.db", **NO_RATE_LIMIT)
            mnemo = await _mnemo(fake, settings, tokenizer, turns)
            full = await _full_history(fake, settings, tokenizer, turns)
    return _result(mnemo, full, settings)


async def _mnemo(
    fake: FakeLLM, settings: Settings, tokenizer: Tokenizer, turns: list[script.Turn]
) -> Tally:
    tally = Tally()
    speaker = Speaker()
    started = time.perf_counter()
    async with running_engine(settings, tokenizer=tokenizer) as engine:
        for turn in turns:
            result = answered(await engine.reply(speaker.says(turn.text)))
            assert result.prompt is not None
            tally.turns += 1
            tally.chat_prompt_tokens += result.prompt.tokens
            tally.largest_prompt = max(tally.largest_prompt, result.prompt.tokens)
            await engine.jobs.idle()
            tally.record_calls(fake, tokenizer)
    tally.seconds = time.perf_counter() - started
    return tally


async def _full_history(
    fake: FakeLLM, settings: Settings, tokenizer: Tokenizer, turns: list[script.Turn]
) -> Tally:
    tally = Tally()
    chat = FullHistoryChat(fake.base_url, tokenizer, settings)
    started = time.perf_counter()
    try:
        for turn in turns:
            tokens = await chat.reply(turn.text)
            tally.turns += 1
            tally.chat_prompt_tokens += tokens
            tally.largest_prompt = max(tally.largest_prompt, tokens)
            tally.calls["chat"] += len(fake.chat_calls)
            fake.reset()  # the prompts grow to megabytes; do not keep them
    finally:
        await chat.close()
    tally.seconds = time.perf_counter() - started
    return tally


def _prompt_tokens(body: dict[str, Any], tokenizer: Tokenizer) -> int:
    """A request's prompt tokens, counted like `Prompt.tokens`."""
    messages = body.get("messages") or []
    costs = (tokenizer.count(message_text(m)) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    return sum(costs) + REPLY_PRIMING_TOKENS


def _result(mnemo: Tally, full: Tally, settings: Settings) -> BenchResult:
    all_mnemo_tokens = sum(mnemo.sent_tokens.values())
    calls = sum(mnemo.calls.values())
    figures = [
        Figure(
            "3a",
            f"largest prompt over {mnemo.turns} turns",
            mnemo.largest_prompt,
            "tokens",
            Goal(settings.max_prompt_tokens),
            f"full history: {full.largest_prompt:,} tokens",
        ),
        Figure(
            "3b",
            f"total chat prompt tokens over {mnemo.turns} turns / full-history total",
            mnemo.chat_prompt_tokens / full.chat_prompt_tokens,
            "",
            TOKEN_RATIO_GOAL,
            f"Mnemo {mnemo.chat_prompt_tokens:,} vs full history {full.chat_prompt_tokens:,}",
        ),
        Figure(
            "3c",
            f"all prompt tokens (with summary and fact calls), {mnemo.turns} turns / full history",
            all_mnemo_tokens / full.chat_prompt_tokens,
            "",
            TOKEN_RATIO_GOAL,
            f"Mnemo {all_mnemo_tokens:,} vs full history {full.chat_prompt_tokens:,}",
        ),
        Figure(
            "4",
            "LLM calls per user message (chat + summary + facts)",
            calls / mnemo.turns,
            "",
            CALLS_GOAL,
            f"full history: {full.calls['chat'] / full.turns:.2f}",
        ),
    ]
    notes = _notes(mnemo, full)
    if mnemo.turns < FULL_TURNS:
        notes.append(
            f"The token-ratio goal is stated for {FULL_TURNS} turns; over {mnemo.turns} turns the"
            " full history is shorter, so the ratio is higher (a --quick run shows this)."
        )
    return BenchResult(figures, notes)


def _notes(mnemo: Tally, full: Tally) -> list[str]:
    per_turn = {kind: count / mnemo.turns for kind, count in sorted(mnemo.calls.items())}
    return [
        "Mnemo's calls by kind: "
        + ", ".join(
            f"{kind} {mnemo.calls[kind]:,} ({rate:.3f}/msg)" for kind, rate in per_turn.items()
        ),
        "Mnemo's prompt tokens by kind (as received by the loopback LLM): "
        + ", ".join(f"{kind} {tokens:,}" for kind, tokens in sorted(mnemo.sent_tokens.items())),
        f"Mean chat prompt: {mnemo.chat_prompt_tokens / mnemo.turns:,.0f} tokens; the chat"
        " prompts as counted from the engine's `Prompt.tokens` and as received by the loopback"
        f" LLM {'agree' if mnemo.sent_tokens['chat'] == mnemo.chat_prompt_tokens else 'DIFFER'}.",
        f"Wall time: Mnemo {mnemo.seconds:.0f} s (background work awaited after each turn),"
        f" full-history baseline {full.seconds:.0f} s.",
    ]
