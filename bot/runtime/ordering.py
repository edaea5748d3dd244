"""Strict per-key ordering: work for one key runs one at a time, in arrival order.

A place in a key's queue is taken with `reserve()`, synchronously, the moment work arrives:
whatever that work awaits before its turn (a database read on a connection pool may finish
before an earlier one), it still runs after everything that arrived before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class Turn:
    """One place in a key's queue. `wait()` until it is this one's turn; `release()` always
    (also when the turn was never waited for), which hands the turn to the next in line."""

    def __init__(self, locks: KeyedLocks, key: Hashable, ready: asyncio.Future[None]) -> None:
        self._locks = locks
        self._key = key
        self._ready = ready
        self._released = False

    @property
    def ready(self) -> bool:
        """Whether it is this one's turn now (nothing earlier is still in line)."""
        return self._ready.done()

    async def wait(self) -> None:
        # Shielded: a cancelled waiter must not cancel the place itself (release() drops it).
        await asyncio.shield(self._ready)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._locks._leave(self._key, self._ready)


class KeyedLocks:
    """One FIFO queue per key, created on demand and dropped when it empties."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}

    def reserve(self, key: Hashable) -> Turn:
        """Take the next place in `key`'s queue now (no await)."""
        queue = self._queues.setdefault(key, deque())
        ready = asyncio.get_running_loop().create_future()
        if not queue:
            ready.set_result(None)
        queue.append(ready)
        return Turn(self, key, ready)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Reserve, wait for the turn, run the block, release."""
        turn = self.reserve(key)
        try:
            await turn.wait()
            yield
        finally:
            turn.release()

    def _leave(self, key: Hashable, ready: asyncio.Future[None]) -> None:
        queue = self._queues[key]
        was_first = queue[0] is ready
        queue.remove(ready)
        if not queue:
            del self._queues[key]
        elif was_first and not queue[0].done():
            queue[0].set_result(None)

    def __len__(self) -> int:
        return len(self._queues)
