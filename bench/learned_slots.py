"""Benchmark 2c: a burst to a server with 8 slots at 127.0.0.1, answered at the server's pace?

A loopback LLM at 127.0.0.1 serves 8 requests at once and says so as llama.cpp's server does
(`GET /props`, `total_slots` 8); each reply takes 250 ms. 20 users send 10 messages each at
once (200 messages). Before MODEL_PARALLEL=auto, a loopback address was taken for a one-slot
server, so every reply waited for the one before. Figure: messages answered per second with
the default (auto), divided by the same burst with MODEL_PARALLEL=8 (the server's number set by
hand), in the same run; also MODEL_PARALLEL=1 (the old guess) for scale.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.core import BenchResult, Figure, Goal, Scale
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
from storage.models import SessionKey

SLOTS = 8
REPLY_SECONDS = 0.25
USERS = 20
GOAL = Goal(0.9, at_most=False)


async def run(scale: Scale) -> BenchResult:
    per_user = 4 if scale.quick else 10
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        folder = Path(tmp)
        auto, learned = await _burst(folder / "auto.db", per_user, "auto")
        fixed, _ = await _burst(folder / "fixed.db", per_user, str(SLOTS))
        one, _ = await _burst(folder / "one.db", max(per_user // 4, 1), "1")
    messages = USERS * per_user
    figure = Figure(
        "2c",
        f"burst of {messages} messages to an {SLOTS}-slot server at 127.0.0.1, msg/s:"
        " MODEL_PARALLEL=auto / MODEL_PARALLEL=8",
        auto / fixed,
        "x",
        GOAL,
        f"auto {auto:.1f} msg/s (learned {learned}), MODEL_PARALLEL=8 {fixed:.1f} msg/s,"
        f" MODEL_PARALLEL=1 {one:.1f} msg/s",
    )
    notes = [
        f"{USERS} users at once, {per_user} messages each ({USERS * max(per_user // 4, 1)} for"
        f" MODEL_PARALLEL=1), replies of {REPLY_SECONDS * 1000:.0f} ms, the server running at"
        f" most {SLOTS} at once and saying so in GET /props. The server's own pace:"
        f" {SLOTS / REPLY_SECONDS:.0f} msg/s."
    ]
    return BenchResult([figure], notes)


async def _burst(database: Path, per_user: int, parallel: str) -> tuple[float, int]:
    """Messages answered per second, and the limit the engine ended with."""
    tokenizer = await bench_tokenizer()
    async with loopback_llm(latency=REPLY_SECONDS) as fake:
        fake.slots = SLOTS
        fake.props = {"total_slots": SLOTS}
        settings = bench_settings(
            fake.base_url,
            database,
            **NO_RATE_LIMIT,
            MODEL_PARALLEL=parallel,
            REPLY_DEADLINE_SECONDS="600",  # the burst is queued, not refused as busy
            FACTS_IDLE_SECONDS="3600",
        )
        async with running_engine(settings, tokenizer=tokenizer) as engine:
            answered(await engine.reply(Speaker().says("hello")))  # the first call: /props
            await engine.llm.slots_asked()
            speakers = [
                Speaker(SessionKey(1, 10, user), first_id=10**12 + user * 10**6)
                for user in range(1, USERS + 1)
            ]
            started = time.perf_counter()
            await asyncio.gather(*(_talk(engine, speaker, per_user) for speaker in speakers))
            elapsed = time.perf_counter() - started
            return USERS * per_user / elapsed, engine.llm.scheduler.parallel


async def _talk(engine: MemoryEngine, speaker: Speaker, messages: int) -> None:
    """One user's messages, sent at once: each waits its turn behind the previous one."""
    results = await asyncio.gather(
        *(engine.reply(speaker.says(f"question {n}")) for n in range(messages))
    )
    for result in results:
        answered(result)
