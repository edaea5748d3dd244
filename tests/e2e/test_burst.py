"""End to end: a burst of 200 messages from 20 people at once, with a fast model.

Admission by expected wait queues what can be answered in time, so every message gets the
model's answer (a fixed queue of 50 answered 54 and told 146 people the bot was busy), each
person's answers in the order of their messages.
"""

from __future__ import annotations

import asyncio
import time

from tests.fakes.discord import FakeDiscord, FakeUser
from tests.helpers.e2e import Bots

USERS = 20
PER_USER = 10
FIRST_ID = 1_400_000_000_000_100_000


async def test_burst_of_200_is_answered_by_the_model(bots: Bots, fake_discord: FakeDiscord) -> None:
    # The test's short deadline (10 s) is for failing fast elsewhere; production's is 120 s.
    await bots.start(reply_deadline_seconds=60)
    d = fake_discord
    people = [FakeUser(FIRST_ID + n, f"user{n}", f"User {n}") for n in range(USERS)]
    started = time.monotonic()
    await asyncio.gather(
        *(
            d.send_message(person, d.CHANNEL_ID, f"{person.username} message {i}", mention_bot=True)
            for i in range(PER_USER)
            for person in people
        )
    )

    def all_answered() -> bool | None:
        return len(d.bot_messages(d.CHANNEL_ID)) >= USERS * PER_USER or None

    await d.wait_for(all_answered, timeout=60, what="200 answers")
    last_waited = max(m.created_at for m in d.bot_messages(d.CHANNEL_ID)) - started
    texts = [m.content for m in d.bot_messages(d.CHANNEL_ID)]
    busy = [text for text in texts if "busy" in text]
    assert not busy, f"{len(busy)} of {len(texts)} told the bot was busy"
    assert sorted(texts) == sorted(
        f"echo: {p.username} message {i}" for p in people for i in range(PER_USER)
    )
    for person in people:  # each person's answers in the order of their messages
        theirs = [t for t in texts if t.startswith(f"echo: {person.username} ")]
        assert theirs == [f"echo: {person.username} message {i}" for i in range(PER_USER)]
    print(f"\n200 messages from 20 users: the last answer came {last_waited:.2f} s after the burst")
