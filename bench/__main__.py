"""`python -m bench`: run the benchmarks and write docs/benchmarks.md.

    python -m bench                 # the full run (about 8 minutes on 2 cores)
    python -m bench --quick         # smaller sizes, for a quick look
    python -m bench --only 2,6      # some benchmarks only

Exits 1 when a benchmark could not run; a missed goal is reported, not an error.

To add a benchmark, write a module with `async def run(scale: Scale) -> BenchResult` and put it
in `BENCHMARKS` below, in its place in the numbering.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import (
    backends,
    channel_context,
    conversation_cost,
    fact_validation,
    footprint,
    image_turn,
    learned_slots,
    one_slot,
    recall_quality,
    reply_path,
    startup,
    storage_speed,
    summarizing_turns,
    throughput,
)
from bench.core import BenchResult, Scale
from bench.report import Report, Section, print_section, print_summary, write

Runner = Callable[[Scale], Awaitable[BenchResult]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    key: str
    title: str
    run: Runner | None
    pending: str = ""
    """Why a benchmark without `run` is not measured yet."""


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("1", "Reply-path overhead through the loopback Discord", reply_path.run),
    Benchmark("1p", "Reply path: PostgreSQL beside SQLite (engine turn)", backends.run),
    Benchmark("11", "Channel context: reply-path cost, memory per channel", channel_context.run),
    Benchmark("2", "Summarizing turns (LLM latency 200 ms)", summarizing_turns.run),
    Benchmark("2b", "One-slot server: replies first, background calls of 4 s", one_slot.run),
    Benchmark("2c", "Learned slots: a burst to an 8-slot server at 127.0.0.1", learned_slots.run),
    Benchmark("3, 4", "Tokens and LLM calls over a long conversation", conversation_cost.run),
    Benchmark("5", "Throughput: 100 sessions at once through the whole bot", throughput.run),
    Benchmark("6", "Storage at scale", storage_speed.run),
    Benchmark("7", "Footprint: memory and disk", footprint.run),
    Benchmark("7c", "Footprint: start-up to ready", startup.run),
    Benchmark(
        "8", "Fact validator: precision and recall on a labelled corpus", fact_validation.run
    ),
    Benchmark("9", "Recall: evidence of old messages in the prompt", recall_quality.run),
    Benchmark("10", "Image turn: decode and resize on the reply path", image_turn.run),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    chosen = _select(args.only)
    command = "python -m bench" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    report = Report(command, quick=args.quick)
    scale = Scale.small() if args.quick else Scale.full()
    asyncio.run(_run_all(chosen, scale, report))
    write(report, args.output)
    print_summary(report)
    print(f"Wrote {args.output}")
    return 1 if report.failed() else 0


async def _run_all(chosen: Sequence[Benchmark], scale: Scale, report: Report) -> None:
    for benchmark in chosen:
        section = Section(benchmark.key, benchmark.title, pending=benchmark.pending)
        if benchmark.run is not None:
            started = time.perf_counter()
            try:
                section.result = await benchmark.run(scale)
            except Exception as error:  # one broken benchmark must not hide the others
                logging.exception("Benchmark %s failed", benchmark.key)
                section.error = f"{type(error).__name__}: {error}"
            section.seconds = time.perf_counter() - started
        report.sections.append(section)
        print_section(section)


def _select(only: str) -> list[Benchmark]:
    if not only:
        return list(BENCHMARKS)
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    chosen = [b for b in BENCHMARKS if wanted & {k.strip() for k in b.key.split(",")}]
    if not chosen:
        sys.exit(f"bench: no benchmark matches --only {only!r}")
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 2 minutes)")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 2,6")
    parser.add_argument(
        "--output", type=Path, default=Path("docs/benchmarks.md"), help="where to write"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
