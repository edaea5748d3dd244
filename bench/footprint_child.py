"""The measured process of benchmark 7: one engine with many active sessions.

Run by `bench.footprint` as `python -m bench.footprint_child --base-url URL --database PATH
--sessions N`; prints one JSON object on stdout. The loopback LLM lives in the parent, so this
process's memory is the bot's minus Discord's caches: interpreter, the bot's imports (discord.py
included), tokenizer, database, engine and its sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import bot.client.bot  # noqa: F401  (the bot process imports discord.py: count it in the floor)
from bench.core import rss_bytes
from bench.harness import Speaker, answered, bench_settings, bench_tokenizer
from bench.storage_speed import MESSAGE_INSERT, Corpus, session_key
from bot.app import running_engine
from bot.engine.engine import MemoryEngine
from storage import Storage

SEEDED_PAIRS = 2  # "a few stored messages" per session before its reply
CONCURRENT_REPLIES = 16
TRACE_TOP = 10


async def measure(base_url: str, database: Path, sessions: int, trace: bool) -> dict[str, Any]:
    corpus = await Corpus.build()
    await seed(database, corpus, sessions)
    settings = bench_settings(base_url, database)
    tokenizer = await bench_tokenizer()
    async with running_engine(settings, tokenizer=tokenizer) as engine:
        floor = _settled_rss()
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        await _reply_to_all(engine, corpus, sessions)
        await engine.jobs.idle()
        seconds = time.perf_counter() - started
        active = _settled_rss()
        figures = {
            "rss_floor": floor,
            "rss_active": active,
            "pending_jobs": engine.jobs.pending(),
            "seconds": seconds,
            "trace": _trace_top() if trace else [],
        }
        await engine.storage.db.checkpoint()
    figures["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return figures | _disk(database)


async def seed(database: Path, corpus: Corpus, sessions: int) -> None:
    """The real schema, then `SEEDED_PAIRS` stored exchanges in each session."""
    await (await Storage.open(database)).close()
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO sessions (id, guild_id, channel_id, user_id, created_at)"
                " VALUES (?, ?, ?, ?, 0)",
                [(i, *_where(i)) for i in range(1, sessions + 1)],
            )
            conn.executemany(MESSAGE_INSERT, _seed_rows(corpus, sessions))
    finally:
        conn.close()


def _seed_rows(corpus: Corpus, sessions: int) -> Iterator[tuple[object, ...]]:
    for index in range(1, sessions + 1):
        for pair in range(SEEDED_PAIRS):
            question, question_tokens = corpus.user[(index + pair) % len(corpus.user)]
            reply, reply_tokens = corpus.assistant[(index + pair) % len(corpus.assistant)]
            discord_id = index * 100 + pair
            yield (index, discord_id, *_where(index), "user", question, question_tokens, 0.0)
            yield (index, None, *_where(index), "assistant", reply, reply_tokens, 0.0)


def _where(index: int) -> tuple[int | None, int, int]:
    key = session_key(index)
    return (key.guild_id, key.channel_id, key.user_id)


async def _reply_to_all(engine: MemoryEngine, corpus: Corpus, sessions: int) -> None:
    """One reply in every session, `CONCURRENT_REPLIES` sessions at a time."""
    speaker = Speaker(first_id=10**12)
    questions = [text for text, _ in corpus.user]
    indexes = range(1, sessions + 1)
    for first in range(0, sessions, CONCURRENT_REPLIES):
        batch = indexes[first : first + CONCURRENT_REPLIES]
        messages = [speaker.says(questions[i % len(questions)], session_key(i)) for i in batch]
        for result in await asyncio.gather(*(engine.reply(m) for m in messages)):
            answered(result)


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def _trace_top() -> list[str]:
    snapshot = tracemalloc.take_snapshot()
    return [str(stat) for stat in snapshot.statistics("lineno")[:TRACE_TOP]]


def _disk(database: Path) -> dict[str, int]:
    files = [database, database.with_name(database.name + "-wal")]
    size = sum(path.stat().st_size for path in files if path.exists())
    conn = sqlite3.connect(database)
    try:
        messages, content = conn.execute(
            "SELECT COUNT(*), SUM(LENGTH(CAST(content AS BLOB))) FROM messages"
        ).fetchone()
    finally:
        conn.close()
    return {"db_bytes": size, "messages": messages, "content_bytes": content}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint_child")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--trace", action="store_true", help="tracemalloc's top allocations")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.base_url, args.database, args.sessions, args.trace))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
