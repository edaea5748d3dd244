"""An erasure racing a fenced first message, on two real PostgreSQL connections.

Under READ COMMITTED, a writer that read the fence and then created a new session could miss an
erasure committing in between (write skew): the first message in a new channel survived it.
Fenced writers that may create rows and erasures now conflict on a per-user advisory lock."""

from __future__ import annotations

import asyncio

import pytest

import storage.messages as messages_module
from storage import Storage
from storage.erasures import ErasedMeanwhile
from storage.models import SessionKey

pytestmark = pytest.mark.both_backends

NEW_CHANNEL = SessionKey(guild_id=100, channel_id=77, user_id=1)


async def _erasure_blocked_or_done(storage: Storage, erasure: asyncio.Task[object]) -> None:
    """Wait until the erasure finished, or waits on a lock another connection holds."""
    while not erasure.done():
        row = await storage.db.fetch_one(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        assert row is not None
        if int(row[0]) > 0:
            return
        await asyncio.sleep(0)  # yield to the erasure's connection, then look again


@pytest.mark.postgres_only  # SQLite runs write transactions one at a time
async def test_a_first_message_in_a_new_channel_does_not_survive_a_concurrent_erasure(
    storage: Storage, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fence = await storage.erasures.fence(NEW_CHANNEL)
    fence_read, go_on = asyncio.Event(), asyncio.Event()
    real_fence_in = messages_module.fence_in

    async def paused_fence_in(tx, key):  # type: ignore[no-untyped-def]
        current = await real_fence_in(tx, key)
        fence_read.set()
        await go_on.wait()
        return current

    monkeypatch.setattr(messages_module, "fence_in", paused_fence_in)
    write = asyncio.create_task(
        storage.messages.add(
            NEW_CHANNEL,
            role="user",
            content="first words",
            tokens=2,
            discord_id=1,
            now=1.0,
            fence=fence,
        )
    )
    await fence_read.wait()  # the writer has checked the fence, in its open transaction
    erasure = asyncio.create_task(storage.users.delete_user_data(1))
    await _erasure_blocked_or_done(storage, erasure)
    go_on.set()
    await write  # it held the lock first: it lands, and the erasure then deletes it
    await erasure
    exported = await storage.users.export(1)
    assert exported["messages"] == []


@pytest.mark.postgres_only
async def test_a_fenced_insert_refused_by_the_foreign_key_is_erased_meanwhile(
    storage: Storage, database_url: str
) -> None:
    import asyncpg

    fence = await storage.erasures.fence(NEW_CHANNEL)
    await storage.messages.add(
        NEW_CHANNEL, role="user", content="hello", tokens=1, discord_id=2, now=1.0, fence=fence
    )
    eraser = await asyncpg.connect(database_url)
    try:
        erasing = eraser.transaction()
        await erasing.start()  # an erasure on another connection, deleting, not yet committed
        await eraser.execute("DELETE FROM messages WHERE user_id = 1")
        await eraser.execute("DELETE FROM sessions WHERE user_id = 1")
        write = asyncio.create_task(
            storage.messages.add(
                NEW_CHANNEL,
                role="user",
                content="late",
                tokens=1,
                discord_id=3,
                now=2.0,
                fence=fence,
            )
        )
        while not write.done():  # until the insert's foreign-key check waits on the erasure
            row = await storage.db.fetch_one(  # this test's database only: workers share the server
                "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            )
            assert row is not None
            if int(row[0]) > 0:
                break
            await asyncio.sleep(0)
        await erasing.commit()
        with pytest.raises(ErasedMeanwhile):
            await write
    finally:
        await eraser.close()
    assert (await storage.users.export(1))["messages"] == []
