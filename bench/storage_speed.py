"""Benchmark 6: the storage layer at a million stored messages.

Set-up: the real schema (migrations through `Storage.open`), then 1M messages bulk-filled with
`executemany`, in user/assistant pairs spread at random over 10,000 sessions (so a session's rows
are scattered through the file, as when many people talk at once).

Measured, alternately in each of several repeats:
- messages stored per second through `storage.messages.add`, one call per message, as the bot
  stores them; the floor is stdlib `sqlite3` (synchronous) running the repository's own
  statement the same way (autocommit) on the same file, and a second floor groups 32 messages
  per transaction (what any one-writer design could reach on this machine);
- window reads through `storage.messages.newest(session_id, after_id=0, limit=64)`, each timed
  (p50, p99); the floor is the same SELECT through stdlib `sqlite3`;
- recall queries through `storage.recall.search` (the one statement of the reply path), for a
  random session's user and space with the terms of a random stored question, each timed
  (p50, p99), and the same for one heavy user who holds 2 % of all messages.
Each figure is the median over the repeats. Then, once: the cost of merging the search index
after an erasure (`storage.recall.purge_deleted`, what every user-requested deletion runs), and
the insert rate with the index's insert trigger dropped (what the index costs each `add`).

With BENCH_DATABASE_URL (or TEST_DATABASE_URL) set, the storage figures are measured on
PostgreSQL in the same run (6p-6r): a database of its own on that server, filled with the same
messages through COPY, the same repository calls on the same plans; the floor is the same SELECT
through a bare asyncpg connection.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count, islice
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import postgres, script
from bench.core import BenchError, BenchResult, Figure, Goal, Scale, median, percentile
from bench.harness import bench_tokenizer
from bench.profiling import Profiled, profile
from storage import Storage
from storage.erasures import fence_params
from storage.messages import INSERT_INTO_FENCED_SESSION
from storage.models import SessionKey
from storage.postgres import pg_sql
from storage.recall import MERGE_PAGES, query_terms
from storage.sqlite import BUSY_TIMEOUT_MS

INSERT_GOAL = Goal(20_000, at_most=False)
READ_P99_GOAL_MS = Goal(0.5)
RECALL_P99_GOAL_MS = Goal(5.0)
RECALL_LIMIT = 12  # bot.memory.recall.RECALL_HITS
RECALL_EXCLUDED = 40  # a window's worth of excluded candidates, as on the reply path
HEAVY_SESSION = 1
HEAVY_EVERY = 50  # every 50th pair goes to the heavy user's session: 2 % of all messages
WINDOW_LIMIT = 64
FILL_CHUNK = 50_000
PROFILE_OPS = 2_000
GROUP_COMMIT = 32  # messages per transaction in the group-commit floor

# The repository's own statement, so that the floor runs exactly what `add` runs.
REPOSITORY_INSERT = INSERT_INTO_FENCED_SESSION
MESSAGE_INSERT = (
    "INSERT INTO messages (session_id, discord_id, guild_id, channel_id, user_id,"
    " role, content, tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
WINDOW_SELECT = (
    "SELECT id, session_id, discord_id, guild_id, channel_id, user_id, role, content, tokens,"
    " created_at FROM messages WHERE session_id = ? AND id > ? AND id < ? ORDER BY id DESC LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class Corpus:
    """Realistic message texts (~40-token questions, ~120-token answers) and token counts."""

    user: list[tuple[str, int]]
    assistant: list[tuple[str, int]]

    @classmethod
    async def build(cls) -> Corpus:
        tokenizer = await bench_tokenizer()
        turns = script.conversation(60)
        questions = [turn.text for turn in turns]
        answers = [script.answer({"messages": [{"content": text}]}) for text in questions]
        return cls(
            [(text, tokenizer.count(text)) for text in questions],
            [(text, tokenizer.count(text)) for text in answers],
        )


@dataclass(slots=True)
class Samples:
    repo_rates: list[float] = field(default_factory=list)
    raw_rates: list[float] = field(default_factory=list)
    grouped_rates: list[float] = field(default_factory=list)
    repo_reads: list[list[float]] = field(default_factory=list)
    raw_reads: list[list[float]] = field(default_factory=list)
    erase_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    recalls: list[list[float]] = field(default_factory=list)
    heavy_recalls: list[list[float]] = field(default_factory=list)
    purge_seconds: float = 0.0
    purge_steps: int = 0
    purge_again_seconds: float = 0.0
    unindexed_rates: list[float] = field(default_factory=list)

    def read_ms(self, which: list[list[float]], fraction: float) -> float:
        return median([percentile(run, fraction) * 1000 for run in which])


def session_key(index: int) -> SessionKey:
    """The key of bulk-filled session `index` (ids start at 1 in the sessions table)."""
    return SessionKey(guild_id=5000 + index % 10, channel_id=100_000 + index % 500, user_id=index)


async def run(scale: Scale) -> BenchResult:
    corpus = await Corpus.build()
    with TemporaryDirectory(prefix="mnemo-bench-") as tmp:
        path = Path(tmp) / "storage.db"
        fill_seconds = await fill(path, corpus, scale.storage_rows, scale.storage_sessions)
        discord_ids = count(10**16)
        samples = await _measure(path, corpus, scale, discord_ids)
        result = _result(samples, scale)
        result.notes.append(_fill_note(path, scale, fill_seconds))
        result.profiles += await _profiles(result, path, corpus, samples, scale, discord_ids)
    server = postgres.server_url()
    if server is None:
        result.notes.append(postgres.NOT_SET)
        return result
    async with postgres.temporary_database(server) as url:
        fill_seconds = await fill_postgres(url, corpus, scale.storage_rows, scale.storage_sessions)
        pg_samples = await _measure_postgres(url, corpus, scale, discord_ids)
    result.figures += _postgres_figures(pg_samples, samples, scale)
    result.notes.append(
        f"PostgreSQL ({postgres.redact(server)}): the same {scale.storage_rows:,} messages"
        f" filled through COPY in {fill_seconds:.0f} s; repository inserts per repeat (msg/s): "
        + ", ".join(f"{rate:,.0f}" for rate in pg_samples.repo_rates)
        + f". Erasing one user took {pg_samples.erase_seconds * 1000:.0f} ms; the VACUUM"
        f" that follows (the whole database, in the background)"
        f" {pg_samples.vacuum_seconds:.1f} s."
    )
    return result


async def fill(path: Path, corpus: Corpus, rows: int, sessions: int) -> float:
    """Create the schema, then bulk-fill `sessions` sessions and `rows` messages."""
    started = time.perf_counter()
    await (await Storage.open(path)).close()  # the real schema, from the migrations
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.executemany(
                "INSERT INTO sessions (id, guild_id, channel_id, user_id, created_at)"
                " VALUES (?, ?, ?, ?, 0)",
                [(i, *_key_tuple(session_key(i))) for i in range(1, sessions + 1)],
            )
        messages = _bulk_messages(corpus, rows, sessions)
        while chunk := list(islice(messages, FILL_CHUNK)):
            conn.execute("BEGIN")
            conn.executemany(MESSAGE_INSERT, chunk)
            conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def _bulk_messages(corpus: Corpus, rows: int, sessions: int) -> Iterator[tuple[object, ...]]:
    """User/assistant pairs, each pair in a random session."""
    rng = random.Random(6)
    for pair in range(rows // 2):
        index = HEAVY_SESSION if pair % HEAVY_EVERY == 0 else rng.randint(1, sessions)
        key = session_key(index)
        for role, pool, discord_id in (
            ("user", corpus.user, 10**15 + pair),
            ("assistant", corpus.assistant, None),
        ):
            text, tokens = pool[pair % len(pool)]
            yield (index, discord_id, *_key_tuple(key), role, text, tokens, float(pair))


async def fill_postgres(url: str, corpus: Corpus, rows: int, sessions: int) -> float:
    """The real schema on PostgreSQL, then the same sessions and messages as `fill`, by COPY.
    Session ids come from the identity column: 1..sessions on the fresh database."""
    import asyncpg

    started = time.perf_counter()
    await (await Storage.open(url)).close()
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "sessions",
            records=[(*_key_tuple(session_key(i)), 0.0) for i in range(1, sessions + 1)],
            columns=["guild_id", "channel_id", "user_id", "created_at"],
        )
        columns = MESSAGE_INSERT.partition("(")[2].partition(")")[0].replace(" ", "").split(",")
        # Every message answered, as in the SQLite fill, written as such: the trigger that
        # settles a session's pending messages on each answer would scan the session's rows
        # once per assistant row (a million rows took over 19 minutes).
        columns.append("reply_pending")
        messages = ((*row, 0) for row in _bulk_messages(corpus, rows, sessions))
        await conn.execute("ALTER TABLE messages DISABLE TRIGGER messages_reply_settled")
        # The indexes are built once after the load, as a restore does.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        while chunk := list(islice(messages, FILL_CHUNK)):
            await conn.copy_records_to_table("messages", records=chunk, columns=columns)
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("ALTER TABLE messages ENABLE TRIGGER messages_reply_settled")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _measure_postgres(url: str, corpus: Corpus, scale: Scale, ids: Iterator[int]) -> Samples:
    import asyncpg

    samples = Samples()
    rng = random.Random(66)  # the same plans as on SQLite
    storage = await Storage.open(url)
    raw = await asyncpg.connect(url)
    try:
        for _ in range(scale.repeats):
            writes = _plan(rng, scale.storage_sessions, scale.storage_inserts)
            samples.repo_rates.append(await _repo_inserts(storage, corpus, writes, ids))
            reads = _plan(rng, scale.storage_sessions, scale.storage_reads)
            samples.repo_reads.append(await _repo_reads(storage, reads))
            samples.raw_reads.append(await _asyncpg_reads(raw, reads))
        # The cost of an erasure's VACUUM at this size (PostgreSQL has no secure_delete).
        started = time.perf_counter()
        await storage.users.delete_user_data(session_key(1).user_id)
        erased = time.perf_counter()
        await storage.db.flush()
        samples.vacuum_seconds = time.perf_counter() - erased
        samples.erase_seconds = erased - started
    finally:
        await raw.close()
        await storage.close()
    return samples


async def _asyncpg_reads(conn: object, plan: list[int]) -> list[float]:
    statement = pg_sql(WINDOW_SELECT)
    timings = []
    for index in plan:
        started = time.perf_counter()
        await conn.fetch(statement, index, 0, 2**63 - 1, WINDOW_LIMIT)  # type: ignore[attr-defined]
        timings.append(time.perf_counter() - started)
    return timings


def _postgres_figures(pg: Samples, sqlite: Samples, scale: Scale) -> list[Figure]:
    rows = f"{scale.storage_rows:,} rows"
    rate, sqlite_rate = median(pg.repo_rates), median(sqlite.repo_rates)
    figures = [
        Figure(
            "6p",
            f"PostgreSQL: messages stored per second, storage.messages.add, at {rows}",
            rate,
            "msg/s",
            None,
            f"SQLite: {sqlite_rate:,.0f} msg/s (PostgreSQL at {rate / sqlite_rate:.0%})",
        )
    ]
    for key, fraction, label in (("6q", 0.50, "p50"), ("6r", 0.99, "p99")):
        value = pg.read_ms(pg.repo_reads, fraction)
        floor = pg.read_ms(pg.raw_reads, fraction)
        on_sqlite = sqlite.read_ms(sqlite.repo_reads, fraction)
        figures.append(
            Figure(
                key,
                f"PostgreSQL: window read {label}, newest(limit=64), at {rows}",
                value,
                "ms",
                None,
                f"SQLite: {on_sqlite:.3f} ms ({value / on_sqlite:.1f}x);"
                f" bare asyncpg, same SELECT: {floor:.3f} ms",
            )
        )
    return figures


def _key_tuple(key: SessionKey) -> tuple[int | None, int, int]:
    return (key.guild_id, key.channel_id, key.user_id)


def raw_connection(path: Path) -> sqlite3.Connection:
    """A stdlib connection configured like `storage.database`, for the floor figures."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON", "secure_delete=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


async def _measure(path: Path, corpus: Corpus, scale: Scale, ids: Iterator[int]) -> Samples:
    samples = Samples()
    rng = random.Random(66)
    storage = await Storage.open(path)
    raw = raw_connection(path)
    try:
        for _ in range(scale.repeats):
            writes = _plan(rng, scale.storage_sessions, scale.storage_inserts)
            samples.repo_rates.append(await _repo_inserts(storage, corpus, writes, ids))
            samples.raw_rates.append(_raw_inserts(raw, corpus, writes, ids))
            samples.grouped_rates.append(_raw_inserts(raw, corpus, writes, ids, GROUP_COMMIT))
            reads = _plan(rng, scale.storage_sessions, scale.storage_reads)
            samples.repo_reads.append(await _repo_reads(storage, reads))
            samples.raw_reads.append(_raw_reads(raw, reads))
            samples.recalls.append(await _recalls(storage, corpus, reads, rng))
            heavy = [HEAVY_SESSION] * (scale.storage_reads // 4)
            samples.heavy_recalls.append(await _recalls(storage, corpus, heavy, rng))
        await _erasure_and_index_cost(storage, corpus, scale, samples, rng, ids)
    finally:
        raw.close()
        await storage.close()
    return samples


def _plan(rng: random.Random, sessions: int, size: int) -> list[int]:
    """Random existing session indexes, one per operation."""
    return [rng.randint(1, sessions) for _ in range(size)]


async def _repo_inserts(
    storage: Storage, corpus: Corpus, plan: list[int], ids: Iterator[int]
) -> float:
    # As the engine writes: fenced, with each user's current fence (read before the clock
    # starts; the erasure measurement before this may have erased some of them).
    fences = {index: await storage.erasures.fence(session_key(index)) for index in set(plan)}
    started = time.perf_counter()
    for step, index in enumerate(plan):
        text, tokens = corpus.user[step % len(corpus.user)]
        await storage.messages.add(
            session_key(index),
            role="user",
            content=text,
            tokens=tokens,
            discord_id=next(ids),
            now=time.time(),
            fence=fences[index],
        )
    return len(plan) / (time.perf_counter() - started)


def _raw_inserts(
    conn: sqlite3.Connection,
    corpus: Corpus,
    plan: list[int],
    ids: Iterator[int],
    per_transaction: int = 1,
) -> float:
    """The statement of `MessageRepository.add` (its usual path: the session exists), through
    stdlib sqlite3, in autocommit; with `per_transaction` > 1, that many messages share one
    transaction (group commit)."""
    started = time.perf_counter()
    messages = corpus.user
    if per_transaction == 1:  # autocommit: each statement its own transaction, as in `add`
        for step, index in enumerate(plan):
            _raw_add(conn, messages[step % len(messages)], index, next(ids))
    else:
        for first in range(0, len(plan), per_transaction):
            conn.execute("BEGIN IMMEDIATE")
            for step in range(first, min(first + per_transaction, len(plan))):
                _raw_add(conn, messages[step % len(messages)], plan[step], next(ids))
            conn.execute("COMMIT")
    return len(plan) / (time.perf_counter() - started)


def _raw_add(
    conn: sqlite3.Connection, message: tuple[str, int], index: int, discord_id: int
) -> None:
    text, tokens = message
    key = session_key(index)
    values = (discord_id, *_key_tuple(key), "user", text, tokens, time.time())
    unlinked = (None, None, None)  # place_id (its channel), reply_to, shown_as: as a user's
    params = (*values, *unlinked, key.channel_id, key.user_id, *fence_params(key), 0)
    if conn.execute(REPOSITORY_INSERT, params).fetchone() is None:
        raise BenchError(f"raw insert into session {index} stored nothing")


async def _repo_reads(storage: Storage, plan: list[int]) -> list[float]:
    timings = []
    for index in plan:
        started = time.perf_counter()
        await storage.messages.newest(index, after_id=0, limit=WINDOW_LIMIT)
        timings.append(time.perf_counter() - started)
    return timings


async def _recalls(
    storage: Storage, corpus: Corpus, plan: list[int], rng: random.Random
) -> list[float]:
    timings = []
    now = time.time()
    for index in plan:
        key = session_key(index)
        terms = query_terms(rng.choice(corpus.user)[0])
        started = time.perf_counter()
        await storage.recall.search(
            key.user_id,
            key.space_id,
            terms,
            exclude_session_id=index,
            exclude_from_id=2**62,
            excluded_count=RECALL_EXCLUDED,
            now=now,
            limit=RECALL_LIMIT,
        )
        timings.append(time.perf_counter() - started)
    return timings


async def _erasure_and_index_cost(
    storage: Storage,
    corpus: Corpus,
    scale: Scale,
    samples: Samples,
    rng: random.Random,
    ids: Iterator[int],
) -> None:
    """A user's erasure followed by the index merge it needs (twice: the second finds the
    index merged already), then inserts without the index's trigger."""
    await storage.users.delete_user_data(session_key(2).user_id)
    started = time.perf_counter()
    samples.purge_steps = await storage.recall.purge_deleted()
    samples.purge_seconds = time.perf_counter() - started
    await storage.users.delete_user_data(session_key(3).user_id)
    started = time.perf_counter()
    await storage.recall.purge_deleted()
    samples.purge_again_seconds = time.perf_counter() - started
    async with storage.db.transaction() as tx:
        await tx.execute("DROP TRIGGER messages_fts_insert")  # a throw-away database
    for _ in range(scale.repeats):
        writes = _plan(rng, scale.storage_sessions, scale.storage_inserts)
        samples.unindexed_rates.append(await _repo_inserts(storage, corpus, writes, ids))


def _raw_reads(conn: sqlite3.Connection, plan: list[int]) -> list[float]:
    timings = []
    for index in plan:
        started = time.perf_counter()
        conn.execute(WINDOW_SELECT, (index, 0, 2**63 - 1, WINDOW_LIMIT)).fetchall()
        timings.append(time.perf_counter() - started)
    return timings


def _result(samples: Samples, scale: Scale) -> BenchResult:
    repo_rate, raw_rate = median(samples.repo_rates), median(samples.raw_rates)
    p50, raw_p50 = (samples.read_ms(s, 0.50) for s in (samples.repo_reads, samples.raw_reads))
    p99, raw_p99 = (samples.read_ms(s, 0.99) for s in (samples.repo_reads, samples.raw_reads))
    rows = f"{scale.storage_rows:,} rows"
    figures = [
        Figure(
            "6a",
            f"messages stored per second, storage.messages.add, at {rows}",
            repo_rate,
            "msg/s",
            INSERT_GOAL,
            f"raw sqlite3, same statement: {raw_rate:,.0f} msg/s (repository at"
            f" {repo_rate / raw_rate:.0%} of it); raw, {GROUP_COMMIT} messages per"
            f" transaction: {median(samples.grouped_rates):,.0f} msg/s",
        ),
        Figure(
            "6b",
            f"window read p50, newest(limit=64), at {rows}",
            p50,
            "ms",
            None,
            f"raw sqlite3, same SELECT: {raw_p50:.3f} ms",
        ),
        Figure(
            "6c",
            f"window read p99, newest(limit=64), at {rows}",
            p99,
            "ms",
            READ_P99_GOAL_MS,
            f"raw sqlite3, same SELECT: {raw_p99:.3f} ms",
        ),
        Figure(
            "6d",
            f"recall query p50, storage.recall.search, at {rows}",
            samples.read_ms(samples.recalls, 0.50),
            "ms",
            None,
            f"heavy user ({100 // HEAVY_EVERY} % of all rows):"
            f" {samples.read_ms(samples.heavy_recalls, 0.50):.2f} ms",
        ),
        Figure(
            "6e",
            f"recall query p99, storage.recall.search, at {rows}",
            samples.read_ms(samples.recalls, 0.99),
            "ms",
            RECALL_P99_GOAL_MS,
            f"heavy user: {samples.read_ms(samples.heavy_recalls, 0.99):.2f} ms",
        ),
        Figure(
            "6f",
            f"index merge after an erasure, storage.recall.purge_deleted, at {rows}",
            samples.purge_seconds,
            "s",
            None,
            f"{samples.purge_steps} steps of {MERGE_PAGES} pages; right after another"
            f" erasure, with the index merged already: {samples.purge_again_seconds:.2f} s",
        ),
        Figure(
            "6g",
            "messages stored per second without the recall index (its trigger dropped)",
            median(samples.unindexed_rates),
            "msg/s",
            None,
            f"with the index (6a): {repo_rate:,.0f} msg/s, so the index costs"
            f" {1 - repo_rate / median(samples.unindexed_rates):.0%} of the insert rate",
        ),
    ]
    notes = [
        f"{scale.repeats} repeats of {scale.storage_inserts:,} inserts and"
        f" {scale.storage_reads:,} reads each, repository and raw sqlite3 alternately"
        " (the raw floors on a second connection to the same file);"
        " medians over the repeats.",
        "Repository inserts per repeat (msg/s): "
        + ", ".join(f"{rate:,.0f}" for rate in samples.repo_rates),
    ]
    return BenchResult(figures, notes)


def _fill_note(path: Path, scale: Scale, seconds: float) -> str:
    size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
    return (
        f"Set-up: {scale.storage_rows:,} messages over {scale.storage_sessions:,} sessions"
        f" bulk-filled in {seconds:.0f} s; database file {size / 2**20:,.0f} MiB at the end."
    )


async def _profiles(
    result: BenchResult,
    path: Path,
    corpus: Corpus,
    samples: Samples,
    scale: Scale,
    ids: Iterator[int],
) -> list[str]:
    """Profile the repository's inserts or reads, when they missed their goal. The database
    is opened inside the profiled run, so that its aiosqlite thread is profiled too."""
    missed = {figure.key for figure in result.missed}
    plan = _plan(random.Random(666), scale.storage_sessions, PROFILE_OPS)

    async def inserts() -> None:
        async with _opened(path) as storage:
            await _repo_inserts(storage, corpus, plan, ids)

    async def reads() -> None:
        async with _opened(path) as storage:
            await _repo_reads(storage, plan)

    found = []
    if "6a" in missed:
        title = f"Benchmark 6a: {len(plan):,} repository inserts"
        profiled = await profile(title, inserts, operations=len(plan))
        floor_ms = 1000 / median(samples.raw_rates)
        found.append(profiled.markdown(_hand_off_reading(profiled, "add", floor_ms)))
    if "6c" in missed:
        title = f"Benchmark 6c: {len(plan):,} repository reads"
        profiled = await profile(title, reads, operations=len(plan))
        floor_ms = samples.read_ms(samples.raw_reads, 0.5)
        reading = _hand_off_reading(profiled, "read", floor_ms)
        building = profiled.own_ms_per_op("_message") + profiled.own_ms_per_op("__init__")
        reading += (
            f" Building the {WINDOW_LIMIT} `StoredMessage` records (`_message` and dataclass"
            f" `__init__`) costs {building:.3f} ms per read on the event-loop thread."
        )
        found.append(profiled.markdown(reading))
    return found


def _hand_off_reading(profiled: Profiled, operation: str, floor_ms: float) -> str:
    hops = profiled.calls_per_op("<method 'put_nowait' of '_queue.SimpleQueue' objects>")
    worker = profiled.own_ms_per_op("_connection_worker_thread", in_threads=True)
    return (
        f"Reading: one {operation} takes {profiled.ms_per_op():.3f} ms under the profiler and"
        f" makes {hops:.0f} round trips to aiosqlite's worker thread (one `put_nowait` each)."
        f" The worker's own time, which includes SQLite's C calls, is {worker:.3f} ms per"
        f" {operation}; the rest of both threads' time is waiting for each other"
        " (`SimpleQueue.get` in the worker, `epoll.poll` in the event loop): thread hand-offs."
        f" Raw sqlite3 does the same in {floor_ms:.3f} ms (median, same run)."
    )


@asynccontextmanager
async def _opened(path: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(path)
    try:
        yield storage
    finally:
        await storage.close()
