"""Hybrid recall's vectors: embedding stored messages in the background, the query's vector on
the reply path, and the nearest messages of one user in one space.

Only with EMBEDDING_MODEL set: without it nothing here is made, numpy is never imported, no
embeddings call is sent and no vector is written.

* `Embedder`: the background job of one conversation: its messages without a vector of the
  current model, in batches of `EMBED_BATCH`, through the scheduler's background rules
  (replies first), retried by the background jobs. A message is recalled by its words until
  its vector is in; an edited one is embedded again (the edit dropped its vector), and after a
  change of EMBEDDING_MODEL every message is embedded again, the old model's vectors never
  searched.
* `VectorRecall`: the query's vector (one call, bounded by EMBEDDING_TIMEOUT_SECONDS: past it,
  or failing, None, and recall is by words alone), and the search: brute-force cosine over the
  scope's matrix (`bot.memory.hybrid.cosine_top_k`), the window left out, kept in memory per
  scope (a bounded LRU of `CACHED_SCOPES`). Every search first reads the scope's version (count
  and newest id of its vectors, one indexed read), so a write or an erasure by any process of
  a fleet is seen at once; erasures here drop the cached matrices they cover too.

The search takes the scope the word search takes (user, space, the window to leave out), so a
filter on the scope applies to both.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.memory.hybrid import Period, adjacent, cosine_top_k, in_period
from bot.model.llm import LLMClient, LLMError
from bot.runtime.background import RetryableJobError
from storage import Storage
from storage.models import StoredMessage
from storage.vectors import ScopeVersion, ToEmbed

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

EMBED_BATCH = 64
"""Messages per /v1/embeddings request in the background."""

MAX_BATCHES_PER_RUN = 20
"""A job embeds at most this many batches, then lets other work run (it is scheduled again)."""

EMBED_CHARS = 2000
"""Of a long message, the first this many characters are embedded (servers cut or refuse long
inputs: llama.cpp's default batch is 512 tokens, nomic-embed-text's context 2048)."""

CACHED_SCOPES = 64
"""Scopes (user, space) whose matrix is kept in memory: 20,000 messages of 384 dimensions are
31 MB, a typical user's few hundred well under 1 MB."""


def to_blob(vector: Sequence[float]) -> bytes:
    """A vector as stored: little-endian float32, unit length (cosine is then a dot product)."""
    import numpy as np

    array = np.asarray(vector, dtype="<f4")
    norm = float(np.linalg.norm(array))
    return (array / norm if norm > 0 else array).astype("<f4").tobytes()


def embed_text(text: str) -> str:
    return " ".join(text.split())[:EMBED_CHARS] or "."


class Embedder:
    """The background job that embeds one conversation's messages."""

    kind = "embed"

    def __init__(self, storage: Storage, llm: LLMClient, model: str) -> None:
        self._storage = storage
        self._llm = llm
        self.model = model

    async def run(self, session_id: int) -> bool:
        """Embed the session's messages that lack a vector; True when some are left."""
        for _ in range(MAX_BATCHES_PER_RUN):
            batch = await self._storage.vectors.missing(session_id, self.model, limit=EMBED_BATCH)
            if not batch:
                return False
            vectors = await self._embed(batch)
            await self._storage.vectors.save(
                self.model, [(item, to_blob(v)) for item, v in zip(batch, vectors, strict=True)]
            )
        return True

    async def _embed(self, batch: Sequence[ToEmbed]) -> list[list[float]]:
        try:
            return await self._llm.embed_background(
                self.model, [embed_text(item.content) for item in batch]
            )
        except LLMError as error:
            raise RetryableJobError(f"embeddings call failed: {error}") from error


@dataclass(slots=True)
class _Scope:
    version: ScopeVersion
    matrix: NDArray[np.float32]
    message_ids: NDArray[np.int64]
    session_ids: NDArray[np.int64]
    created_at: NDArray[np.float64]
    row_of: dict[int, int]
    place_ids: NDArray[np.int64]  # where each was said: the audience rule's filter


@dataclass(frozen=True, slots=True)
class Nearest:
    """The vector side of one recall: message ids best first, and what fusion needs."""

    ranked: list[int]
    in_period: list[int]
    """The best within the period the question names (empty without one)."""
    created_at: dict[int, float]
    neighbours: dict[int, list[int]]
    """For each message of the scope found, the turns before and after it in its
    conversation, outside the window (nearest first), as far as they have vectors."""


class VectorRecall:
    """The query's vector and the nearest messages of a scope, over cached matrices."""

    def __init__(
        self,
        storage: Storage,
        llm: LLMClient,
        model: str,
        *,
        timeout: float,
        capacity: int = CACHED_SCOPES,
    ) -> None:
        self._storage = storage
        self._llm = llm
        self.model = model
        self._timeout = timeout
        self._capacity = capacity
        self._scopes: OrderedDict[tuple[int, int], _Scope] = OrderedDict()
        self.skipped = 0
        """Queries whose vector failed or came too late (recall went by words alone)."""

    async def query_vector(self, text: str) -> NDArray[np.float32] | None:
        """The vector of `text`, or None when the server fails or is slower than the timeout."""
        import numpy as np

        try:
            async with asyncio.timeout(self._timeout):
                vectors = await self._llm.embed(
                    self.model, [embed_text(text)], within=self._timeout
                )
        except (TimeoutError, LLMError) as error:
            self.skipped += 1
            log.info("Query vector skipped (recall by words only): %s", error)
            return None
        return np.asarray(vectors[0], dtype=np.float32)

    async def nearest(
        self,
        user_id: int,
        space_id: int,
        query: NDArray[np.float32],
        *,
        exclude_session_id: int,
        exclude_from_id: int,
        limit: int,
        period: Period | None = None,
        also: Sequence[int] = (),
        places: Collection[int] | None = None,
    ) -> Nearest:
        """The scope's messages closest in meaning to `query`, best first, leaving out the
        messages of session `exclude_session_id` from `exclude_from_id` on (the window, the
        new message), as the word search does; the neighbours of those and of `also` (the
        word hits). With `places`, only messages said in those places (the audience rule),
        as the word search."""
        import numpy as np

        scope = await self._scope(user_id, space_id)
        if scope is None:
            return Nearest([], [], {}, {})
        ids = scope.message_ids
        allowed = ~((scope.session_ids == exclude_session_id) & (ids >= exclude_from_id))
        if places is not None:
            allowed &= np.isin(scope.place_ids, np.fromiter(places, dtype=np.int64))
        ranked = [
            int(ids[row]) for row, _ in cosine_top_k(scope.matrix, query, limit, allowed=allowed)
        ]
        within: list[int] = []
        if period is not None:
            mask = allowed & in_period(scope.created_at, period)
            found = cosine_top_k(scope.matrix, query, limit, allowed=mask)
            within = [int(ids[row]) for row, _ in found]
        neighbours: dict[int, list[int]] = {}
        for message_id in dict.fromkeys([*ranked, *within, *also]):
            row = scope.row_of.get(message_id)
            if row is None:  # a word hit not embedded yet
                continue
            neighbours[message_id] = [
                int(ids[other])
                for other in adjacent(range(len(ids)), row)
                if allowed[other] and scope.session_ids[other] == scope.session_ids[row]
            ]
        known = set(neighbours) | {n for near in neighbours.values() for n in near}
        created = {m: float(scope.created_at[scope.row_of[m]]) for m in known}
        return Nearest(ranked, within, created, neighbours)

    async def messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        """The stored messages of these ids (the ones still stored)."""
        return {m.id: m for m in await self._storage.messages.by_ids(list(message_ids))}

    async def _scope(self, user_id: int, space_id: int) -> _Scope | None:
        """The scope's matrix, read again only when its version changed."""
        import numpy as np

        key = (user_id, space_id)
        version = await self._storage.vectors.version(user_id, space_id, self.model)
        cached = self._scopes.get(key)
        if cached is not None and cached.version == version:
            self._scopes.move_to_end(key)
            return cached
        if version[0] == 0:
            self._scopes.pop(key, None)
            return None
        version, rows = await self._storage.vectors.scope(user_id, space_id, self.model)
        if not rows:
            self._scopes.pop(key, None)
            return None
        width = len(rows[0].vector) // 4
        same = [row for row in rows if len(row.vector) == width * 4]  # one model, one width
        matrix = np.frombuffer(b"".join(row.vector for row in same), dtype="<f4")
        message_ids = np.fromiter((row.message_id for row in same), dtype=np.int64)
        scope = _Scope(
            version,
            matrix.reshape(len(same), width).astype(np.float32),
            message_ids,
            np.fromiter((row.session_id for row in same), dtype=np.int64),
            np.fromiter((row.created_at for row in same), dtype=np.float64),
            {int(message_id): index for index, message_id in enumerate(message_ids)},
            np.fromiter((row.place_id for row in same), dtype=np.int64),
        )
        self._scopes[key] = scope
        self._scopes.move_to_end(key)
        while len(self._scopes) > self._capacity:
            self._scopes.popitem(last=False)
        return scope

    # -- erasures: the cached matrices are derived from the users' text too --------------------

    def forget_user(self, user_id: int) -> None:
        for key in [key for key in self._scopes if key[0] == user_id]:
            del self._scopes[key]

    def clear(self) -> None:
        self._scopes.clear()

    @property
    def cached_scopes(self) -> int:
        return len(self._scopes)
