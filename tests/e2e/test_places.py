"""Places the cache knows only in part, through the loopback Discord and the loopback LLM."""

from __future__ import annotations

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm_server import FakeLLM
from tests.helpers.e2e import Bots, ask, take_tracebacks

ORPHAN_THREAD_ID = 1_200_000_000_000_000_091
UNSEEN_PARENT_ID = 1_200_000_000_000_000_092


async def test_a_thread_whose_channel_is_not_cached_is_answered(
    bots: Bots, fake_discord: FakeDiscord, fake_llm: FakeLLM
) -> None:
    """`Thread.category_id` raises when the parent is not cached: the message is still
    answered (as in a channel outside any category), and so is /help there."""
    d = fake_discord
    d.add_thread_of_unseen_channel(ORPHAN_THREAD_ID, UNSEEN_PARENT_ID)
    bot = await bots.start()
    thread = bot.get_channel(ORPHAN_THREAD_ID)
    assert thread is not None and getattr(thread, "parent", "?") is None, "the case under test"

    assert await ask(d, d.alice, ORPHAN_THREAD_ID, "hello from the thread") == (
        "echo: hello from the thread"
    )
    interaction = await d.slash(d.alice, "help", channel_id=ORPHAN_THREAD_ID)
    assert "mention me" in await interaction.wait_text()
    assert take_tracebacks() == []
