"""bot/memory/hybrid.py: cosine top-k, reciprocal-rank fusion, period weighting, neighbour
turns and time phrases (pure functions, no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from bot.memory.hybrid import (
    DAY,
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

NOW = datetime(2026, 10, 7, 15, 0, tzinfo=UTC)  # a Wednesday


def unit_rows(count: int, dimensions: int = 16, seed: int = 1) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimensions)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


# -- cosine_top_k --------------------------------------------------------------------------------


def test_cosine_top_k_matches_a_full_sort() -> None:
    matrix = unit_rows(500)
    query = np.random.default_rng(2).standard_normal(16).astype(np.float32) * 3.0
    found = cosine_top_k(matrix, query, 10)
    scores = matrix @ (query / np.linalg.norm(query))
    assert [row for row, _ in found] == list(np.argsort(-scores)[:10])
    assert found[0][1] == pytest.approx(float(scores.max()), abs=1e-6)
    assert all(a[1] >= b[1] for a, b in itertools.pairwise(found))


def test_cosine_top_k_respects_the_mask_and_small_sizes() -> None:
    matrix = unit_rows(50)
    query = matrix[7] * 2.0
    assert cosine_top_k(matrix, query, 1)[0][0] == 7
    allowed = np.ones(50, dtype=bool)
    allowed[7] = False
    assert 7 not in [row for row, _ in cosine_top_k(matrix, query, 49, allowed=allowed)]
    assert len(cosine_top_k(matrix, query, 100)) == 50
    assert len(cosine_top_k(matrix, query, 100, allowed=allowed)) == 49
    none = np.zeros(50, dtype=bool)
    assert cosine_top_k(matrix, query, 5, allowed=none) == []
    assert cosine_top_k(matrix, query, 0) == []
    assert cosine_top_k(matrix[:0], query, 5) == []
    assert cosine_top_k(matrix, np.zeros(16, dtype=np.float32), 5) == []


def test_in_period_is_half_open() -> None:
    times = np.array([0.0, 10.0, 20.0, 30.0])
    assert list(in_period(times, Period(10.0, 30.0))) == [False, True, True, False]


# -- fusion ------------------------------------------------------------------------------------


def test_rrf_fuse_adds_reciprocal_ranks() -> None:
    fused = dict(rrf_fuse(["a", "b", "c"], ["c", "d"]))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 62)
    order = [item for item, _ in rrf_fuse(["a", "b", "c"], ["c", "d"])]
    assert order == ["c", "a", "b", "d"]  # b and d tie: b ranks 2nd in the word hits


def test_rrf_fuse_breaks_ties_by_best_rank_then_word_order() -> None:
    # a and x both rank first once: tied; the word ranking's first comes first.
    assert [item for item, _ in rrf_fuse(["a", "b"], ["x", "y"])] == ["a", "x", "b", "y"]
    assert rrf_fuse([], []) == []
    assert [item for item, _ in rrf_fuse([], ["v"])] == ["v"]


def test_rrf_fuse_takes_more_rankings_and_its_constant() -> None:
    fused = dict(rrf_fuse([1], [2], [2, 1], k=0))
    assert fused == {1: pytest.approx(1 + 1 / 2), 2: pytest.approx(1 / 1 + 1 / 1)}
    assert dict(rrf_fuse([1, 1], [])) == {1: pytest.approx(1 / 61)}  # each item once a ranking


def test_weight_period_lifts_the_hits_of_the_period() -> None:
    created = {"old": 5.0, "in": 15.0, "new": 25.0}
    ranked = [("old", 0.03), ("new", 0.02), ("in", 0.016)]
    weighted = weight_period(ranked, created.__getitem__, Period(10.0, 20.0))
    assert weighted == [("in", pytest.approx(0.032)), ("old", 0.03), ("new", 0.02)]


# -- neighbours --------------------------------------------------------------------------------


def test_with_neighbours_puts_hits_first_then_their_neighbours_once() -> None:
    turns = ["u1", "b1", "u2", "b2", "u3", "b3"]
    around = {turn: adjacent(turns, index) for index, turn in enumerate(turns)}
    assert with_neighbours(["b2", "u1"], around.__getitem__) == ["b2", "u1", "u2", "u3", "b1"]
    assert with_neighbours(["b2", "u1", "b3"], around.__getitem__, limit=1) == ["b2", "u2", "u3"]


def test_adjacent_is_nearest_first_within_bounds() -> None:
    items = list(range(10))
    assert adjacent(items, 5) == [4, 6]
    assert adjacent(items, 0) == [1]
    assert adjacent(items, 9) == [8]
    assert adjacent(items, 5, before=2, after=1) == [4, 6, 3]


# -- time phrases ------------------------------------------------------------------------------


def period(text: str) -> Period:
    found = parse_time_phrase(text, NOW)
    assert isinstance(found, Period), (text, found)
    return found


def day(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (
            "What was I doing last month?",
            ["2026-09-01 00:00", "2026-09-30 23:00"],
            ["2026-10-01 01:00"],
        ),
        ("What did I do in May?", ["2026-05-01 00:00", "2026-05-31 12:00"], ["2026-06-01 00:00"]),
        ("what happened in december", ["2025-12-24 12:00"], ["2026-12-24 12:00"]),
        (
            "Which sport did I try two weeks ago?",
            ["2026-09-23 12:00", "2026-09-20 12:00"],
            ["2026-09-30 12:00"],
        ),
        ("a couple of weeks ago", ["2026-09-23 12:00"], ["2026-10-03 12:00"]),
        ("a week ago", ["2026-09-30 12:00"], ["2026-09-20 12:00"]),
        ("a few weeks ago", ["2026-09-15 12:00", "2026-09-25 12:00"], ["2026-10-02 12:00"]),
        ("last week", ["2026-09-28 09:00", "2026-10-04 20:00"], ["2026-09-20 12:00"]),
        ("the week before last", ["2026-09-21 09:00", "2026-09-27 20:00"], ["2026-10-01 12:00"]),
        ("last weekend", ["2026-10-03 12:00", "2026-10-04 20:00"], ["2026-09-27 12:00"]),
        ("yesterday", ["2026-10-06 12:00"], ["2026-10-04 12:00"]),
        ("the day before yesterday", ["2026-10-05 12:00"], ["2026-10-07 09:00"]),
        ("3 days ago", ["2026-10-04 12:00"], ["2026-10-01 12:00"]),
        ("early last month", ["2026-09-03 12:00"], ["2026-09-20 12:00"]),
        ("at the end of last month", ["2026-09-28 12:00"], ["2026-09-10 12:00"]),
        ("at the start of September", ["2026-09-02 12:00"], ["2026-09-20 12:00"]),
        ("in mid-September", ["2026-09-15 12:00"], ["2026-09-02 12:00"]),
        ("on September 12th", ["2026-09-12 12:00"], ["2026-09-20 12:00"]),
        ("on the 12th of Sept.", ["2026-09-12 12:00"], ["2026-09-20 12:00"]),
        ("two months ago", ["2026-08-15 12:00"], ["2026-09-20 12:00"]),
        ("this month", ["2026-10-02 12:00"], ["2026-09-29 12:00"]),
        ("last year", ["2025-06-01 12:00"], ["2026-02-01 12:00"]),
    ],
)
def test_time_phrases_name_their_period(text: str, inside: list[str], outside: list[str]) -> None:
    found = period(text)
    for when in inside:
        assert found.contains(day(when).timestamp()), (text, when, utc(found.start))
    for when in outside:
        assert not found.contains(day(when).timestamp()), (text, when, utc(found.end))


def test_before_and_after_an_event_are_relative() -> None:
    found = parse_time_phrase("What did I have to sort out before my trip?", NOW)
    assert found == Relative("before", "my trip", "before my trip")
    trip = day("2026-09-20 08:00").timestamp()
    window = found.around(trip)
    assert window.contains(trip - 3 * DAY) and not window.contains(trip + 60)
    after = parse_time_phrase("and after the wedding, what did we do?", NOW)
    assert isinstance(after, Relative) and after.direction == "after"
    assert after.event == "the wedding"
    assert after.around(trip).contains(trip + DAY)


@pytest.mark.parametrize(
    "text",
    [
        "May I ask you something?",
        "What is the wifi password at the cabin?",
        "Which restaurant did I book for our anniversary?",
        "I may have told you about it",
        "What did I say about my sister's wedding?",
        "the day before",
    ],
)
def test_questions_without_a_time_name_no_period(text: str) -> None:
    assert parse_time_phrase(text, NOW) is None


def test_the_first_phrase_wins_and_time_zones_decide_the_day() -> None:
    assert period("last week, or was it two weeks ago?").phrase == "last week"
    # Thursday 01:00 in UTC+2 is Wednesday 23:00 in UTC: "yesterday" is Wednesday there and
    # Tuesday in UTC.
    east = datetime(2026, 10, 8, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    wednesday_noon = day("2026-10-07 12:00").timestamp()
    there = parse_time_phrase("yesterday", east)
    here = parse_time_phrase("yesterday", east.astimezone(UTC))
    assert isinstance(there, Period) and isinstance(here, Period)
    assert there.contains(wednesday_noon) and not here.contains(wednesday_noon)
