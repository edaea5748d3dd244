"""`/memory why` in a fleet: the recall log is in each process's memory, so an erasure handled
by another process must not leave its excerpts on show. Two engines on one database (one file,
or one PostgreSQL database), as two processes of the fleet; the real SDK on the loopback LLM."""

from __future__ import annotations

import pytest

from storage.models import SessionKey
from tests.fakes.llm_server import FakeLLM
from tests.helpers.engines import Engines, said
from tests.helpers.storage import store, summarize_all

pytestmark = pytest.mark.both_backends

ALICE = 1
ALICE_A = SessionKey(100, 10, ALICE)  # where the old messages were said
ALICE_A_LATER = SessionKey(100, 11, ALICE)  # another channel of the same server


async def test_memory_why_on_another_process_shows_nothing_erased(
    engines: Engines, fake_llm: FakeLLM
) -> None:
    here = await engines.start()
    there = await engines.start()  # another process of the fleet, on the same database
    await store(here.storage, ALICE_A, "my gym locker code is FLEET-WHY-7731")
    await store(here.storage, ALICE_A, "my bike is blue, locker code aside")
    await summarize_all(here.storage, ALICE_A)
    await here.reply(said(ALICE_A_LATER, "what was my gym locker code again?"))
    assert "FLEET-WHY-7731" in fake_llm.prompt_texts()[-1]
    last = await here.last_recall(ALICE_A_LATER)
    assert last is not None and any("FLEET-WHY-7731" in item.text for item in last.excerpts)

    await there.forget_user(ALICE)  # `/memory clear everywhere`, handled by the other process
    assert await here.last_recall(ALICE_A_LATER) is None, "shown as after an erasure here"
