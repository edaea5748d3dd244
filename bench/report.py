"""Print results as they come, and write them to docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.core import BenchResult, Figure


@dataclass(slots=True)
class Section:
    key: str
    title: str
    result: BenchResult | None = None
    pending: str = ""
    error: str = ""
    seconds: float = 0.0


@dataclass(slots=True)
class Report:
    command: str
    quick: bool
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [f for s in self.sections if s.result for f in s.result.figures]

    def failed(self) -> bool:
        """A benchmark could not run (a missed goal is a result, not a failure)."""
        return any(s.error for s in self.sections)

    def missed(self) -> list[Figure]:
        return [f for f in self.figures() if f.met is False]


def status(figure: Figure) -> str:
    if figure.goal is None:
        return "—"
    return "met" if figure.met else f"**missed**: {figure.goal.miss(figure.value)}"


def print_section(section: Section) -> None:
    print(f"\n== {section.key}. {section.title} ({section.seconds:.0f} s)", flush=True)
    if section.pending:
        print(f"   {section.pending}")
    if section.error:
        print(f"   ERROR: {section.error}")
    if section.result is None:
        return
    for figure in section.result.figures:
        goal = f"goal {figure.goal}" if figure.goal else "no goal"
        print(f"   {figure.key:>3} {figure.name}: {figure.shown} ({goal}; {status(figure)})")
        if figure.comparator:
            print(f"       comparator, same run: {figure.comparator}")
    for note in section.result.notes:
        print(f"       {note}")
    if section.result.profiles:
        print("       profile of the miss: see the written report")
    sys.stdout.flush()


def print_summary(report: Report) -> None:
    missed = report.missed()
    met = sum(1 for f in report.figures() if f.met)
    print(f"\n{met} goals met, {len(missed)} missed", flush=True)
    for figure in missed:
        print(f"   {figure.key} {figure.name}: {status(figure).replace('**', '')}")


def render(report: Report) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (`make bench`); do not edit by hand. Every figure comes with",
        "a comparator measured side by side in the same run: a baseline (full history, blocking",
        "summary) or a physical floor (raw sqlite3, the process before any session, the text",
        "itself). Everything runs on 127.0.0.1: the real engine, a real SQLite file and the real",
        "openai SDK, talking to the loopback LLM of `tests/fakes`. Where a goal is missed, the",
        "profile of that benchmark is at the end.",
        "",
        f"Command: `{report.command}`" + (" (quick run: smaller sizes)" if report.quick else ""),
        "",
        "## Results",
        "",
        "| # | figure | value | goal | status | comparator (same run) |",
        "|---|---|---:|---|---|---|",
    ]
    for section in report.sections:
        lines += _rows(section)
    lines += ["", "## Machine", "", *_machine(report), "", "## Notes", ""]
    for section in report.sections:
        lines += _notes(section)
    profiles = [p for s in report.sections if s.result for p in s.result.profiles]
    if profiles:
        lines += ["## Profiles of missed goals", "", *profiles]
    return "\n".join(lines).rstrip() + "\n"


def write(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")


def _rows(section: Section) -> list[str]:
    if section.result is None:
        why = section.error or section.pending
        return [f"| {section.key} | {section.title} | — | — | {why} | — |"]
    return [
        f"| {f.key} | {f.name} | {f.shown} | {f.goal or '—'} | {status(f)} | {f.comparator} |"
        for f in section.result.figures
    ]


def _notes(section: Section) -> list[str]:
    lines = [f"**{section.key}. {section.title}** ({section.seconds:.0f} s)", ""]
    if section.pending:
        lines.append(f"- {section.pending}")
    if section.error:
        lines.append(f"- error: {section.error}")
    if section.result is not None:
        lines += [f"- {note}" for note in section.result.notes]
    return [*lines, ""]


def _machine(report: Report) -> list[str]:
    load_after = os.getloadavg()
    return [
        f"- date: {report.started:%Y-%m-%d %H:%M} UTC; commit {_commit()}",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores; RAM {_ram_gib():.1f} GiB",
        f"- {platform.platform()}; Python {platform.python_version()}; SQLite "
        f"{sqlite3.sqlite_version}; "
        + ", ".join(f"{name} {_version(name)}" for name in ("openai", "aiosqlite", "aiohttp")),
        f"- load average (1, 5, 15 min) at start {_load(report.load_before)}, at end "
        f"{_load(load_after)}: the machine is shared, so figures carry noise; medians are used",
        "- the loopback LLM runs in the benchmark's own process (footprint: in the parent, "
        "outside the measured child)",
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _commit() -> str:
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    suffix = " (with uncommitted changes)" if dirty.stdout.strip() else ""
    return (found.stdout.strip() or "unknown") + suffix


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)
