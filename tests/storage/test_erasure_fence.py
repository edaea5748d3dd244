"""The erasure fence on real SQLite files: a write begun before an erasure lands nothing after
it, in every scope, after a restart, and from another connection (another process) too."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Storage
from storage.erasures import ErasedMeanwhile
from storage.models import NewFact, SessionKey
from tests.helpers.storage import next_discord_id

pytestmark = pytest.mark.both_backends

ALICE_HERE = SessionKey(guild_id=100, channel_id=10, user_id=1)
ALICE_THERE = SessionKey(guild_id=100, channel_id=11, user_id=1)
ALICE_ELSEWHERE = SessionKey(guild_id=200, channel_id=20, user_id=1)
ALICE_DM = SessionKey(guild_id=None, channel_id=30, user_id=1)
BOB_HERE = SessionKey(guild_id=100, channel_id=10, user_id=2)
ALL = (ALICE_HERE, ALICE_THERE, ALICE_ELSEWHERE, ALICE_DM, BOB_HERE)


async def add(storage: Storage, key: SessionKey, text: str, fence: int, role: str = "user"):
    return await storage.messages.add(
        key,
        role=role,  # type: ignore[arg-type]
        content=text,
        tokens=3,
        discord_id=next_discord_id() if role == "user" else None,
        now=1.0,
        fence=fence,
    )


async def fences(storage: Storage) -> dict[SessionKey, int]:
    return {key: await storage.erasures.fence(key) for key in ALL}


async def contents(storage: Storage, user_id: int) -> list[str]:
    return [m["content"] for m in (await storage.users.export(user_id))["messages"]]


@pytest.mark.parametrize(
    ("erase", "fenced"),
    [
        ("everywhere", {ALICE_HERE, ALICE_THERE, ALICE_ELSEWHERE, ALICE_DM}),
        ("server", {ALICE_HERE, ALICE_THERE}),
        ("channel", {ALICE_HERE}),
    ],
)
async def test_a_stale_fence_lands_nothing_in_its_scope_only(
    storage: Storage, erase: str, fenced: set[SessionKey]
) -> None:
    for key in ALL:
        await add(storage, key, f"before {key.channel_id}", await storage.erasures.fence(key))
    read_before = await fences(storage)
    if erase == "everywhere":
        await storage.users.delete_user_data(1)
    elif erase == "server":
        await storage.users.delete_member_in_guild(1, 100)
    else:
        await storage.users.clear_session(10, 1)

    for key in ALL:
        if key in fenced:
            with pytest.raises(ErasedMeanwhile):
                await add(storage, key, "MARKER-late", read_before[key], role="assistant")
            assert await storage.sessions.find(key.channel_id, key.user_id) is None
        else:  # other scopes and other users are untouched by this erasure
            assert await add(storage, key, "after", read_before[key]) is not None
    assert "MARKER-late" not in str(await contents(storage, 1))
    # Work begun after the erasure carries the new fence and is stored as usual.
    for key in fenced:
        assert await add(storage, key, "fresh start", await storage.erasures.fence(key))


async def test_an_arriving_message_reads_its_fence_and_its_authors_pause_at_once(
    storage: Storage,
) -> None:
    await storage.users.delete_member_in_guild(1, 100)  # a fence above zero in that server
    await storage.guild_settings.set_paused(2, True, now=1.0)
    for key in ALL:
        fence, paused = await storage.erasures.fence_and_pause(key)
        assert fence == await storage.erasures.fence(key)
        assert paused == (key.user_id == 2)
    assert (await storage.erasures.fence_and_pause(ALICE_HERE))[0] > 0


async def test_a_stale_fence_lands_no_summary_and_no_facts(storage: Storage) -> None:
    stored = await add(storage, ALICE_HERE, "I live in MARKERVILLE", 0)
    assert stored is not None
    session = await storage.sessions.get(stored.session_id)
    assert session is not None and session.fence == 0
    await storage.users.delete_user_data(1)
    # Even a session recreated meanwhile under the same id would not take stale results:
    # the fence of the session read before the erasure no longer matches.
    fresh = await add(storage, ALICE_HERE, "hello again", await storage.erasures.fence(ALICE_HERE))
    assert fresh is not None
    assert not await storage.sessions.save_summary(
        fresh.session_id,
        expected_through=0,
        new_through=fresh.id,
        summary="MARKERVILLE summary",
        tokens=3,
        now=2.0,
        fence=session.fence,
    )
    assert not await storage.facts.save_extraction(
        fresh.session_id,
        user_id=1,
        space_id=100,
        expected_through=0,
        new_through=fresh.id,
        facts=[NewFact("city", "hello", 2, (fresh,))],
        now=2.0,
        fence=session.fence,
    )
    current = await storage.sessions.get(fresh.session_id)
    assert current is not None and current.summary == "" and current.facts_through == 0
    assert await storage.facts.current(1, 100) == []
    # With the session's current fence the same writes land.
    assert await storage.sessions.save_summary(
        fresh.session_id,
        expected_through=0,
        new_through=fresh.id,
        summary="a summary",
        tokens=3,
        now=2.0,
        fence=current.fence,
    )


async def test_the_fence_holds_across_a_restart_and_another_process(db_path: Path) -> None:
    first = await Storage.open(db_path)
    other = await Storage.open(db_path)  # another process on the same file
    try:
        fence = await first.erasures.fence(ALICE_HERE)
        await add(first, ALICE_HERE, "MARKER-said", fence)
        await other.users.delete_user_data(1)
        with pytest.raises(ErasedMeanwhile):
            await add(first, ALICE_HERE, "MARKER-answer", fence, role="assistant")
    finally:
        await first.close()
    restarted = await Storage.open(db_path)
    try:
        with pytest.raises(ErasedMeanwhile):
            await add(restarted, ALICE_HERE, "MARKER-after restart", fence)
        assert await contents(restarted, 1) == []
        assert await contents(other, 1) == []
    finally:
        await restarted.close()
        await other.close()


async def _queued(storage: Storage) -> set[SessionKey]:
    left = await storage.queued.left_behind(since=0.0, before=10.0)
    return {SessionKey(m.guild_id, m.channel_id, m.user_id) for m in left}


async def test_an_erasure_drops_the_messages_waiting_in_its_scope(storage: Storage) -> None:
    """A message waiting for its turn when its process died is answered after a restart,
    unless an erasure covering it came first (it would have been dropped, not stored)."""
    for key in ALL:
        await storage.queued.add(key, next_discord_id(), fence=0, now=1.0)
    await storage.users.clear_session(ALICE_HERE.channel_id, ALICE_HERE.user_id)
    assert await _queued(storage) == set(ALL) - {ALICE_HERE}
    await storage.users.delete_member_in_guild(1, 100)
    assert await _queued(storage) == {ALICE_ELSEWHERE, ALICE_DM, BOB_HERE}
    await storage.users.delete_user_data(1)
    assert await _queued(storage) == {BOB_HERE}


async def test_a_waiting_message_leaves_the_queue_when_it_is_stored(storage: Storage) -> None:
    waiting, other = next_discord_id(), next_discord_id()
    await storage.queued.add(ALICE_HERE, waiting, fence=0, now=1.0)
    await storage.queued.add(BOB_HERE, other, fence=0, now=1.0)
    await storage.messages.add(
        ALICE_HERE, role="user", content="my turn", tokens=2, discord_id=waiting, now=2.0, fence=0
    )
    assert await _queued(storage) == {BOB_HERE}  # the other still waits


async def test_queued_messages_too_old_to_answer_are_dropped(storage: Storage) -> None:
    await storage.queued.add(ALICE_HERE, 1, fence=0, now=100.0)
    await storage.queued.add(ALICE_THERE, 2, fence=0, now=200.0)
    await storage.queued.add(BOB_HERE, 3, fence=0, now=300.0)  # arrived after this process started
    left = await storage.queued.left_behind(since=150.0, before=250.0)
    assert [m.discord_id for m in left] == [2]
    assert [m.discord_id for m in await storage.queued.left_behind(since=0, before=1e9)] == [2, 3]
