"""Leases, login pacing and shared rate counts: what processes of a fleet coordinate through."""

from __future__ import annotations

import pytest

from storage import Storage
from storage.fleet import IDENTIFY_INTERVAL_SECONDS

pytestmark = [pytest.mark.both_backends, pytest.mark.slow]


async def test_a_lease_has_one_owner_until_it_expires(storage: Storage) -> None:
    fleet = storage.fleet
    assert await fleet.claim_lease("summary:1", "a", now=100.0, ttl=30)
    assert not await fleet.claim_lease("summary:1", "b", now=110.0, ttl=30)
    assert await fleet.claim_lease("summary:1", "a", now=120.0, ttl=30)  # renewal
    assert await fleet.lease_holder("summary:1", now=125.0) == "a"
    # "a" died: after its lease ran out, "b" takes over.
    assert await fleet.claim_lease("summary:1", "b", now=151.0, ttl=30)
    assert await fleet.lease_holder("summary:1", now=151.0) == "b"
    assert not await fleet.claim_lease("summary:1", "a", now=152.0, ttl=30)


async def test_a_released_lease_is_free_at_once(storage: Storage) -> None:
    fleet = storage.fleet
    assert await fleet.claim_lease("retention", "a", now=0.0, ttl=3600)
    await fleet.release_lease("retention", "b")  # not b's: nothing happens
    assert not await fleet.claim_lease("retention", "b", now=1.0, ttl=3600)
    await fleet.release_lease("retention", "a")
    assert await fleet.lease_holder("retention", now=2.0) is None
    assert await fleet.claim_lease("retention", "b", now=2.0, ttl=3600)


async def test_identifies_in_one_bucket_are_paced(storage: Storage) -> None:
    fleet = storage.fleet
    assert await fleet.claim_identify(0, now=1000.0) == 0.0
    wait = await fleet.claim_identify(0, now=1001.0)
    assert wait == IDENTIFY_INTERVAL_SECONDS - 1.0
    assert await fleet.claim_identify(1, now=1001.0) == 0.0  # another bucket is free
    assert await fleet.claim_identify(0, now=1000.0 + IDENTIFY_INTERVAL_SECONDS) == 0.0


async def test_message_counts_are_per_user_and_window(storage: Storage) -> None:
    fleet = storage.fleet
    assert [await fleet.count_message(7, window_start=60.0) for _ in range(3)] == [1, 2, 3]
    assert await fleet.count_message(8, window_start=60.0) == 1
    assert await fleet.count_message(7, window_start=120.0) == 1  # a new minute
