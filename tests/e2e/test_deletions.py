"""A message the user deletes takes the bot's answer to it along, in storage and in Discord:
the answer may repeat it. Through the loopback Discord and the loopback LLM, on each backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM, message_text
from tests.helpers.e2e import Bots, Gate, ask, eventually, no_reply_in_flight, settled, stored

pytestmark = pytest.mark.both_backends


async def test_deleting_a_message_deletes_the_answer_that_repeated_it(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start(max_reply_tokens=3000)
    fake_llm.responder = lambda body: "echo: " + message_text(body["messages"][-1])
    assert await ask(d, d.alice, d.CHANNEL_ID, "something else") == "echo: something else"
    kept = d.bot_messages(d.CHANNEL_ID)
    # A long message, so that its echo is shown as two Discord messages.
    secret = "my PIN is 1234. " + " ".join(f"filler{i}" for i in range(300))
    doomed = await d.send_message(d.alice, d.CHANNEL_ID, secret, mention_bot=True)
    # Its echo shown as two messages (settled alone could return on the earlier answer's
    # quiet, or on a pause of a slow stream), then done.
    await d.wait_for(
        lambda: len([m for m in d.bot_messages(d.CHANNEL_ID) if m not in kept]) >= 2 or None,
        15,
        "the echo in two messages",
    )
    shown = [m for m in await settled(d, d.CHANNEL_ID, quiet=0.5) if m not in kept]
    assert len(shown) >= 2 and "PIN is 1234" in shown[0].content
    assert len(await stored(bot, d.alice)) == 4

    await d.delete_user_message(doomed)
    await d.wait_for(
        lambda: all(m.deleted for m in shown) or None, 10, "the answer's messages deleted"
    )
    assert not any(m.deleted for m in kept), "the other answer stays"
    assert await stored(bot, d.alice) == [
        ("user", "something else"),
        ("assistant", "echo: something else"),
    ]
    assert "1234" not in json.dumps(await bot.storage.users.export(d.alice.id))


async def test_a_message_deleted_while_it_is_answered_leaves_no_answer(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    d = fake_discord
    bot = await bots.start()
    gate = Gate("PIN")
    fake_llm.responder = gate
    doomed = await d.send_message(d.alice, d.CHANNEL_ID, "my PIN is 4321", mention_bot=True)
    await asyncio.wait_for(gate.arrived.wait(), 5)
    await d.delete_user_message(doomed)

    async def row_gone() -> bool:
        return await stored(bot, d.alice) == []

    await eventually(row_gone, "the message's row deleted")
    gate.release.set()
    await eventually(lambda: no_reply_in_flight(bot), "the reply to end")
    assert all(m.deleted for m in d.bot_messages(d.CHANNEL_ID)), "nothing of it left shown"
    assert await stored(bot, d.alice) == []
    assert "4321" not in json.dumps(await bot.storage.users.export(d.alice.id))
