"""The resume ledger: what a stop or a crash leaves to be answered after the restart.

Two kinds of message outlive their process: one stored but never answered (its process died
between storing and answering), and one noted in `queued_messages` while it waited behind an
earlier one of its conversation (not stored yet). After a restart, both are answered if they
are recent enough, each once; the Discord side fetches them again (`bot/client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from storage import Storage
from storage.errors import StorageError
from storage.models import QueuedMessage, SessionKey, StoredMessage

# A child of the engine's logger, as before the engine was split: a level set on
# "bot.engine.engine" (by an operator, or a test) still applies here.
log = logging.getLogger("bot.engine.engine").getChild("resume")

# A message stored but left unanswered by a process that died is answered after the restart
# if it is at most this old; an answer to something said longer ago would confuse more.
RESUME_WINDOW_SECONDS = 600.0


class ResumeLedger:
    def __init__(self, storage: Storage, *, clock: Callable[[], float]) -> None:
        self._storage = storage
        self._clock = clock
        self._started_at = clock()  # set again by started()
        self._queued: set[int] = set()  # noted in queued_messages by this process, not stored
        self._left_in_queue: set[int] = set()  # left there by a stop, being answered now

    def started(self) -> None:
        """The engine starts: what was left before now is another run's to resume."""
        self._started_at = self._clock()

    def readmitted(self, discord_id: int) -> bool:
        """A message left in the queue by a stop, answered now: admitted when it arrived."""
        return discord_id in self._left_in_queue

    async def note_queued(self, key: SessionKey, discord_id: int, fence: int) -> None:
        """Write down a message that must wait behind an earlier one of its conversation
        (it is stored when its turn comes), so that it outlives a crash of this process."""
        try:
            await self._storage.queued.add(key, discord_id, fence=fence, now=self._clock())
        except StorageError as error:  # the turn itself will meet the database's state
            log.warning("Could not note queued message %s: %s", discord_id, error)
            return
        self._queued.add(discord_id)

    def stopped(self, discord_id: int) -> None:
        """Stopped before it was stored: its row stays, and the next start answers it."""
        self._queued.discard(discord_id)

    def stored(self, discord_id: int) -> None:
        """Stored: its queue row went in the same statement (migration 20's trigger)."""
        self._queued.discard(discord_id)

    async def unqueue(self, discord_id: int) -> None:
        """The message no longer waits: stored (from then on, a stop leaves it to be
        answered as a stored message), refused, or dropped. A row left by a failure here is
        harmless: after a restart the message is known and not answered twice, or, if it
        was never stored, answered then."""
        if discord_id not in self._queued:
            return
        self._queued.discard(discord_id)
        try:
            await self._storage.queued.remove(discord_id)
        except StorageError as error:
            log.warning("Could not clear queued message %s: %s", discord_id, error)

    async def left_in_queue(self) -> list[QueuedMessage]:
        """Messages that were waiting for their turn when their process stopped, recent
        enough that an answer still makes sense, in arrival order; one that an erasure
        covered meanwhile is dropped (it would never have been stored)."""
        now = self._clock()
        left = await self._storage.queued.left_behind(
            since=now - RESUME_WINDOW_SECONDS, before=self._started_at
        )
        kept = []
        for queued in left:
            if await self._storage.erasures.fence(queued.key) == queued.fence:
                kept.append(queued)
                self._left_in_queue.add(queued.discord_id)
            else:
                await self._storage.queued.remove(queued.discord_id)
        return kept

    async def forget_queued(self, discord_id: int) -> None:
        """A message left in the queue is dealt with (answered again, or not to be)."""
        self._left_in_queue.discard(discord_id)
        self._queued.add(discord_id)  # the row is the one a stop left: remove it
        await self.unqueue(discord_id)

    async def awaiting_reply(self) -> list[StoredMessage]:
        """Messages stored but never answered (their process died), recent enough that an
        answer still makes sense, oldest first."""
        since = self._clock() - RESUME_WINDOW_SECONDS
        waiting = await self._storage.messages.awaiting_reply(since=since)
        # Only what was stored before this engine started: a message stored since is this
        # process's own, answered (or being answered) by its turn; answering it here too
        # answered it twice (seen in tests/process/test_fleet.py).
        return [m for m in waiting if m.created_at < self._started_at]

    async def settle(self, stored: StoredMessage) -> None:
        """A stored message needs no answer after all (it was answered on Discord)."""
        await self._storage.messages.settle(stored.id)
