"""cProfile for a benchmark that missed its goal: where does the time go?

The event-loop thread is profiled, and so is every thread started while profiling (aiosqlite
runs each connection on its own worker thread), each thread with its own profiler. Start the
threads of interest inside `work` (e.g. open the database there) to have them profiled.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOP = 12

Entry = tuple[str, int, str]  # (file, line, function), as pstats keys them


@dataclass(frozen=True, slots=True)
class Profiled:
    """A profiled run: its tables, and per-operation figures for a written reading."""

    title: str
    wall: float
    operations: int
    main: pstats.Stats
    threads: pstats.Stats | None

    def ms_per_op(self) -> float:
        return self.wall / max(self.operations, 1) * 1000

    def calls_per_op(self, function: str, *, in_threads: bool = False) -> float:
        return self._sum(function, in_threads, field=1) / max(self.operations, 1)

    def own_ms_per_op(self, function: str, *, in_threads: bool = False) -> float:
        return self._sum(function, in_threads, field=2) / max(self.operations, 1) * 1000

    def markdown(self, reading: str = "", top: int = TOP) -> str:
        parts = [f"#### {self.title}", "", f"Wall time of the profiled run: {self.wall:.2f} s."]
        if reading:
            parts += ["", reading]
        parts += ["", *_table("event-loop thread", self.main, top, self.operations)]
        if self.threads is not None:
            label = "worker threads (aiosqlite and executors)"
            parts += _table(label, self.threads, top, self.operations)
        return "\n".join(parts)

    def _sum(self, function: str, in_threads: bool, field: int) -> float:
        stats = self.threads if in_threads else self.main
        if stats is None:
            return 0.0
        entries: dict[Entry, Any] = stats.stats  # type: ignore[attr-defined]
        return sum(row[field] for (_, _, name), row in entries.items() if name == function)


async def profile(
    title: str, work: Callable[[], Awaitable[object]], *, operations: int = 0
) -> Profiled:
    """Run `work` (doing `operations` operations) under cProfile."""
    main = cProfile.Profile()
    threads: list[cProfile.Profile] = []

    def start_in_thread(*_: Any) -> None:  # the first profile event of each new thread
        profiler = cProfile.Profile()
        threads.append(profiler)
        profiler.enable()

    threading.setprofile(start_in_thread)
    started = time.perf_counter()
    main.enable()
    try:
        await work()
    finally:
        main.disable()
        threading.setprofile(None)
    wall = time.perf_counter() - started
    thread_stats = pstats.Stats(*threads) if threads else None
    return Profiled(title, wall, operations, pstats.Stats(main), thread_stats)


def _table(label: str, stats: pstats.Stats, top: int, operations: int) -> list[str]:
    entries: dict[Entry, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in entries.values())
    rows = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [
        f"{label}: {total:.2f} s of own time in total; top {len(rows)} by own time:",
        "",
        "| function | calls | calls per op | own s | own % | cumulative s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        share = own / total * 100 if total else 0.0
        per_op = f"{calls / operations:.1f}" if operations else "—"
        where = _short(filename, line, name)
        lines.append(
            f"| `{where}` | {calls} | {per_op} | {own:.3f} | {share:.1f} | {cumulative:.3f} |"
        )
    lines.append("")
    return lines


def _short(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a built-in, e.g. <method 'execute' of 'sqlite3.Cursor' objects>
    path = Path(filename)
    for root in sorted((Path(p) for p in sys.path if p), key=lambda p: -len(str(p))):
        if path.is_relative_to(root):
            return f"{path.relative_to(root)}:{line}({name})"
    return f"{path.name}:{line}({name})"
