"""Benchmark 11: what channel context costs on the reply path, and in memory per channel.

The real `MemoryBot` on the loopback Discord and a loopback LLM that answers at once (a short
answer, streamed in five pieces 5 ms apart), on a fresh SQLite file. Two channels of one
server, channel context on in one (`/mnemo-admin channel-context`, set through the engine's
controls) and off in the other, each with `CHATTER` lines of chatter from 10 people first (not
addressed to Mnemo, about 120 characters each). Then turns, alternating between the two
channels so that both are measured in the same run under the same load, each after the
previous answer is complete: a user mentions Mnemo, and the interval from just before the fake
dispatches MESSAGE_CREATE to the arrival of the chat request at the loopback LLM is taken (the
part of the reply path the channel context adds to: its lines, the erasure times of their
authors, one more section in the prompt). The first turn in each channel (the channel's
history read once) is a warm-up, not measured.

Memory per channel buffer: a buffer filled to its bound (`LINES_PER_CHANNEL` lines of 120
and of 1,000 characters, the longest kept) measured with tracemalloc.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.core import BenchError, BenchResult, Figure, Scale, median, percentile
from bench.loopback import (
    crowd,
    discord_restored,
    fakes,
    mnemo_settings,
    point_at,
    running_bot,
    turn_settled,
)
from bot.client.channel_log import LINES_PER_CHANNEL, ChannelBuffer
from bot.memory.channel import LINE_MAX_CHARS, ChannelLine
from bot.memory.prompt import Prompt
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import is_reply_call

CHUNK_DELAY = 0.005
CHATTER = 100
WARMUP_TURNS = 2
ON, OFF = FakeDiscord.CHANNEL_ID, FakeDiscord.OTHER_CHANNEL_ID
LINE = "I think we should move the release to Monday, the tests on the staging box are still red"


async def run(scale: Scale) -> BenchResult:
    turns = 60 if scale.quick else 200
    samples: dict[int, list[float]] = {ON: [], OFF: []}
    build_ms: dict[int, list[float]] = {ON: [], OFF: []}
    lines_in_prompt: list[int] = []
    people = crowd(10)
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp, discord_restored():
        async with fakes(chunk_delay=CHUNK_DELAY) as (fake, llm):
            point_at(fake)
            settings = mnemo_settings(llm, Path(tmp) / "context.db")
            async with running_bot(settings, fake) as bot:
                built: list[tuple[bool, float]] = []
                build = bot.engine.context.build

                async def timed_build(*args: Any, **kwargs: Any) -> Prompt:
                    started = time.perf_counter()
                    prompt = await build(*args, **kwargs)
                    built.append((kwargs.get("channel") is not None, time.perf_counter() - started))
                    return prompt

                bot.engine.context.build = timed_build  # type: ignore[method-assign]
                guild = FakeDiscord.GUILD_ID
                await bot.engine.controls.set_channel(guild, ON, "channel_context", 1)
                for n in range(CHATTER):
                    for channel in (ON, OFF):
                        await fake.send_message(people[n % 10], channel, f"{LINE} ({n})")
                for turn in range(WARMUP_TURNS * 2 + turns * 2):
                    channel = (ON, OFF)[turn % 2]
                    author = people[turn % 10]
                    calls = len(llm.requests)
                    started_at = time.monotonic()
                    payload = await fake.send_message(
                        author, channel, f"what do you think, turn {turn}?", mention_bot=True
                    )
                    await fake.answered(int(payload["id"]))
                    await turn_settled(bot)
                    chat = [c for c in llm.requests[calls:] if is_reply_call(c.json or {})]
                    if len(chat) != 1:
                        raise BenchError(f"expected one chat call per turn, got {len(chat)}")
                    if turn >= WARMUP_TURNS * 2:
                        samples[channel].append(chat[0].time - started_at)
                        build_ms[channel].append(built[-1][1] * 1000)
                        if channel == ON:
                            system = str(chat[0].json["messages"][0]["content"])
                            lines_in_prompt.append(system.count("\n- ["))
                    await asyncio.sleep(0.005)
                buffers = len(bot.channel_log)
    on_ms = [value * 1000 for value in samples[ON]]
    off_ms = [value * 1000 for value in samples[OFF]]
    short, longest = _buffer_bytes(120), _buffer_bytes(LINE_MAX_CHARS)
    return BenchResult(
        figures=[
            Figure(
                "11-p50-off", "event → LLM request p50, channel context off", median(off_ms), "ms"
            ),
            Figure("11-p50-on", "event → LLM request p50, channel context on", median(on_ms), "ms"),
            Figure(
                "11-p50-added",
                "channel context's cost at p50 (on − off)",
                median(on_ms) - median(off_ms),
                "ms",
            ),
            Figure(
                "11-p99-added",
                "channel context's cost at p99 (on − off)",
                percentile(on_ms, 0.99) - percentile(off_ms, 0.99),
                "ms",
            ),
            Figure(
                "11-build-added",
                "of which building the prompt (on − off, p50)",
                median(build_ms[ON]) - median(build_ms[OFF]),
                "ms",
            ),
            Figure("11-lines", "channel lines in each prompt (median)", median(lines_in_prompt)),
            Figure(
                "11-buffer-120",
                f"one full channel buffer ({LINES_PER_CHANNEL} lines of 120 characters)",
                short / 1024,
                "KiB",
            ),
            Figure(
                "11-buffer-max",
                f"one full channel buffer ({LINES_PER_CHANNEL} lines of {LINE_MAX_CHARS} chars)",
                longest / 1024,
                "KiB",
            ),
        ],
        notes=[
            f"{turns} turns in each channel, alternating, after {CHATTER} lines of chatter in"
            f" each; {buffers} channel buffer(s) open at the end (only where it is on)."
        ],
    )


def _buffer_bytes(chars: int) -> int:
    """What one buffer full of lines of `chars` characters takes (tracemalloc)."""
    now = datetime.now(UTC).timestamp()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        buffer = ChannelBuffer(1)
        for n in range(LINES_PER_CHANNEL):
            text = (f"{n} " + "x" * chars)[:chars]
            buffer.add(ChannelLine(10_000 + n, 1_000 + n % 10, f"User {n % 10}", text, now))
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del buffer
    return size
