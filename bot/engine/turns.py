"""The turns in hand: every message this process has taken and not finished with.

One owner for what the other parts ask about a turn while it waits or is answered: its place
in its conversation's order, whether it is still waiting to be stored, whether an erasure or a
deletion covered it meanwhile (its text stops showing at once; the database fence decides what
is stored), the edits and deletions of messages not stored yet, the paused users' messages
already answered once, and the replies in flight that a stop waits for.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.engine.pending import UnstoredChanges
from bot.engine.records import ProgressCallback
from bot.runtime.ordering import KeyedLocks, Turn
from storage.models import SessionKey

UNSTORED_IDS_KEPT = 1000


class Hand:
    """One turn in hand: its place in its conversation, and the event set when an erasure or
    a deletion covers it."""

    __slots__ = ("_place", "discord_id", "erased", "key")

    def __init__(self, key: SessionKey, discord_id: int, place: Turn) -> None:
        self.key = key
        self.discord_id = discord_id
        self.erased = asyncio.Event()
        self._place = place

    @property
    def first_in_line(self) -> bool:
        """Whether nothing earlier of its conversation is still in line."""
        return self._place.ready

    async def wait_turn(self) -> None:
        await self._place.wait()

    def silenced(self, on_progress: ProgressCallback | None) -> ProgressCallback | None:
        """`on_progress`, silent once the turn is erased or deleted: no more of it shows."""
        if on_progress is None:
            return None
        show = on_progress

        async def progress(text: str) -> None:
            if not self.erased.is_set():
                await show(text)

        return progress


class TurnsInHand:
    def __init__(self, unstored_ttl: float) -> None:
        self._order = KeyedLocks()
        self._hands: dict[int, Hand] = {}  # by Discord id
        self._waiting: set[int] = set()  # Discord ids of messages taken but not yet stored
        self._deleted: set[int] = set()  # turns in hand whose (stored) message was deleted
        self.in_flight: set[asyncio.Task[object]] = set()
        self.unstored = UnstoredChanges(unstored_ttl)
        self._unstored_ids: OrderedDict[int, None] = OrderedDict()  # paused users' messages
        self._accepting = True

    @property
    def accepting(self) -> bool:
        return self._accepting

    @contextmanager
    def take(self, key: SessionKey, discord_id: int) -> Iterator[Hand]:
        """Hold a turn from now on, before any await: an edit or deletion may arrive at any
        time, and the turn's place in its conversation is taken now, in arrival order."""
        hand = Hand(key, discord_id, self._order.reserve((key.channel_id, key.user_id)))
        self._waiting.add(discord_id)
        self._hands[discord_id] = hand
        try:
            yield hand
        finally:
            hand._place.release()
            self._waiting.discard(discord_id)
            self._hands.pop(discord_id, None)
            self._deleted.discard(discord_id)

    @contextmanager
    def flying(self, task: asyncio.Task[object]) -> Iterator[None]:
        """A reply being handled: a stop gives it a grace period, then cancels it."""
        self.in_flight.add(task)
        try:
            yield
        finally:
            self.in_flight.discard(task)

    def stored(self, discord_id: int) -> None:
        """The message is stored (or known already): it no longer waits."""
        self._waiting.discard(discord_id)

    def waiting(self, discord_id: int) -> bool:
        """Whether the message was taken and is not stored yet."""
        return discord_id in self._waiting

    def deleted(self, discord_id: int) -> bool:
        """Whether the user deleted the message of this turn while it was answered."""
        return discord_id in self._deleted

    def delete(self, discord_id: int) -> None:
        """The user deleted the message: an answer in the making is dropped, and no more of
        it shows."""
        hand = self._hands.get(discord_id)
        if hand is not None:
            self._deleted.add(discord_id)
            hand.erased.set()

    def erase(self, covered: Callable[[SessionKey], bool]) -> None:
        """Stop showing the text of turns in hand that an erasure just covered."""
        for hand in self._hands.values():
            if covered(hand.key):
                hand.erased.set()

    def first_unstored(self, discord_id: int) -> bool:
        """For a paused user's message (no stored row to recognise a redelivered event by):
        True the first time, False for a replay. Recent ids only, no text."""
        if discord_id in self._unstored_ids:
            return False
        self._unstored_ids[discord_id] = None
        if len(self._unstored_ids) > UNSTORED_IDS_KEPT:
            self._unstored_ids.popitem(last=False)
        return True

    async def drain(self, grace: float) -> None:
        """Take no new turns; give replies in flight `grace` seconds, then cancel them."""
        self._accepting = False
        if self.in_flight:
            _, late = await asyncio.wait(set(self.in_flight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
