"""Benchmark 2b: on a one-slot server, do replies wait for background work?

A loopback LLM serves one request at a time (like Ollama or llama.cpp on one GPU): replies take
200 ms, background calls (summaries, fact extraction) 4 s. One user chats: after each answer
they read for 0.3 s and send the next message, and every few turns they pause until the bot's
background work is done. A turn is a "background" turn when a background call was running or
waiting as the user sent it. Figure: p95 reply latency on background turns divided by p95 on
ordinary turns, in the same run. Comparator: the same engine with MODEL_PARALLEL=2, which sends
background calls beside replies, as the bot did before it had a scheduler (the server queues
them, so a reply waits). Also: the time from the user's last answer until all background work
is done.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench import script
from bench.core import BenchResult, Figure, Goal, Scale, percentile
from bench.harness import (
    NO_RATE_LIMIT,
    Speaker,
    answered,
    bench_settings,
    bench_tokenizer,
    loopback_llm,
)
from bot.app import running_engine
from bot.engine.engine import MemoryEngine
from tests.fakes.llm_server import is_reply_call

REPLY_SECONDS = 0.2
BACKGROUND_SECONDS = 4.0
READ_SECONDS = 0.3
PAUSE_EVERY = 6  # turns between the user's long pauses (background work finishes meanwhile)
GOAL = Goal(1.1)


@dataclass(slots=True)
class Run:
    background: list[float] = field(default_factory=list)
    ordinary: list[float] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)
    preemptions: int = 0

    @property
    def drain_seconds(self) -> float:
        """The longest time from an answer to the end of background work, the user quiet."""
        return max(self.drains, default=0.0)

    def ratio(self) -> float:
        return percentile(self.background, 0.95) / percentile(self.ordinary, 0.95)

    def describe(self, name: str) -> str:
        return (
            f"{name}: p95 {percentile(self.ordinary, 0.95) * 1000:.0f} ms on"
            f" {len(self.ordinary)} ordinary turns, {percentile(self.background, 0.95) * 1000:.0f}"
            f" ms on {len(self.background)} background turns; background work done at most"
            f" {self.drain_seconds:.1f} s after the answer when the user paused"
            f" ({len(self.drains)} pauses with work); {self.preemptions} background calls"
            " aborted for a reply"
        )


async def run(scale: Scale) -> BenchResult:
    turns = max(scale.latency_turns // 2, 12)
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        mnemo = await _measure(Path(tmp) / "mnemo.db", turns, parallel="1")
        # Half as many turns for the comparator: each of its background turns costs 4 s.
        parallel = await _measure(Path(tmp) / "parallel.db", turns // 2, parallel="2")
    figures = [
        Figure(
            "2b",
            "reply p95, turns with background work / ordinary turns, one-slot server",
            mnemo.ratio(),
            "x",
            GOAL,
            f"MODEL_PARALLEL=2 (background beside replies): {parallel.ratio():.2f}x",
        ),
        Figure(
            "2b",
            "background work done after the user goes quiet (longest pause)",
            mnemo.drain_seconds,
            "s",
            comparator=f"MODEL_PARALLEL=2: {parallel.drain_seconds:.1f} s",
        ),
    ]
    notes = [
        mnemo.describe("Mnemo (MODEL_PARALLEL=1)"),
        parallel.describe("MODEL_PARALLEL=2"),
        f"Replies {REPLY_SECONDS * 1000:.0f} ms, background calls {BACKGROUND_SECONDS:.0f} s, one"
        f" slot; {turns} turns ({turns // 2} for the comparator), the user reading"
        f" {READ_SECONDS} s between turns and pausing until background work is done every"
        f" {PAUSE_EVERY} turns.",
    ]
    return BenchResult(figures, notes)


def _latency(body: dict[str, Any]) -> float:
    return REPLY_SECONDS if is_reply_call(body) else BACKGROUND_SECONDS


async def _measure(database: Path, turns: int, *, parallel: str) -> Run:
    tokenizer = await bench_tokenizer()
    result = Run()
    speaker = Speaker()
    async with loopback_llm() as fake:
        fake.slots = 1
        fake.latency_for = _latency
        settings = bench_settings(fake.base_url, database, **NO_RATE_LIMIT, MODEL_PARALLEL=parallel)
        async with running_engine(settings, tokenizer=tokenizer) as engine:
            conversation = script.conversation(turns)
            for number, turn in enumerate(conversation, start=1):
                await _timed_turn(engine, speaker, turn.text, result)
                fake.reset()
                if number % PAUSE_EVERY == 0 or number == len(conversation):
                    quiet = time.perf_counter()
                    await engine.jobs.idle()
                    if fake.chat_calls:  # there was background work to finish
                        result.drains.append(time.perf_counter() - quiet)
                else:
                    await asyncio.sleep(READ_SECONDS)
            result.preemptions = engine.llm.scheduler.preemptions
    return result


async def _timed_turn(engine: MemoryEngine, speaker: Speaker, text: str, into: Run) -> None:
    """One reply, timed; filed as a background turn if background work was in flight."""
    busy = not engine.llm.scheduler.idle()
    started = time.perf_counter()
    answered(await engine.reply(speaker.says(text)))
    elapsed = time.perf_counter() - started
    (into.background if busy else into.ordinary).append(elapsed)
