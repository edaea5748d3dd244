"""Hybrid recall's pure pieces: vector search, rank fusion, neighbour turns, time phrases.

Nothing here does I/O or knows the database: ranked lists go in, ranked lists come out.
Benchmark 9 (`bench/recall_quality.py`, its "hybrid" mode) composes them around today's BM25
search and real MiniLM vectors; the engine and storage are to wire them in (issue 23):

* `cosine_top_k`: brute-force cosine over one user's vectors (a float32 matrix of unit rows),
  optionally within a mask (the scope's rows outside the window, a period).
* `rrf_fuse`: reciprocal-rank fusion of the word hits and the vector hits (and any further
  ranking, such as the vector hits within a period): score = Σ 1 / (k + rank).
* `weight_period`: scores of the hits inside a period multiplied, for questions about a time.
* `with_neighbours`: the hits, then the turns around each (the question a hit answered, the
  answer it got), for a budgeted renderer to take while room is left.
* `parse_time_phrase`: "last month", "in May", "two weeks ago", "before my trip" → a `Period`
  (or a `Relative` one, whose event the caller finds by searching for it).

numpy is imported by `cosine_top_k` and `in_period` only, when first called: it is a test
dependency today (the MiniLM fake), and becomes a runtime one with the wiring.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

K = TypeVar("K", bound=Hashable)

RRF_K = 60
"""The constant of reciprocal-rank fusion (Cormack et al. 2009): rank 1 scores 1/61."""

PERIOD_WEIGHT = 2.0
"""How much more a hit inside the period a question names is worth."""

RELATIVE_DAYS = 14.0
""""Before my trip" covers this many days before the trip (and "after", after it)."""

DAY = 86400.0


# -- vectors -----------------------------------------------------------------------------------


def cosine_top_k(
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    *,
    allowed: NDArray[np.bool_] | None = None,
) -> list[tuple[int, float]]:
    """The `k` rows of `matrix` most similar to `query`, best first, as (row, cosine).

    The rows are unit vectors (OpenAI's, Ollama's and MiniLM's embeddings are; normalise
    others when storing them), so cosine is one matrix-vector product; the query is
    normalised here. Rows where `allowed` is False are never returned. Ties keep row order.
    """
    import numpy as np

    if k <= 0 or len(matrix) == 0:
        return []
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        return []
    scores = matrix @ (query.astype(np.float32) / np.float32(norm))
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
        k = min(k, int(np.count_nonzero(allowed)))
        if k == 0:
            return []
    k = min(k, len(scores))
    candidates = np.argpartition(-scores, k - 1)[:k]
    best = candidates[np.lexsort((candidates, -scores[candidates]))]
    return [(int(row), float(scores[row])) for row in best]


def in_period(created_at: NDArray[np.float64], period: Period) -> NDArray[np.bool_]:
    """Which of these times fall inside `period` (a mask for `cosine_top_k`)."""
    import numpy as np

    return np.asarray((created_at >= period.start) & (created_at < period.end), dtype=np.bool_)


# -- fusion ------------------------------------------------------------------------------------


def rrf_fuse(
    word_hits: Sequence[K], vector_hits: Sequence[K], *more: Sequence[K], k: int = RRF_K
) -> list[tuple[K, float]]:
    """Reciprocal-rank fusion of rankings (best first each): every item scores the sum of
    1 / (k + rank) over the rankings that hold it (rank 1 for the best). Best first; ties go
    to the item ranked better anywhere, then to the word ranking's order."""
    scores: dict[K, float] = {}
    best_rank: dict[K, int] = {}
    for ranking in (word_hits, vector_hits, *more):
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    order = {item: index for index, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], best_rank[pair[0]], order[pair[0]]))


def weight_period(
    ranked: Sequence[tuple[K, float]],
    created_at: Callable[[K], float],
    period: Period,
    weight: float = PERIOD_WEIGHT,
) -> list[tuple[K, float]]:
    """`ranked` (item, score), with the scores of the items said inside `period` multiplied
    by `weight`; best first again (a stable sort: equal scores keep their order)."""
    weighted = [
        (item, score * weight if period.contains(created_at(item)) else score)
        for item, score in ranked
    ]
    return sorted(weighted, key=lambda pair: -pair[1])


# -- neighbours --------------------------------------------------------------------------------


def with_neighbours(
    hits: Sequence[K], neighbours: Callable[[K], Iterable[K]], *, limit: int | None = None
) -> list[K]:
    """The hits (at most `limit`), then the neighbours of each hit in the hits' order, each
    item once.

    Given to a renderer that takes items best first while they fit its budget (as
    `bot.memory.prompt.render_recall` does), the neighbours fill what the hits leave: a hit
    brings the turns around it only when there is room. `neighbours(hit)` gives the turns to
    add, nearest first (typically the previous and the next message of the same
    conversation: the question a user's "yes, the blue one" answered, the answer a question
    got); it may return excluded ones already filtered out.
    """
    chosen = list(dict.fromkeys(hits))[:limit] if limit is not None else list(dict.fromkeys(hits))
    seen = set(chosen)
    extra: list[K] = []
    for hit in chosen:
        for neighbour in neighbours(hit):
            if neighbour not in seen:
                seen.add(neighbour)
                extra.append(neighbour)
    return chosen + extra


def adjacent(items: Sequence[K], index: int, *, before: int = 1, after: int = 1) -> list[K]:
    """The items around `items[index]` in a conversation's order, nearest first, the earlier
    one of each distance first: for `with_neighbours`."""
    found: list[K] = []
    for distance in range(1, max(before, after) + 1):
        if distance <= before and index - distance >= 0:
            found.append(items[index - distance])
        if distance <= after and index + distance < len(items):
            found.append(items[index + distance])
    return found


# -- time phrases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in Unix seconds, and the phrase it was read from."""

    start: float
    end: float
    phrase: str = ""

    def contains(self, when: float) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True, slots=True)
class Relative:
    """A time given by an event ("before my trip"): the caller finds when `event` happened
    (a search for it) and asks `around` for the period."""

    direction: Literal["before", "after"]
    event: str
    phrase: str = ""

    def around(self, when: float, days: float = RELATIVE_DAYS) -> Period:
        if self.direction == "before":
            return Period(when - days * DAY, when, self.phrase)
        return Period(when, when + days * DAY, self.phrase)


TimeRef = Period | Relative

_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "couple": 2,
    "a couple": 2,
    "a couple of": 2,
    "few": 3,
    "a few": 3,
}
# Month names and abbreviations; every pattern below wants a month in context ("in May",
# "early May", "May 3", "the 3rd of May"), so that "may" the verb is never read as one.
_MONTHS = {name.casefold(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.casefold(): number for number, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_MONTH = "(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b\.?"
_COUNT = (
    r"(?P<n>\d+|(?:a\s+)?couple(?:\s+of)?|(?:a\s+)?few|an?|one|two|three|four|five|six"
    r"|seven|eight|nine|ten|eleven|twelve)"
)
_PART = (
    r"(?P<part>early|mid|late|the\s+start\s+of|the\s+beginning\s+of|the\s+end\s+of"
    r"|the\s+middle\s+of)"
)
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\b"
_EVENT = r"(?P<event>(?:my|our|the|his|her|their|we|i|you)\b[^.,;:!?]{1,60})"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("relative", rf"\b(?P<dir>before|after)\s+{_EVENT}"),
        ("day_before_yesterday", r"\bthe\s+day\s+before\s+yesterday\b"),
        ("yesterday", r"\byesterday\b"),
        ("days_ago", rf"\b{_COUNT}\s+days?\s+ago\b"),
        ("week_before_last", r"\bthe\s+week\s+before\s+last\b"),
        ("last_weekend", r"\b(?:last|past)\s+weekend\b"),
        ("last_week", r"\b(?:last|past)\s+week\b"),
        ("this_week", r"\bthis\s+week\b"),
        ("weeks_ago", rf"\b{_COUNT}\s+weeks?\s+ago\b"),
        ("other_week", r"\bthe\s+other\s+week\b"),
        ("part_last_month", rf"\b{_PART}(?:\s+|-)(?:of\s+)?last\s+month\b"),
        ("last_month", r"\b(?:last|past)\s+month\b"),
        ("this_month", r"\b(?:this|earlier\s+this)\s+month\b"),
        ("months_ago", rf"\b{_COUNT}\s+months?\s+ago\b"),
        ("last_year", r"\blast\s+year\b"),
        ("month_day", rf"\b{_MONTH}\s+{_DAY}"),
        ("day_month", rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}"),
        ("part_month", rf"\b{_PART}(?:\s+|-)(?:of\s+)?{_MONTH}"),
        ("in_month", rf"\b(?:in|during|since|over|through(?:out)?)\s+{_MONTH}"),
    )
]


def parse_time_phrase(text: str, now: datetime) -> TimeRef | None:
    """The period the first time phrase of `text` names, read at `now` (an aware datetime:
    its time zone decides where days start), or None when it names none.

    Periods are generous by a day or so on each side, as people are about dates: "two weeks
    ago" is 10 to 18 days ago, "last week" the calendar week before this one and a day on each
    side. A month without a year is the last one not after `now`. "Before/after <event>" gives
    a `Relative`, for the caller to place.
    """
    found: list[tuple[int, str, re.Match[str]]] = []
    for name, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            found.append((match.start(), name, match))
    for _, name, match in sorted(found, key=lambda item: item[0]):
        result = _period(name, match, now)
        if result is not None:
            return result
    return None


def _period(name: str, match: re.Match[str], now: datetime) -> TimeRef | None:
    phrase = " ".join(match.group(0).split())
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    groups = match.groupdict()

    def span(start: datetime, end: datetime, pad_days: float = 0.0) -> Period:
        pad = timedelta(days=pad_days)
        return Period((start - pad).timestamp(), (end + pad).timestamp(), phrase)

    def count() -> int:
        raw = " ".join(groups["n"].casefold().split())
        return int(raw) if raw.isdigit() else _NUMBERS[raw]

    if name == "relative":
        event = groups["event"].strip()
        direction: Literal["before", "after"] = (
            "before" if groups["dir"].casefold() == "before" else "after"
        )
        return Relative(direction, event, phrase)
    if name == "day_before_yesterday":
        return span(today - timedelta(days=2), today - timedelta(days=1), 0.25)
    if name == "yesterday":
        return span(today - timedelta(days=1), today, 0.25)
    if name == "days_ago":
        n = count()
        vague = groups["n"].casefold().strip() in ("few", "a few")
        if vague:
            return span(today - timedelta(days=6), today - timedelta(days=1))
        return span(today - timedelta(days=n), today - timedelta(days=n - 1), 1.0)
    monday = today - timedelta(days=today.weekday())
    if name == "week_before_last":
        return span(monday - timedelta(days=14), monday - timedelta(days=7), 1.0)
    if name == "last_weekend":
        saturday = monday - timedelta(days=2)
        if today.weekday() >= 5:  # said on a weekend: the one before this one
            saturday -= timedelta(days=7)
        return span(saturday, saturday + timedelta(days=2), 0.5)
    if name == "last_week":
        return span(monday - timedelta(days=7), monday, 1.0)
    if name == "this_week":
        return span(monday, now, 0.0)
    if name == "weeks_ago":
        n = count()
        if groups["n"].casefold().strip() in ("few", "a few"):
            return span(now - timedelta(days=28), now - timedelta(days=10))
        return span(now - timedelta(days=7 * n), now - timedelta(days=7 * n), 4.0)
    if name == "other_week":
        return span(now - timedelta(days=21), now - timedelta(days=5))
    first = today.replace(day=1)
    if name in ("last_month", "part_last_month"):
        start = _add_months(first, -1)
        return _part(span, start, first, groups.get("part"))
    if name == "this_month":
        return span(first, now)
    if name == "months_ago":
        start = _add_months(first, -count())
        return span(start, _add_months(start, 1), 3.0)
    if name == "last_year":
        start = first.replace(month=1, year=first.year - 1)
        return span(start, start.replace(year=start.year + 1))
    month = _MONTHS[groups["month"].casefold()]
    start = first.replace(month=month)
    if start > today:
        start = start.replace(year=start.year - 1)
    end = _add_months(start, 1)
    if name in ("month_day", "day_month"):
        day = int(groups["day"])
        if not 1 <= day <= calendar.monthrange(start.year, month)[1]:
            return None
        on = start.replace(day=day)
        return span(on, on + timedelta(days=1), 1.0)
    if name == "part_month":
        return _part(span, start, end, groups["part"])
    return span(start, end)


def _part(
    span: Callable[[datetime, datetime, float], Period],
    start: datetime,
    end: datetime,
    part: str | None,
) -> Period:
    """A month, or its first, middle or last third ("early", "mid", "at the end of")."""
    if not part:
        return span(start, end, 0.0)
    third = (end - start) / 3
    word = " ".join(part.casefold().split())
    if word in ("early", "the start of", "the beginning of"):
        return span(start, start + third, 1.0)
    if word in ("mid", "the middle of"):
        return span(start + third, end - third, 1.0)
    return span(end - third, end, 1.0)


def _add_months(first_of_month: datetime, months: int) -> datetime:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return first_of_month.replace(year=index // 12, month=index % 12 + 1)


def utc(timestamp: float) -> datetime:
    """A Unix time as an aware UTC datetime, for `parse_time_phrase`."""
    return datetime.fromtimestamp(timestamp, tz=UTC)
