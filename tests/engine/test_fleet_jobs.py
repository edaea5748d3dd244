"""Two engines on one database, as two processes of a fleet: each piece of background work is
done once, and the work of an engine that died is taken over when its lease expires."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM
from tests.helpers.engines import SMALL, Engines, chat
from tests.helpers.llm import is_summary_call, summary_calls

pytestmark = [pytest.mark.both_backends, pytest.mark.slow]

ALICE = SessionKey(guild_id=100, channel_id=10, user_id=1)


async def test_a_summary_is_made_once_when_two_engines_are_due(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    # A server with room for background calls beside replies: none is aborted and rerun.
    first = await engines.start(**SMALL, model_parallel=4)
    second = await engines.start(**SMALL, model_parallel=4)
    release = asyncio.Event()

    async def responder(body: dict[str, Any]) -> str:
        if is_summary_call(body):
            await release.wait()  # hold the first engine's summary call open
            return "the one summary"
        return "ok"

    fake_llm.responder = responder
    await chat(first, ALICE, *[f"message {i} " + "x " * 40 for i in range(6)])
    await fake_llm.wait_for_chat_calls(7)  # 6 replies, then the summary call is in flight
    # The second engine finds the same lagging session (as a sweep or a restart would).
    assert await second._schedule_lagging() == 1
    await second.jobs.idle()  # its attempt found the work claimed and skipped it
    release.set()
    await first.jobs.idle()
    assert len(summary_calls(fake_llm)) == 1
    session = await first.storage.sessions.find(10, 1)
    assert session is not None and session.summary == "the one summary"


async def test_work_of_a_dead_engine_is_taken_over_after_its_lease(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    lease = {"job_lease_seconds": 1.0}
    engine = await engines.start(**SMALL, **lease)
    fake_llm.responder = lambda body: "ok"
    await chat(engine, ALICE, *[f"message {i} " + "x " * 40 for i in range(6)])
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None
    # Another process claimed this summary and died: its lease is in the database.
    await engine.storage.db.write_one("UPDATE sessions SET summary = '', summarized_through = 0")
    dead_until = time.time() + 1.5
    await engine.storage.db.write_one(
        "INSERT INTO leases (name, owner, expires_at) VALUES (?, 'dead-process', ?)",
        (f"summary:{session.id}", dead_until),
    )
    fake_llm.responder = lambda body: "taken over" if is_summary_call(body) else "ok"
    assert await engine._schedule_lagging() == 1
    await engine.jobs.idle()
    session = await engine.storage.sessions.find(10, 1)
    assert session is not None and session.summary == ""  # not while the lease holds
    # The sweep (every JOB_LEASE_SECONDS) picks the work up once the lease has expired.
    deadline = time.monotonic() + 10
    while session.summary != "taken over":
        assert time.monotonic() < deadline, "the lapsed work was never taken over"
        await asyncio.sleep(0.1)
        session = await engine.storage.sessions.find(10, 1)
        assert session is not None
    assert time.time() >= dead_until


async def test_retention_runs_once_a_day_for_the_whole_fleet(engines: Engines) -> None:
    first = await engines.start()
    second = await engines.start()
    day = 24 * 3600
    assert await first.fleet.claim_period("retention", day)
    assert not await second.fleet.claim_period("retention", day)
    assert await first.fleet.claim_period("retention", day)  # its own claim, renewed
