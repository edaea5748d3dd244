"""Deletes and edits of messages the engine has not stored yet.

A message can wait behind the same user's previous reply (and a Discord event can overtake its
handler) for as long as a reply queue can take to drain. Its deletion or edit is remembered
that long, in bounded memory, and applied when the message's turn comes: a deleted message is
never sent to the model nor stored, an edited one is answered and stored as edited.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class LateChange:
    """What happened to a message before it was stored: deleted, or its newest text."""

    deleted: bool = False
    content: str | None = None


class UnstoredChanges:
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._changes: OrderedDict[int, tuple[float, LateChange]] = OrderedDict()

    def deleted(self, discord_id: int) -> None:
        self._put(discord_id, LateChange(deleted=True))

    def edited(self, discord_id: int, content: str) -> None:
        previous = self._changes.get(discord_id)
        if previous is not None and previous[1].deleted:
            return  # a deletion is final
        self._put(discord_id, LateChange(content=content))

    def take(self, discord_id: int) -> LateChange | None:
        """The change remembered for the message, forgotten once taken."""
        self._expire()
        entry = self._changes.pop(discord_id, None)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._changes)

    def _put(self, discord_id: int, change: LateChange) -> None:
        self._changes.pop(discord_id, None)
        self._changes[discord_id] = (self._clock() + self._ttl, change)
        self._expire()
        while len(self._changes) > self._max:
            self._changes.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._changes:
            _, (expires, _) = next(iter(self._changes.items()))
            if expires > now:
                return
            self._changes.popitem(last=False)
