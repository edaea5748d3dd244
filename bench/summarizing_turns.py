"""Benchmark 2: does a turn that triggers a summary or fact extraction reply more slowly?

Mnemo and the blocking baseline take the same scripted turns alternately, against one loopback
LLM answering every call after 200 ms. A turn "triggers" when the loopback LLM answered a
summary or fact extraction call because of it (any call but the reply). Figure: median reply
latency on trigger turns divided by the median on ordinary turns, for each engine. Between
turns each engine's background work is allowed to finish, as it would while the user reads the
answer and types the next message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import script
from bench.baselines import BlockingSummaryEngine
from bench.core import BenchResult, Figure, Goal, Scale, median
from bench.harness import (
    NO_RATE_LIMIT,
    Speaker,
    answered,
    bench_settings,
    bench_tokenizer,
    loopback_llm,
)
from bench.profiling import profile
from bot.app import running_engine
from bot.engine.engine import MemoryEngine
from tests.fakes.llm_server import FakeLLM, is_reply_call

LLM_LATENCY = 0.2
GOAL = Goal(1.05)
PROFILE_TURNS = 30


@dataclass(slots=True)
class Latencies:
    trigger: list[float] = field(default_factory=list)
    ordinary: list[float] = field(default_factory=list)

    def ratio(self) -> float:
        return median(self.trigger) / median(self.ordinary)

    def describe(self, name: str) -> str:
        return (
            f"{name}: median {median(self.ordinary) * 1000:.0f} ms on {len(self.ordinary)}"
            f" ordinary turns, {median(self.trigger) * 1000:.0f} ms on {len(self.trigger)}"
            " trigger turns"
        )


async def run(scale: Scale) -> BenchResult:
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        mnemo, blocking = await _measure(Path(tmp), scale.latency_turns)
        result = _result(mnemo, blocking)
        if result.missed:
            result.profiles.append(await _profile(Path(tmp)))
    return result


async def _measure(folder: Path, turns: int) -> tuple[Latencies, Latencies]:
    tokenizer = await bench_tokenizer()
    mnemo, blocking = Latencies(), Latencies()
    speaker = Speaker()
    async with loopback_llm(latency=LLM_LATENCY) as fake:
        mnemo_settings = bench_settings(fake.base_url, folder / "mnemo.db", **NO_RATE_LIMIT)
        blocking_settings = bench_settings(fake.base_url, folder / "blocking.db", **NO_RATE_LIMIT)
        async with (
            running_engine(mnemo_settings, tokenizer=tokenizer) as fast,
            running_engine(
                blocking_settings, tokenizer=tokenizer, engine_class=BlockingSummaryEngine
            ) as slow,
        ):
            for turn in script.conversation(turns):
                await _timed_turn(fast, fake, speaker, turn.text, mnemo)
                await _timed_turn(slow, fake, speaker, turn.text, blocking)
                fake.reset()  # recorded calls are not needed here
    return mnemo, blocking


async def _timed_turn(
    engine: MemoryEngine, fake: FakeLLM, speaker: Speaker, text: str, into: Latencies
) -> None:
    """One reply, timed; filed as a trigger turn if it made background calls."""
    before = _background_calls(fake)
    started = time.perf_counter()
    answered(await engine.reply(speaker.says(text)))
    elapsed = time.perf_counter() - started
    await engine.jobs.idle()
    triggered = _background_calls(fake) > before
    (into.trigger if triggered else into.ordinary).append(elapsed)


def _background_calls(fake: FakeLLM) -> int:
    """The summary and extraction calls the loopback LLM has had since its last reset."""
    return sum(1 for body in fake.chat_calls if not is_reply_call(body))


def _result(mnemo: Latencies, blocking: Latencies) -> BenchResult:
    blocking_ratio = blocking.ratio()
    figures = [
        Figure(
            "2",
            "reply latency, trigger turns / ordinary turns (Mnemo), LLM latency 200 ms",
            mnemo.ratio(),
            "x",
            GOAL,
            f"blocking-summary baseline: {blocking_ratio:.2f}x",
        ),
    ]
    notes = [
        mnemo.describe("Mnemo"),
        blocking.describe("blocking-summary baseline"),
        "Medians over the turns of one run; the two engines take each turn one after the other,"
        " so machine noise hits both alike.",
    ]
    return BenchResult(figures, notes)


async def _profile(folder: Path) -> str:
    async def work() -> None:
        await _measure(folder / "profile", PROFILE_TURNS)

    title = f"Benchmark 2: {PROFILE_TURNS} turns of both engines"
    profiled = await profile(title, work, operations=2 * PROFILE_TURNS)
    return profiled.markdown()
