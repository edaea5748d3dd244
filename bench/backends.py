"""Benchmark 1p: the reply path on PostgreSQL beside SQLite, in the same run.

A whole engine turn (`MemoryEngine.reply`: fence, admission, store, facts, summary, window,
recall, the model call, the answer stored) against the loopback LLM answering at once, so what
differs between the two rows is the storage. Each database first holds `PREFILL_TURNS` turns
spread over sessions of several users; the measured turns then go to one session, as a
conversation does. Figures are p50 and p99 over the measured turns; the goal is the issue's:
PostgreSQL's p99 within 2x of SQLite's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.core import BenchResult, Figure, Goal, Scale, percentile
from bench.harness import (
    NO_RATE_LIMIT,
    Speaker,
    answered,
    bench_settings,
    bench_tokenizer,
    loopback_llm,
)
from bench.postgres import NOT_SET, redact, server_url, temporary_database
from bot.app import running_engine
from bot.model.tokens import Tokenizer
from storage.models import SessionKey

PREFILL_TURNS = 400
MEASURED_TURNS = 600
"""Enough for a p99 that is not one turn's accident, and for one session to grow to 1,200
messages, all of which match the measured messages' words (recall ranks them every turn)."""
P99_RATIO_GOAL = Goal(2.0)


async def run(scale: Scale) -> BenchResult:
    admin_url = server_url()
    if admin_url is None:
        return BenchResult(notes=[NOT_SET])
    tokenizer = await bench_tokenizer()
    turns = MEASURED_TURNS // 4 if scale.quick else MEASURED_TURNS
    with TemporaryDirectory() as folder:
        sqlite_url = f"sqlite:///{Path(folder) / 'mnemo.db'}"
        sqlite = await _turn_times(sqlite_url, tokenizer, turns)
    async with temporary_database(admin_url) as postgres_url:
        postgres = await _turn_times(postgres_url, tokenizer, turns)
    figures = []
    for label, fraction in (("p50", 0.50), ("p99", 0.99)):
        on_sqlite, on_postgres = percentile(sqlite, fraction), percentile(postgres, fraction)
        figures.append(
            Figure(
                f"1p-{label}",
                f"engine turn on PostgreSQL, {label} (instant loopback LLM)",
                on_postgres * 1000,
                "ms",
                None,
                f"SQLite, same run: {on_sqlite * 1000:.2f} ms",
            )
        )
    figures.append(
        Figure(
            "1p-ratio",
            "PostgreSQL p99 / SQLite p99, engine turn",
            percentile(postgres, 0.99) / percentile(sqlite, 0.99),
            "x",
            P99_RATIO_GOAL,
        )
    )
    notes = [
        f"{turns} measured turns after {PREFILL_TURNS} prefilled ones on each backend;"
        f" PostgreSQL on {redact(admin_url)} (a database of its own, dropped after)."
    ]
    return BenchResult(figures=figures, notes=notes)


async def _turn_times(url: str, tokenizer: Tokenizer, turns: int) -> Sequence[float]:
    async with loopback_llm() as fake:
        settings = bench_settings(
            fake.base_url, Path("unused.db"), DATABASE_URL=url, **NO_RATE_LIMIT
        )
        async with running_engine(settings, tokenizer=tokenizer) as engine:
            for turn in range(PREFILL_TURNS):
                other = Speaker(
                    SessionKey(1000, 2000 + turn % 20, 3000 + turn % 7), 10**13 + turn * 10
                )
                text = f"warm-up message {turn} about topic {turn % 13}"
                answered(await engine.reply(other.says(text)))
            speaker = Speaker()
            times = []
            for turn in range(turns):
                started = time.perf_counter()
                answered(await engine.reply(speaker.says(f"measured message {turn}, how are you?")))
                times.append(time.perf_counter() - started)
            await engine.jobs.idle()
            return times
