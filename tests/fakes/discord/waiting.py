"""Waiting for the bot: for a change in the fake, a live gateway, the bot's next message."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

from tests.fakes.discord.gateway import _Connection
from tests.fakes.discord.records import BotMessage

T = TypeVar("T")


class Waiting:
    """Waiting until the bot has done something, and what it has done so far."""

    def _notify(self) -> None:
        self._pulse.set()
        self._pulse = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109
        """Wait until ``predicate()`` returns something other than None, and return it.

        The predicate is checked on every change in the fake and at least every 50 ms, so it may
        also look at state outside the fake (the bot's, say). Raises AssertionError on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            pulse = self._pulse
            result = predicate()
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}{self._recent()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pulse.wait(), min(remaining, 0.05))

    def _recent(self) -> str:
        lines = [f"\n  {r.method} {r.path} -> {r.status}" for r in self.requests[-8:]]
        return "; last requests:" + "".join(lines) if lines else "; no REST requests yet"

    async def wait_ready(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until a gateway session is live: identified (READY and GUILD_CREATEs sent) or
        resumed (replay and RESUMED sent)."""
        await self.wait_for(lambda: True if self._live() else None, timeout, "a live gateway")

    def _live(self, shard: int = 0) -> bool:
        return self._connection(shard) is not None

    def _connection(self, shard: int = 0) -> _Connection | None:
        session = self._sessions.get(shard)
        return session.conn if session is not None else None

    def shard_of(self, guild_id: int | None) -> int:
        """The shard that receives this guild's events (DMs: shard 0)."""
        if guild_id is None:
            return 0
        return (guild_id >> 22) % self.shard_count

    async def wait_shards_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every shard has a live session."""
        await self.wait_for(
            lambda: True if all(self._live(s) for s in range(self.shard_count)) else None,
            timeout,
            f"all {self.shard_count} shards live",
        )

    async def wait_identify(self, count: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has identified ``count`` times and that session is live."""
        await self.wait_for(
            lambda: True if self.identify_count >= count and self._live() else None,
            timeout,
            f"IDENTIFY number {count}",
        )

    def bot_messages(
        self, channel_id: int, *, include_interactions: bool = False
    ) -> list[BotMessage]:
        """Messages the bot created in a channel, oldest first (deleted ones included).

        Interaction responses and follow-ups are left out unless ``include_interactions``.
        """
        log = self._channel_log.get(channel_id, [])
        return [m for m in log if include_interactions or m.interaction_id is None]

    async def next_bot_message(self, channel_id: int, timeout: float = 5.0) -> BotMessage:  # noqa: ASYNC109
        """The next channel message (not interaction message) the bot created in ``channel_id``
        that this method has not returned yet."""

        def pick() -> BotMessage | None:
            messages = self.bot_messages(channel_id)
            index = self._cursors.get(channel_id, 0)
            if index >= len(messages):
                return None
            self._cursors[channel_id] = index + 1
            return messages[index]

        return await self.wait_for(pick, timeout, f"a bot message in channel {channel_id}")

    async def expect_no_bot_message(self, channel_id: int, wait: float = 1.0) -> None:
        """Assert that, ``wait`` seconds from now, there is still no bot message in the channel
        that :meth:`next_bot_message` has not returned."""
        await asyncio.sleep(wait)
        unseen = self.bot_messages(channel_id)[self._cursors.get(channel_id, 0) :]
        assert not unseen, f"unexpected bot message(s): {[m.content[:80] for m in unseen]}"

    async def final_text(self, message: BotMessage, quiet: float = 1.5, timeout: float = 10) -> str:  # noqa: ASYNC109
        """The message's content once no edit has arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            idle = time.monotonic() - message.updated_at
            if idle >= quiet:
                return message.content
            if time.monotonic() + (quiet - idle) > deadline:
                raise AssertionError(f"message {message.id} still changing after {timeout}s")
            await asyncio.sleep(quiet - idle)
