"""Benchmark 9's hybrid mode: a prototype of hybrid recall around today's BM25, without the
engine knowing.

`BenchRecall` is the real `storage.recall.RecallRepository` (the engine's recall reads it as
`storage.recall`), switched per prompt by its `mode`:

* None: today's BM25 search, as it is;
* a `Hybrid`: BM25's best 24 fused with the vectors' best 24 by reciprocal-rank fusion
  (k=60), with the vector hits within the period as a third ranking for a question naming a
  time (and the period's scores doubled), and then the neighbour turns of the hits, for the
  prompt builder to take while the recall budget allows.

The pieces are `bot.memory.hybrid`'s; the vectors are real all-MiniLM-L6-v2 ones from the
loopback embeddings server (tests/fakes/embeddings.py), for every stored message and each
question, through the openai SDK as the bot would ask for them.

The vectors live here in memory, one float32 matrix per user (the scope: every user of the
benchmark talks in one server). The question's vector is computed before the prompt is built
(`prepare`), so the search's latency is the search's: BM25, the cosine over the user's
matrix, fusion and neighbours.

`cosine_latency` times the brute-force cosine alone over a user's matrix (and read from
SQLite float32 blobs, the storage the issue proposes), at the sizes benchmark 9 reports.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import openai
from numpy.typing import NDArray

from bench.core import percentile
from bot.memory.hybrid import (
    PERIOD_WEIGHT,
    Period,
    Relative,
    adjacent,
    cosine_top_k,
    in_period,
    parse_time_phrase,
    rrf_fuse,
    utc,
    weight_period,
    with_neighbours,
)
from storage import Storage
from storage.models import SessionKey, StoredMessage
from storage.recall import RecallHit, RecallRepository, query_terms
from storage.vectors import ToEmbed
from tests.fakes.embeddings import DIMENSIONS, MODEL, FakeEmbeddings

CANDIDATES = 24
"""Word hits and vector hits read for fusion (twice the hits the engine asks for)."""

ENGINE = "engine"
"""`BenchRecall.mode` for the engine's own hybrid recall (EMBEDDING_MODEL set)."""


@dataclass(frozen=True, slots=True)
class Hybrid:
    """One way of doing hybrid recall (the benchmark reports the whole and without a part)."""

    hits: int = CANDIDATES
    """Fused hits kept, before their neighbours (the engine asks BM25 for 12; the budget
    decides how many reach the prompt anyway)."""
    neighbours: bool = True
    time: bool = True
    """Weight the period a question names ("last week", "before my trip")."""
    period_weight: float = PERIOD_WEIGHT
    events: bool = False
    """Place "before/after <event>" (by the event's best hit) and rank that period's hits."""
    event_weight: float = 1.0
    """The weight of that period's hits: the event's best hit is often another trip."""


HYBRID = Hybrid()

EMBED_BATCH = 256
"""Texts per /v1/embeddings request while storing."""


@dataclass(slots=True)
class UserVectors:
    """One user's messages in id order, and their unit vectors (row i is messages[i])."""

    messages: list[StoredMessage] = field(default_factory=list)
    matrix: NDArray[np.float32] = field(
        default_factory=lambda: np.empty((0, DIMENSIONS), dtype=np.float32)
    )
    created_at: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    session_ids: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    message_ids: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    from_user: NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=np.bool_))
    row_of: dict[int, int] = field(default_factory=dict)

    def add(self, messages: Sequence[StoredMessage], vectors: NDArray[np.float32]) -> None:
        start = len(self.messages)
        self.messages.extend(messages)
        self.matrix = np.vstack([self.matrix, vectors.astype(np.float32)])
        self.created_at = np.concatenate([self.created_at, [m.created_at for m in messages]])
        self.session_ids = np.concatenate([self.session_ids, [m.session_id for m in messages]])
        self.message_ids = np.concatenate([self.message_ids, [m.id for m in messages]])
        self.from_user = np.concatenate([self.from_user, [m.role == "user" for m in messages]])
        for offset, message in enumerate(messages):
            self.row_of[message.id] = start + offset


@dataclass(slots=True)
class Prepared:
    """What `prepare` computed for the next prompt: the question's vector, its time."""

    vector: NDArray[np.float32]
    time_ref: Period | Relative | None
    event_vector: NDArray[np.float32] | None = None


class BenchRecall(RecallRepository):
    """The real repository, timing each search: today's BM25 when `mode` is None, else
    hybrid recall done the `mode` way."""

    def __init__(self, storage: Storage, embeddings: FakeEmbeddings) -> None:
        super().__init__(storage.db)
        self.mode: Hybrid | str | None = None
        """None: today's BM25; a `Hybrid`: this prototype; a name (ENGINE): BM25 as today,
        for the engine's own hybrid recall around it, timed apart."""
        self.timings: dict[Hybrid | str | None, list[float]] = {}
        self.users: dict[int, UserVectors] = {}
        self._embeddings = embeddings
        self._client = openai.AsyncOpenAI(
            base_url=embeddings.base_url, api_key="bench", max_retries=0, timeout=600.0
        )
        self._prepared: Prepared | None = None
        self.time_phrases: dict[str, int] = {"period": 0, "event": 0}
        """Questions prepared that named a period, or a time by an event."""

    async def close(self) -> None:
        await self._client.close()

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Vectors through /v1/embeddings and the openai SDK (base64, as it asks by default)."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            response = await self._client.embeddings.create(
                model=MODEL, input=list(texts[start : start + EMBED_BATCH])
            )
            rows.extend(item.embedding for item in response.data)
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), DIMENSIONS)

    async def remember(self, messages: Sequence[StoredMessage]) -> None:
        """Embed newly stored messages into their users' matrices (in id order)."""
        by_user: dict[int, list[StoredMessage]] = {}
        for message in messages:
            by_user.setdefault(message.user_id, []).append(message)
        for user_id, own in by_user.items():
            vectors = await self.embed([m.content for m in own])
            self.users.setdefault(user_id, UserVectors()).add(own, vectors)

    async def prepare(self, question: str, now: float) -> None:
        """The question's vector and time for the next hybrid search."""
        vector = (await self.embed([question]))[0]
        time_ref = parse_time_phrase(question, utc(now))
        event = None
        if isinstance(time_ref, Period):
            self.time_phrases["period"] += 1
        if isinstance(time_ref, Relative):
            self.time_phrases["event"] += 1
            event = (await self.embed([time_ref.event]))[0]
        self._prepared = Prepared(vector, time_ref, event)

    async def search(
        self,
        user_id: int,
        space_id: int,
        terms: Sequence[str],
        *,
        exclude_session_id: int,
        exclude_from_id: int,
        excluded_count: int,
        now: float,
        limit: int,
        places: Collection[int] | None = None,
    ) -> list[RecallHit]:
        started = time.perf_counter()
        words = await super().search(
            user_id,
            space_id,
            terms,
            exclude_session_id=exclude_session_id,
            exclude_from_id=exclude_from_id,
            excluded_count=excluded_count,
            now=now,
            limit=CANDIDATES if isinstance(self.mode, Hybrid) else limit,
            places=places,
        )
        if isinstance(self.mode, Hybrid):
            words = await self._hybrid(
                self.mode, user_id, space_id, words, exclude_session_id, exclude_from_id, now
            )
        self.timings.setdefault(self.mode, []).append(time.perf_counter() - started)
        return words

    async def _hybrid(
        self,
        how: Hybrid,
        user_id: int,
        space_id: int,
        words: list[RecallHit],
        exclude_session_id: int,
        exclude_from_id: int,
        now: float,
    ) -> list[RecallHit]:
        """The fused best `how.hits`, then their neighbours (the same conversation's turns
        just before and after, outside the window), for the budget to take what fits."""
        prepared, user = self._prepared, self.users.get(user_id)
        if prepared is None or user is None:
            return words
        in_window = (user.session_ids == exclude_session_id) & (user.message_ids >= exclude_from_id)
        allowed = ~in_window
        period = prepared.time_ref if isinstance(prepared.time_ref, Period) else None
        weight = how.period_weight
        if isinstance(prepared.time_ref, Relative) and how.events:
            period = await self._place(prepared, user, allowed, user_id, space_id, now)
            weight = how.event_weight
        if not how.time:
            period = None
        word_ids = [hit.message.id for hit in words]
        ids = user.message_ids

        def nearest(mask: NDArray[np.bool_]) -> list[int]:
            found = cosine_top_k(user.matrix, prepared.vector, CANDIDATES, allowed=mask)
            return [int(ids[row]) for row, _ in found]

        rankings = [word_ids, nearest(allowed)]
        if period is not None:  # the vector hits within the period: a ranking of their own
            rankings.append(nearest(allowed & in_period(user.created_at, period)))
        fused = rrf_fuse(*rankings)
        if period is not None:
            fused = weight_period(
                fused,
                lambda i: float(user.created_at[user.row_of[i]]),
                period,
                weight,
            )
        score = dict(fused)
        best = [item for item, _ in fused[: how.hits]]

        def neighbours(message_id: int) -> list[int]:
            row = user.row_of[message_id]
            around = adjacent(range(len(user.messages)), row)
            return [
                int(ids[other])
                for other in around
                if allowed[other] and user.session_ids[other] == user.session_ids[row]
            ]

        ordered = with_neighbours(best, neighbours) if how.neighbours else best
        return [RecallHit(user.messages[user.row_of[i]], score.get(i, 0.0)) for i in ordered]

    async def _place(
        self,
        prepared: Prepared,
        user: UserVectors,
        allowed: NDArray[np.bool_],
        user_id: int,
        space_id: int,
        now: float,
    ) -> Period | None:
        """When the event of "before/after <event>" was: the best fused hit for it."""
        relative = prepared.time_ref
        assert isinstance(relative, Relative) and prepared.event_vector is not None
        terms = query_terms(relative.event)
        words = await super().search(
            user_id,
            space_id,
            terms,
            exclude_session_id=-1,
            exclude_from_id=0,
            excluded_count=0,
            now=now,
            limit=CANDIDATES,
        )
        said_by_user = allowed & user.from_user
        vectors = cosine_top_k(user.matrix, prepared.event_vector, CANDIDATES, allowed=said_by_user)
        fused = rrf_fuse(
            [hit.message.id for hit in words if hit.message.role == "user"],
            [int(user.message_ids[row]) for row, _ in vectors],
        )
        if not fused:
            return None
        event_time = float(user.created_at[user.row_of[fused[0][0]]])
        return relative.around(event_time)


def cosine_latency(sizes: Sequence[int], repeats: int) -> dict[str, list[float]]:
    """Seconds per brute-force top-k over one user's vectors: in memory at each size, and at
    the largest read from SQLite float32 blobs first (one row per message, the user's rows by
    an index), as storage would hold them."""
    rng = np.random.default_rng(9)
    results: dict[str, list[float]] = {}
    query = rng.standard_normal(DIMENSIONS).astype(np.float32)
    for size in sizes:
        matrix = rng.standard_normal((size, DIMENSIONS)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        allowed = np.ones(size, dtype=np.bool_)
        allowed[-40:] = False  # the window
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            cosine_top_k(matrix, query, CANDIDATES, allowed=allowed)
            timings.append(time.perf_counter() - started)
        results[f"memory {size}"] = timings
    size = max(sizes)
    matrix = rng.standard_normal((size, DIMENSIONS)).astype(np.float32)
    with TemporaryDirectory(prefix="mnemo-vectors-") as tmp:
        db = sqlite3.connect(Path(tmp) / "vectors.db")
        db.execute("CREATE TABLE v (id INTEGER PRIMARY KEY, user_id INTEGER, vector BLOB)")
        db.execute("CREATE INDEX v_user ON v (user_id, id)")
        db.executemany(
            "INSERT INTO v (user_id, vector) VALUES (?, ?)",
            ((user, row.tobytes()) for row in matrix for user in (1, 2)),
        )
        db.commit()
        timings = []
        for _ in range(max(repeats // 4, 5)):
            started = time.perf_counter()
            blobs = db.execute("SELECT vector FROM v WHERE user_id = 1 ORDER BY id").fetchall()
            loaded = np.frombuffer(b"".join(blob for (blob,) in blobs), dtype=np.float32)
            cosine_top_k(loaded.reshape(-1, DIMENSIONS), query, CANDIDATES)
            timings.append(time.perf_counter() - started)
        db.close()
        results[f"sqlite {size}"] = timings
    return results


async def engine_vector_latency(size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per search of the engine's vector side (`bot.memory.vectors.VectorRecall`:
    the scope's version read, the cached matrix, cosine top-24 outside the window, the
    neighbours) over one heavy user's `size` messages with vectors in a SQLite file; and the
    first search, which reads the matrix from the blobs."""
    from bot.memory.vectors import VectorRecall

    rng = np.random.default_rng(23)
    timings: dict[str, list[float]] = {"cold": [], "cached": []}
    with TemporaryDirectory(prefix="mnemo-vectors-") as tmp:
        storage = await Storage.open(Path(tmp) / "heavy.db")
        try:
            key = SessionKey(4242, 77, 5)
            first = await storage.messages.add(
                key, role="user", content="hello there", tokens=2, discord_id=None, now=1.0
            )
            assert first is not None
            words = ["plan", "trip", "code", "cake", "run", "book", "train", "garden", "work"]
            rows = [
                (
                    first.session_id,
                    4242,
                    77,
                    5,
                    "user" if n % 2 else "assistant",
                    " ".join(rng.choice(words, 12)),
                    12,
                    2.0 + n,
                )
                for n in range(size - 1)
            ]
            async with storage.db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO messages (session_id, guild_id, channel_id, user_id, role,"
                    " content, tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            stored = await storage.db.fetch_all(
                "SELECT id, content FROM messages WHERE user_id = 5 ORDER BY id"
            )
            matrix = rng.standard_normal((len(stored), DIMENSIONS)).astype("<f4")
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            await storage.vectors.save(
                MODEL,
                [
                    (ToEmbed(int(row[0]), str(row[1])), vector.tobytes())
                    for row, vector in zip(stored, matrix, strict=True)
                ],
            )
            query = rng.standard_normal(DIMENSIONS).astype(np.float32)
            newest = int(stored[-1][0])
            for _ in range(max(repeats // 10, 3)):
                cold = VectorRecall(storage, None, MODEL, timeout=1.0)  # type: ignore[arg-type]
                started = time.perf_counter()
                await cold.nearest(
                    5,
                    4242,
                    query,
                    exclude_session_id=first.session_id,
                    exclude_from_id=newest - 40,
                    limit=CANDIDATES,
                )
                timings["cold"].append(time.perf_counter() - started)
            warm = VectorRecall(storage, None, MODEL, timeout=1.0)  # type: ignore[arg-type]
            for _ in range(repeats):
                started = time.perf_counter()
                await warm.nearest(
                    5,
                    4242,
                    query,
                    exclude_session_id=first.session_id,
                    exclude_from_id=newest - 40,
                    limit=CANDIDATES,
                )
                timings["cached"].append(time.perf_counter() - started)
        finally:
            await storage.close()
    return timings


def p(timings: Sequence[float], fraction: float) -> float:
    """A percentile in milliseconds."""
    return percentile(timings, fraction) * 1000
