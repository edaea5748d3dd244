"""Recall on the engine's side: what to search for, which hits to keep, what to quote.

The word search itself is one indexed statement in `storage.recall`. Here: the query terms (the
new message, and the previous turn when the new message says too little on its own), the
collapse of near-duplicates, the excerpt of each hit around its matching words, and the last
recall of each conversation, kept in memory for `/memory why` and dropped by every erasure.

With EMBEDDING_MODEL (`bot.memory.vectors`), hybrid recall: the query's vector is asked for
beside the word search (bounded by EMBEDDING_TIMEOUT_SECONDS; without it, words alone), the
nearest messages in meaning are fused with the word hits by reciprocal rank
(`bot.memory.hybrid`), the period a question names ("last week", "in May") is a ranking of its
own and weighs double (recency weighs in through the word ranking), then the collapse of
near-duplicates as for words, and last
the turns around each hit (the question it answered, the answer it got), which the recall
budget takes while they fit.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.memory.hybrid import Period, parse_time_phrase, rrf_fuse, utc, weight_period
from bot.memory.hybrid import with_neighbours as around_hits
from bot.memory.vectors import Nearest, VectorRecall
from storage.models import Session, StoredMessage
from storage.recall import RecallHit, RecallRepository, query_terms, split_words

MIN_OWN_TERMS = 3
"""A new message with fewer search terms than this ("when was that?") borrows the previous
turn's terms, so a follow-up question still finds what it follows up on."""

DUPLICATE_OVERLAP = 0.8
"""Two hits whose word sets overlap this much (Jaccard) say the same thing: keep the better."""

EXCERPT_CHARS = 480
"""At most this much of a long message is quoted, centred on its first matching word."""

RECALL_HITS = 12
"""Hits read per turn; the prompt keeps those that fit RECALL_MAX_TOKENS."""

HYBRID_CANDIDATES = 24
"""Hybrid recall: word hits and vector hits read for fusion, and fused hits kept before their
neighbours (benchmark 9 measured 24 better than 12: the budget takes what fits anyway)."""

REMEMBERED_SESSIONS = 10_000
"""The last recall is kept for this many conversations (least recently answered dropped)."""


@dataclass(frozen=True, slots=True)
class RecalledExcerpt:
    """One recalled message as it enters the prompt (and as `/memory why` shows it)."""

    message_id: int
    discord_id: int | None
    role: str
    created_at: float
    text: str
    place_id: int = 0  # where it was said (StoredMessage.place): /memory why shows it only there


class RecallRoom(Protocol):
    """What recall needs to know of the prompt being built (a `PromptBuilder`)."""

    @property
    def recall_budget(self) -> int: ...

    def window_holds(self, newest_first: Sequence[StoredMessage]) -> int: ...


async def recall_for(
    repository: RecallRepository,
    session: Session,
    new_message: StoredMessage,
    newest_first: Sequence[StoredMessage],
    builder: RecallRoom,
    now: float,
    places: Collection[int] | None = None,
    *,
    vectors: VectorRecall | None = None,
) -> list[RecalledExcerpt]:
    """The stored messages of this user in this space that best match the new message,
    best first, leaving out the ones the window will hold (and the new message itself);
    with `places`, of those said in these places only (the audience rule), by words and by
    meaning alike. With `vectors`: hybrid recall (see the module's docstring)."""
    if builder.recall_budget <= 0:
        return []
    terms = search_terms(new_message.content, newest_first)
    if not terms and vectors is None:
        return []
    in_window = builder.window_holds(newest_first)
    start = newest_first[in_window - 1].id if in_window else new_message.id
    space = session.key.space_id

    async def words(limit: int) -> list[RecallHit]:
        if not terms:
            return []
        return await repository.search(
            session.user_id,
            space,
            terms,
            exclude_session_id=session.id,
            exclude_from_id=start,
            excluded_count=in_window + 1,
            now=now,
            limit=limit,
            places=places,
        )

    if vectors is None:
        return excerpts(collapse_duplicates(await words(RECALL_HITS)), terms)
    word_hits, query = await asyncio.gather(
        words(HYBRID_CANDIDATES), vectors.query_vector(vector_text(new_message, newest_first))
    )
    if query is None:  # the embeddings server failed or was slow: words only
        return excerpts(collapse_duplicates(word_hits[:RECALL_HITS]), terms)
    named = parse_time_phrase(new_message.content, utc(now))
    period = named if isinstance(named, Period) else None
    near = await vectors.nearest(
        session.user_id,
        space,
        query,
        exclude_session_id=session.id,
        exclude_from_id=start,
        limit=HYBRID_CANDIDATES,
        period=period,
        also=[hit.message.id for hit in word_hits],
        places=places,
    )
    return excerpts(await fuse(word_hits, near, vectors, period), terms)


async def fuse(
    word_hits: Sequence[RecallHit],
    near: Nearest,
    vectors: VectorRecall,
    period: Period | None,
) -> list[RecallHit]:
    """Word hits and vector hits fused by reciprocal rank (the period's vector hits a third
    ranking, and the period's hits weighed double); then the neighbours of the hits, for the
    budget to take; the near-duplicates of it all collapsed. Age weighs in through the word ranking
    (bm25 weighed by recency): weighing the fused scores by age again lost evidence in
    benchmark 9 (harder questions, any evidence: 75 % against 81 % without)."""
    created = {hit.message.id: hit.message.created_at for hit in word_hits} | near.created_at
    rankings = [[hit.message.id for hit in word_hits], near.ranked]
    if period is not None:
        rankings.append(near.in_period)
    fused = rrf_fuse(*rankings)
    if period is not None:
        fused = weight_period(fused, lambda item: created[item], period)
    best = [item for item, _ in fused[:HYBRID_CANDIDATES]]
    wanted = around_hits(best, lambda item: near.neighbours.get(item, []))
    known = {hit.message.id: hit.message for hit in word_hits}
    known |= await vectors.messages([item for item in wanted if item not in known])
    score = dict(fused)
    # Collapsed last, the neighbours too: many are the same short turn ("noted, thanks").
    return collapse_duplicates(
        [RecallHit(known[item], score.get(item, 0.0)) for item in wanted if item in known]
    )


def vector_text(new_message: StoredMessage, newest_first: Sequence[StoredMessage]) -> str:
    """What the query's vector is of: the new message, with the previous turn before it when
    it has no word of its own to search for ("when was that?"). A sentence's vector holds its
    meaning with few words ("my sister's wedding?"), and the turn before would blur it: the
    words' rule (fewer than MIN_OWN_TERMS) lost a fifth of the paraphrases in benchmark 9."""
    if query_terms(new_message.content):
        return new_message.content
    previous = [message.content for message in reversed(newest_first[:2])]
    return "\n".join([*previous, new_message.content])


def search_terms(new_text: str, newest_first: Sequence[StoredMessage]) -> list[str]:
    """The new message's terms; too few, and the previous turn's terms are added."""
    terms = query_terms(new_text)
    if len(terms) >= MIN_OWN_TERMS:
        return terms
    previous = " ".join(message.content for message in newest_first[:2])
    extra = [term for term in query_terms(previous) if term not in terms]
    return (terms + extra)[: max(len(terms), MIN_OWN_TERMS * 3)]


def collapse_duplicates(hits: Sequence[RecallHit]) -> list[RecallHit]:
    """Best first, dropping each hit that nearly repeats a better one."""
    kept: list[tuple[RecallHit, frozenset[str]]] = []
    for hit in hits:
        these = frozenset(split_words(hit.message.content))
        if any(near_duplicates(these, other) for _, other in kept):
            continue
        kept.append((hit, these))
    return [hit for hit, _ in kept]


def near_duplicates(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether the word sets overlap at least DUPLICATE_OVERLAP (Jaccard)."""
    smaller, larger = sorted((len(a), len(b)))
    if not larger:
        return True
    # The overlap is at most smaller / larger: most pairs are decided by their sizes alone.
    if smaller < DUPLICATE_OVERLAP * larger:
        return False
    shared = len(a & b)
    return shared >= DUPLICATE_OVERLAP * (len(a) + len(b) - shared)


def excerpt(text: str, terms: Sequence[str], limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line; if longer than `limit`, the part around its first matching word."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    folded = flat.casefold()
    positions = [match.start() for term in terms if (match := _word_at(folded, term))]
    first = min(positions, default=0)
    start = max(first - limit // 3, 0)
    if start:
        start = flat.find(" ", start) + 1 or start  # begin at a word
    end = min(start + limit, len(flat))
    cut = flat[start:end]
    return ("… " if start else "") + cut + (" …" if end < len(flat) else "")


def _word_at(folded: str, term: str) -> re.Match[str] | None:
    return re.search(rf"(?<![^\W_]){re.escape(term)}(?![^\W_])", folded)


def excerpts(hits: Sequence[RecallHit], terms: Sequence[str]) -> list[RecalledExcerpt]:
    return [
        RecalledExcerpt(
            hit.message.id,
            hit.message.discord_id,
            hit.message.role,
            hit.message.created_at,
            excerpt(hit.message.content, terms),
            hit.message.place,
        )
        for hit in hits
    ]


@dataclass(frozen=True, slots=True)
class LastRecall:
    excerpts: tuple[RecalledExcerpt, ...]
    tokens: int


class RecallLog:
    """The last recall of each conversation (channel, user), in memory only.

    It holds text of the user's messages, so every erasure drops what it covers: a
    conversation, a user, a deleted message, and everything after a retention pass.
    """

    def __init__(self, capacity: int = REMEMBERED_SESSIONS) -> None:
        self._capacity = capacity
        self._last: OrderedDict[tuple[int, int], LastRecall] = OrderedDict()

    def record(self, channel_id: int, user_id: int, recall: LastRecall) -> None:
        key = (channel_id, user_id)
        self._last[key] = recall
        self._last.move_to_end(key)
        while len(self._last) > self._capacity:
            self._last.popitem(last=False)

    def get(self, channel_id: int, user_id: int) -> LastRecall | None:
        return self._last.get((channel_id, user_id))

    def forget_conversation(self, channel_id: int, user_id: int) -> None:
        self._last.pop((channel_id, user_id), None)

    def forget_user(self, user_id: int) -> None:
        for key in [key for key in self._last if key[1] == user_id]:
            del self._last[key]

    def forget_message(self, discord_id: int) -> None:
        for key, recall in list(self._last.items()):
            if any(item.discord_id == discord_id for item in recall.excerpts):
                del self._last[key]

    def clear(self) -> None:
        self._last.clear()
