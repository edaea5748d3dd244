"""What every benchmark returns, the run's scale, and small statistics helpers."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Scale:
    """How big the run is: the full run, or `--quick` for a smaller one."""

    quick: bool
    latency_turns: int
    conversation_turns: int
    storage_rows: int
    storage_sessions: int
    storage_inserts: int
    storage_reads: int
    footprint_sessions: int
    repeats: int

    @classmethod
    def full(cls) -> Scale:
        return cls(
            quick=False,
            latency_turns=120,
            conversation_turns=1000,
            storage_rows=1_000_000,
            storage_sessions=10_000,
            storage_inserts=5_000,
            storage_reads=2_000,
            footprint_sessions=10_000,
            repeats=5,
        )

    @classmethod
    def small(cls) -> Scale:
        return cls(
            quick=True,
            latency_turns=60,
            conversation_turns=200,
            storage_rows=100_000,
            storage_sessions=1_000,
            storage_inserts=2_000,
            storage_reads=1_000,
            footprint_sessions=1_000,
            repeats=3,
        )


@dataclass(frozen=True, slots=True)
class Goal:
    """A bound on a figure: `value <= limit` (at_most) or `value >= limit`."""

    limit: float
    at_most: bool = True

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def miss(self, value: float) -> str:
        """How far `value` is from the goal, e.g. '12.0 % over the limit'."""
        if self.met(value):
            return ""
        if self.at_most:
            return f"{(value / self.limit - 1) * 100:.1f} % over the limit"
        return f"{(1 - value / self.limit) * 100:.1f} % under the goal ({self.limit / value:.1f}x)"

    def __str__(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {_number(self.limit)}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the results table."""

    key: str
    name: str
    value: float
    unit: str = ""
    goal: Goal | None = None
    comparator: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)

    @property
    def shown(self) -> str:
        return f"{_number(self.value)} {self.unit}".strip()


@dataclass(slots=True)
class BenchResult:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    """Markdown blocks: where the time (or memory) goes, for figures that missed a goal."""

    @property
    def missed(self) -> list[Figure]:
        return [figure for figure in self.figures if figure.met is False]


class BenchError(Exception):
    """The benchmark could not measure what it should (e.g. the engine failed a reply)."""


def median(values: Sequence[float]) -> float:
    if not values:
        raise BenchError("no samples to take a median of")
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in 0..1) of `values`."""
    if not values:
        raise BenchError("no samples to take a percentile of")
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def rss_bytes() -> int:
    """Resident memory of this process now, from /proc/self/statm."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
