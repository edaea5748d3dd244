"""A user's data in every table that can hold it, for the deletion and export tests
(tests/storage/test_user_data.py, tests/storage/test_erasure_files.py)."""

from __future__ import annotations

from storage import Storage
from storage.models import NewFact, SessionKey
from storage.vectors import ToEmbed
from tests.helpers.storage import index_word

ALICE = 1
BOB = 2
GUILD_A = 100
GUILD_B = 200


async def fill_user(storage: Storage, user_id: int, marker: str) -> None:
    """Put the user's marker text in every table that can hold user data."""
    places = [
        SessionKey(GUILD_A, 10, user_id),
        SessionKey(GUILD_A, 11, user_id),
        SessionKey(GUILD_B, 20, user_id),
        SessionKey(None, 30 + user_id, user_id),
    ]
    for index, key in enumerate(places):
        discord_id = user_id * 1000 + index
        stored = await storage.messages.add(
            key,
            role="user",
            content=f"{marker} said {index} {index_word(marker)}",
            tokens=5,
            discord_id=discord_id,
            now=1.0,
        )
        await storage.messages.add(
            key,
            role="assistant",
            content=f"reply about {marker}",
            tokens=5,
            discord_id=None,
            now=1.0,
        )
        await storage.queued.add(
            key, discord_id + 500, fence=0, now=1.0
        )  # a follow-up waiting its turn
        assert stored is not None
        # Its vector (hybrid recall): float32 bytes that spell the marker, to be found in files.
        await storage.vectors.save(
            "test-model", [(ToEmbed(stored.id, stored.content), vector_of(marker))]
        )
        await storage.sessions.save_summary(
            stored.session_id,
            expected_through=0,
            new_through=stored.id,
            summary=f"summary of {marker}",
            tokens=3,
            now=2.0,
        )
        await storage.facts.save_extraction(
            stored.session_id,
            user_id=user_id,
            space_id=key.space_id,
            expected_through=0,
            new_through=stored.id,
            facts=[NewFact("nickname", f"{marker}-{index}", 3, (stored,))],
            now=3.0,
        )
        await storage.usage.add("2026-01-01", user_id=user_id, guild_id=key.guild_id, tokens=7)
    await storage.fleet.count_message(user_id, window_start=60.0)


def vector_of(marker: str) -> bytes:
    """A stored vector whose bytes hold `marker` (padded to whole float32s)."""
    raw = marker.encode()
    return raw + b"\0" * (-len(raw) % 4)
