"""Benchmark 7 (engine part): resident memory with many active sessions, and disk per message.

A fresh child process (`bench.footprint_child`) opens the engine on a database seeded with
10,000 sessions of a few messages each, then replies once in every session through the engine,
against the loopback LLM served from this process. "Active" means each session has been
answered and holds its pending idle-extraction timer.

- RSS with all sessions active (goal ≤ 300 MB); the floor, measured in the same child, is its
  RSS with the engine open and no session touched yet.
- Database bytes per stored message; the floor is the message text's own UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.core import BenchError, BenchResult, Figure, Goal, Scale
from bench.footprint_child import CONCURRENT_REPLIES
from bench.harness import loopback_llm
from tests.fakes.llm_server import FakeLLM

RSS_GOAL_MB = Goal(300)
CHILD_TIMEOUT = 1200.0
MB = 1_000_000


async def run(scale: Scale) -> BenchResult:
    sessions = scale.footprint_sessions
    figures = await measure_in_child(sessions)
    result = _result(figures, sessions)
    if result.missed:
        traced = await measure_in_child(sessions, trace=True)
        result.profiles.append(_trace_section(traced["trace"]))
    return result


async def measure_in_child(sessions: int, *, trace: bool = False) -> dict[str, Any]:
    """Run the child against a loopback LLM served here; return what it printed."""
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        async with loopback_llm() as fake, _forgetting_calls(fake):
            command = [
                sys.executable,
                "-m",
                "bench.footprint_child",
                f"--base-url={fake.base_url}",
                f"--database={Path(tmp) / 'footprint.db'}",
                f"--sessions={sessions}",
                *(["--trace"] if trace else []),
            ]
            output = await _run_child(command)
    try:
        figures: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"the footprint child printed no figures: {output[-500:]!r}") from None
    return figures


async def _run_child(command: list[str]) -> str:
    child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        stdout, _ = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT)
    finally:
        if child.returncode is None:  # timed out or cancelled: leave no process behind
            child.kill()
            await child.wait()
    if child.returncode != 0:
        raise BenchError(f"the footprint child exited with status {child.returncode}")
    return stdout.decode()


@contextlib.asynccontextmanager
async def _forgetting_calls(fake: FakeLLM) -> AsyncIterator[None]:
    """Drop the fake's records of calls every second: the parent's memory is not measured,
    but it should not grow by thousands of request bodies either."""

    async def forget() -> None:
        while True:
            await asyncio.sleep(1.0)
            fake.reset()

    task = asyncio.create_task(forget())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _result(figures: dict[str, Any], sessions: int) -> BenchResult:
    active_mb, floor_mb = figures["rss_active"] / MB, figures["rss_floor"] / MB
    per_message = figures["db_bytes"] / figures["messages"]
    text_per_message = figures["content_bytes"] / figures["messages"]
    per_session_kb = (figures["rss_active"] - figures["rss_floor"]) / sessions / 1000
    return BenchResult(
        [
            Figure(
                "7a",
                f"resident memory with {sessions:,} sessions active",
                active_mb,
                "MB",
                RSS_GOAL_MB,
                f"same process before the first session: {floor_mb:.0f} MB"
                f" (+{per_session_kb:.1f} kB per session)",
            ),
            Figure(
                "7b",
                "database bytes per stored message",
                per_message,
                "B",
                None,
                f"message text alone: {text_per_message:.0f} B"
                f" (database is {per_message / text_per_message:.1f}x the text)",
            ),
        ],
        [
            f"{sessions:,} replies through the engine took {figures['seconds']:.0f} s"
            f" ({figures['seconds'] / sessions * 1000:.1f} ms each,"
            f" {CONCURRENT_REPLIES} sessions at a time);"
            f" {figures['pending_jobs']:,} background timers pending at the measurement.",
            f"Peak RSS of the child (getrusage): {figures['rss_peak'] / MB:.0f} MB;"
            f" {figures['messages']:,} messages in a {figures['db_bytes'] / MB:.1f} MB database.",
            "The child imports the bot (discord.py included) but has no Discord caches:"
            " guilds, members and channels come on top (benchmark 7 through the fake Discord).",
        ],
    )


def _trace_section(lines: list[str]) -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return f"#### Benchmark 7a: largest allocations (tracemalloc)\n\n{body}\n"
