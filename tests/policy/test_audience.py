"""The audience rule as a value: which places' memory may be used where."""

from __future__ import annotations

from bot.policy.audience import Audience, places_of

PUBLIC, OTHER_PUBLIC, PRIVATE, PRIVATE_THREAD = 10, 11, 20, 30
SERVER = frozenset({PUBLIC, OTHER_PUBLIC})


def test_a_public_place_uses_public_memory_only() -> None:
    here = Audience(PUBLIC, SERVER)
    assert here.is_public and here.places == SERVER
    assert here.allows(OTHER_PUBLIC) and not here.allows(PRIVATE)


def test_a_private_place_adds_itself_and_nothing_else() -> None:
    for place in (PRIVATE, PRIVATE_THREAD):
        here = Audience(place, SERVER)
        assert not here.is_public and here.places == SERVER | {place}
        assert here.allows(place) and here.allows(PUBLIC)
    assert not Audience(PRIVATE, SERVER).allows(PRIVATE_THREAD)
    assert not Audience(PRIVATE_THREAD, SERVER).allows(PRIVATE)


def test_dms_have_no_filter() -> None:
    assert places_of(None) is None
    assert places_of(Audience(PRIVATE)) == {PRIVATE}  # a place unknown to the cache: itself
